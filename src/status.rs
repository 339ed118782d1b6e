//! The wire status of a reply: a code, a message, and optional details.
//!
//! A reply carries its code in the `x-status` header (absent for `ok`); an error reply's body
//! is the status object `{code, message, details}` in the request's codec.

use crate::codec::{CodecError, ContentType};
use bytes::Bytes;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::fmt;

/// `Code`, its variants each with their wire name, and the two ways
/// between them, from one list.
macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $wire:literal,)*) => {
        /// What happened to a call, as the server saw it.
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Code {
            $($(#[$doc])* $variant,)*
            /// A code this version does not know, kept as sent.
            Other(String),
        }

        impl Code {
            /// The code as written on the wire (`ok`, `unknown_method`, …).
            #[must_use]
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $wire,)*
                    Self::Other(s) => s,
                }
            }

            /// Reads a wire code, ignoring ASCII case; unknown codes are kept as
            /// [`Code::Other`].
            #[must_use]
            pub fn from_wire(s: &str) -> Self {
                match s.to_ascii_lowercase().as_str() {
                    $($wire => Self::$variant,)*
                    _ => Self::Other(s.to_owned()),
                }
            }
        }
    };
}

codes! {
    /// The handler succeeded.
    Ok = "ok",
    /// The request was malformed: bad body, missing `reply_to`, bad arguments.
    BadRequest = "bad_request",
    /// No handler for the method.
    UnknownMethod = "unknown_method",
    /// The request's content type is not MessagePack or JSON.
    UnsupportedContentType = "unsupported_content_type",
    /// The body is larger than the server accepts.
    PayloadTooLarge = "payload_too_large",
    /// The deadline passed before the handler finished.
    DeadlineExceeded = "deadline_exceeded",
    /// The handler failed or panicked.
    Internal = "internal",
    /// The server is shutting down or cannot serve now.
    Unavailable = "unavailable",
    /// The handler returned an application error; `details` holds it.
    Application = "application",
    /// The caller did not authenticate (HTTP bearer token).
    Unauthenticated = "unauthenticated",
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Self::from_wire(&s))
    }
}

/// An error status: what a server says when a call did not succeed.
///
/// Application errors keep their encoded `details`, which
/// [`Status::details`] decodes into the application's own error type.
#[derive(Clone, PartialEq, Eq)]
pub struct Status {
    code: Code,
    message: String,
    /// The whole encoded status object, kept so that `details` can be
    /// decoded lazily into whatever type the caller expects.
    encoded: Option<(ContentType, Bytes)>,
}

/// The status object as encoded on the wire.
#[derive(Serialize, Deserialize)]
struct Wire<D> {
    code: Code,
    #[serde(default)]
    message: String,
    // Absent reads as `None`: serde's rule for an `Option`.
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<D>,
}

impl Status {
    /// A status with a code and a message.
    #[must_use]
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            encoded: None,
        }
    }

    /// An application error carrying `details` (the handler's own error value).
    ///
    /// # Errors
    /// [`CodecError`] if `details` cannot be encoded in `content_type`.
    pub fn application<D: Serialize + fmt::Display>(
        details: &D,
        content_type: ContentType,
    ) -> Result<Self, CodecError> {
        let message = details.to_string();
        let body = content_type.encode(&Wire {
            code: Code::Application,
            message: message.clone(),
            details: Some(details),
        })?;
        Ok(Self {
            code: Code::Application,
            message,
            encoded: Some((content_type, body)),
        })
    }

    /// The code.
    #[must_use]
    pub fn code(&self) -> &Code {
        &self.code
    }

    /// The human-readable message.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Decodes the `details` of the status into `D`, if it has any.
    ///
    /// # Errors
    /// [`CodecError::Decode`] if the details are not a valid `D`.
    pub fn details<D: DeserializeOwned>(&self) -> Result<Option<D>, CodecError> {
        match &self.encoded {
            Some((ct, body)) => Ok(ct.decode::<Wire<D>>(body)?.details),
            None => Ok(None),
        }
    }

    /// Encodes the status object `{code, message, details}` as a reply body.
    ///
    /// # Errors
    /// [`CodecError::Encode`] if encoding fails.
    pub fn to_body(&self, content_type: ContentType) -> Result<Bytes, CodecError> {
        match &self.encoded {
            Some((ct, body)) if *ct == content_type => Ok(body.clone()),
            _ => content_type.encode(&Wire::<()> {
                code: self.code.clone(),
                message: self.message.clone(),
                details: None,
            }),
        }
    }

    /// Reads a status object from an error reply's body. A body that is not
    /// a status object still gives a status: `code` (from the header) and
    /// the body as text for the message, so nothing a peer said is lost.
    #[must_use]
    pub fn from_body(code: Code, content_type: ContentType, body: Bytes) -> Self {
        match content_type.decode::<Wire<serde::de::IgnoredAny>>(&body) {
            Ok(wire) => Self {
                code: wire.code,
                message: wire.message,
                encoded: Some((content_type, body)),
            },
            Err(_) => Self {
                code,
                message: String::from_utf8_lossy(&body).into_owned(),
                encoded: None,
            },
        }
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Status")
            .field("code", &self.code)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum MathError {
        DivideByZero,
    }
    impl fmt::Display for MathError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("divide by zero")
        }
    }

    #[test]
    fn application_details_round_trip() {
        for ct in [ContentType::MsgPack, ContentType::Json] {
            let st = Status::application(&MathError::DivideByZero, ct).unwrap();
            let body = st.to_body(ct).unwrap();
            let back = Status::from_body(Code::Internal, ct, body);
            assert_eq!(back.code(), &Code::Application);
            assert_eq!(back.message(), "divide by zero");
            assert_eq!(
                back.details::<MathError>().unwrap(),
                Some(MathError::DivideByZero)
            );
        }
    }

    #[test]
    fn json_status_shape() {
        let st = Status::new(Code::UnknownMethod, "no method `x`");
        let body = st.to_body(ContentType::Json).unwrap();
        assert_eq!(
            &body[..],
            br#"{"code":"unknown_method","message":"no method `x`"}"#
        );
    }

    #[test]
    fn foreign_bodies_are_kept_as_text() {
        let st = Status::from_body(
            Code::Internal,
            ContentType::Json,
            Bytes::from_static(b"boom"),
        );
        assert_eq!(st.code(), &Code::Internal);
        assert_eq!(st.message(), "boom");
        assert_eq!(Code::from_wire("teapot"), Code::Other("teapot".into()));
        assert_eq!(Code::from_wire("OK"), Code::Ok);
    }
}
