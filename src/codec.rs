//! Body encodings: MessagePack (the default) and JSON.
//!
//! MessagePack is written with field names (`rmp_serde::to_vec_named`), so
//! a struct is a map on the wire in both codecs and a peer in another
//! language sees the same shape whichever codec it picks.

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};
use std::fmt;

/// How deeply a decoded value may nest (arrays and maps within each
/// other): serde_json's own limit, applied to MessagePack as well (whose
/// decoder would otherwise allow 1,024 levels, more than a thread's stack
/// holds for some types).
pub const MAX_DEPTH: usize = 128;

/// The MIME type of MessagePack bodies.
pub(crate) const MSGPACK: &str = "application/msgpack";
/// The MIME type of JSON bodies.
pub(crate) const JSON: &str = "application/json";

/// How a body is encoded; carried in the AMQP `content_type` property and
/// the HTTP `Content-Type` header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContentType {
    /// `application/msgpack` (also accepted: `application/x-msgpack`).
    #[default]
    MsgPack,
    /// `application/json`.
    Json,
}

/// An encoding or decoding failure.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The content type is not one warren speaks.
    #[error("unsupported content type `{0}`; use `application/msgpack` or `application/json`")]
    Unsupported(String),
    /// A value could not be encoded.
    #[error("cannot encode the body as {content_type}: {message}")]
    Encode {
        /// The codec in use.
        content_type: ContentType,
        /// What the serializer said.
        message: String,
    },
    /// A body could not be decoded into the expected type.
    #[error("cannot decode the {content_type} body: {message}")]
    Decode {
        /// The codec in use.
        content_type: ContentType,
        /// What the deserializer said.
        message: String,
    },
}

impl ContentType {
    /// The MIME type.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MsgPack => MSGPACK,
            Self::Json => JSON,
        }
    }

    /// Parses a MIME type, ignoring parameters such as `; charset=utf-8`.
    ///
    /// # Errors
    /// [`CodecError::Unsupported`] for anything but MessagePack and JSON.
    pub fn parse(mime: &str) -> Result<Self, CodecError> {
        let essence = mime.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case(MSGPACK)
            || essence.eq_ignore_ascii_case("application/x-msgpack")
        {
            Ok(Self::MsgPack)
        } else if essence.eq_ignore_ascii_case(JSON) {
            Ok(Self::Json)
        } else {
            Err(CodecError::Unsupported(mime.to_owned()))
        }
    }

    /// Encodes `value`.
    ///
    /// # Errors
    /// [`CodecError::Encode`] if the serializer fails (a map with non-string
    /// keys in JSON, for instance).
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Bytes, CodecError> {
        let out = match self {
            Self::MsgPack => rmp_serde::to_vec_named(value).map_err(|e| e.to_string()),
            Self::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
        };
        out.map(Bytes::from).map_err(|message| CodecError::Encode {
            content_type: self,
            message,
        })
    }

    /// Decodes `body` into a `T`. Values nested deeper than
    /// [`MAX_DEPTH`] are refused in both codecs, so that no body can
    /// exhaust the decoding thread's stack.
    ///
    /// # Errors
    /// [`CodecError::Decode`] if the body is not a valid `T` in this codec.
    pub fn decode<T: DeserializeOwned>(self, body: &[u8]) -> Result<T, CodecError> {
        let out = match self {
            Self::MsgPack => {
                let mut de = rmp_serde::Deserializer::from_read_ref(body);
                de.set_max_depth(MAX_DEPTH);
                T::deserialize(&mut de).map_err(|e| e.to_string())
            }
            Self::Json => serde_json::from_slice(body).map_err(|e| e.to_string()),
        };
        out.map_err(|message| CodecError::Decode {
            content_type: self,
            message,
        })
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ContentType {
    type Err = CodecError;
    fn from_str(s: &str) -> Result<Self, CodecError> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Args {
        a: i64,
        b: String,
    }

    #[test]
    fn round_trips_in_both_codecs() {
        let v = Args {
            a: -3,
            b: "x".into(),
        };
        for ct in [ContentType::MsgPack, ContentType::Json] {
            let bytes = ct.encode(&v).unwrap();
            assert_eq!(ct.decode::<Args>(&bytes).unwrap(), v);
        }
        // MessagePack structs are maps with names: a fixmap of 2 entries,
        // then the fixstr "a".
        let bytes = ContentType::MsgPack.encode(&v).unwrap();
        assert_eq!(&bytes[..3], &[0x82, 0xa1, b'a']);
    }

    #[test]
    fn parses_mime_types() {
        for (mime, parsed) in [
            ("application/json; charset=utf-8", ContentType::Json),
            ("Application/MsgPack", ContentType::MsgPack),
            ("application/x-msgpack", ContentType::MsgPack),
        ] {
            assert_eq!(ContentType::parse(mime).unwrap(), parsed, "{mime}");
        }
        let err = ContentType::parse("text/plain").unwrap_err();
        assert!(err.to_string().contains("text/plain"));
    }

    #[test]
    fn decode_errors_name_the_codec() {
        let err = ContentType::Json.decode::<Args>(b"{").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("cannot decode the application/json body"));
    }
}
