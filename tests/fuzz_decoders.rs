//! Property tests over the decoders that take outside input without a
//! broker: both codecs (any bytes, deep nesting, length prefixes that lie),
//! MIME types, status codes and status bodies, names and method names.
//! Whatever comes in, the answer is a value or a typed error: no panic, no
//! stack overflow, no allocation sized by what a sender claims.

use bytes::Bytes;
use proptest::prelude::*;
use serde::Deserialize;
use std::collections::BTreeMap;
use warren::{
    check_method, Code, ContentType, ServiceId, ServiceType, Status, MAX_DEPTH, MAX_NAME_LEN,
};

/// A typed argument list, as a generated server decodes one.
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // Only decoded.
struct Args {
    name: String,
    count: u64,
    tags: Vec<String>,
    blob: serde_bytes::ByteBuf,
    nested: Option<BTreeMap<String, Vec<i64>>>,
}

const CODECS: [ContentType; 2] = [ContentType::Json, ContentType::MsgPack];

/// Decodes `body` every way a node or a caller would, in both codecs.
fn decode_every_way(body: &[u8]) {
    for codec in CODECS {
        // Only that nothing panics: Ok or a typed error are both answers.
        let _ = codec.decode::<serde_json::Value>(body);
        let _ = codec.decode::<Args>(body);
        let _ = codec.decode::<(String, u64)>(body);
        let _ = codec.decode::<Vec<Vec<u8>>>(body);
        let _ = Status::from_body(Code::Internal, codec, Bytes::copy_from_slice(body));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_decode_to_a_value_or_a_typed_error(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        decode_every_way(&body);
    }

    /// MessagePack whose first bytes are a container or string header with
    /// any length, followed by little or nothing: the classic lying prefix.
    #[test]
    fn msgpack_length_prefixes_that_lie(
        marker in prop::sample::select(vec![0xc4u8, 0xc5, 0xc6, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf]),
        len in any::<u32>(),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut body = vec![marker];
        let declared = match marker {
            0xc4 | 0xd9 => {
                body.push(len as u8);
                len as u8 as usize
            }
            0xc5 | 0xda | 0xdc | 0xde => {
                body.extend_from_slice(&(len as u16).to_be_bytes());
                len as u16 as usize
            }
            _ => {
                body.extend_from_slice(&len.to_be_bytes());
                len as usize
            }
        };
        body.extend_from_slice(&tail);
        decode_every_way(&body);
        // More bytes (or elements, each at least a byte) claimed than sent.
        if declared > tail.len() {
            prop_assert!(ContentType::MsgPack.decode::<serde_json::Value>(&body).is_err());
        }
    }

    /// A mangled copy of a valid body: truncated, or one byte changed.
    #[test]
    fn mangled_valid_bodies(cut in 0usize..200, at in 0usize..200, byte in any::<u8>()) {
        let value = serde_json::json!({
            "name": "x", "count": 3, "tags": ["a", "b"], "blob": [1, 2, 3],
            "nested": {"k": [1, -2, 3]},
        });
        for codec in CODECS {
            let mut body = codec.encode(&value).unwrap().to_vec();
            if !body.is_empty() {
                let i = at % body.len();
                body[i] = byte;
            }
            body.truncate(cut.min(body.len()));
            decode_every_way(&body);
        }
    }

    #[test]
    fn any_mime_type_parses_or_is_unsupported(mime in ".{0,64}") {
        match ContentType::parse(&mime) {
            Ok(ct) => {
                let essence = mime.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
                prop_assert!(["application/json", "application/msgpack", "application/x-msgpack"]
                    .contains(&essence.as_str()), "{mime:?} parsed as {ct}");
            }
            Err(e) => prop_assert!(matches!(e, warren::CodecError::Unsupported(ref m) if *m == mime)),
        }
    }

    /// A status code from the wire is a known code (in any case) or kept
    /// as it came.
    #[test]
    fn any_status_code_string(s in "(?i:ok|internal|bad_request|deadline_exceeded)|.{0,80}") {
        let code = Code::from_wire(&s);
        match &code {
            Code::Other(kept) => prop_assert_eq!(kept, &s),
            known => prop_assert_eq!(known.as_str(), s.to_ascii_lowercase()),
        }
    }

    /// Service types and ids are accepted exactly when they are non-empty,
    /// at most `MAX_NAME_LEN` bytes of `[A-Za-z0-9_-]` (safe as a
    /// routing-key word and in a queue name), and read back as given.
    #[test]
    fn names_are_accepted_exactly_when_safe(s in "[a-zA-Z0-9_.*# /\\-\u{e9}\u{0}\\n]{0,300}") {
        let safe = !s.is_empty()
            && s.len() <= MAX_NAME_LEN
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let as_type = ServiceType::new(&s);
        let as_id = ServiceId::new(&s);
        prop_assert_eq!(as_type.is_ok(), safe, "type {:?}", s);
        prop_assert_eq!(as_id.is_ok(), safe, "id {:?}", s);
        if let (Ok(t), Ok(i)) = (as_type, as_id) {
            prop_assert_eq!(t.as_str(), s.as_str());
            prop_assert_eq!(i.as_str(), s.as_str());
        }
    }

    /// Method names: any non-empty printable ASCII without spaces, at most
    /// 255 bytes (an AMQP short string), and nothing else.
    #[test]
    fn method_names_are_accepted_exactly_when_printable(s in "[ -~\u{e9}\u{0}\\t]{0,300}") {
        let printable = !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic());
        prop_assert_eq!(check_method(&s).is_ok(), printable, "{:?}", s);
    }
}

/// Nesting far past any real message: a typed error, not a stack overflow
/// (both codecs stop at `MAX_DEPTH`), while nesting up to it decodes.
#[test]
fn deep_nesting_is_refused() {
    let fits = [vec![0x91u8; MAX_DEPTH - 1], vec![0xc0]].concat();
    assert!(ContentType::MsgPack
        .decode::<serde_json::Value>(&fits)
        .is_ok());
    let fits = "[".repeat(MAX_DEPTH - 1) + &"]".repeat(MAX_DEPTH - 1);
    assert!(ContentType::Json
        .decode::<serde_json::Value>(fits.as_bytes())
        .is_ok());

    const DEPTH: usize = 100_000;
    let json = "[".repeat(DEPTH) + &"]".repeat(DEPTH);
    // MessagePack fixarray of one element, nested.
    let msgpack = [vec![0x91u8; DEPTH], vec![0xc0]].concat();
    let map = [[0x81u8, 0xa1, b'k'].repeat(DEPTH), vec![0xc0]].concat();
    for (codec, body) in [
        (ContentType::Json, json.as_bytes()),
        (ContentType::MsgPack, &msgpack[..]),
        (ContentType::MsgPack, &map[..]),
    ] {
        let err = codec.decode::<serde_json::Value>(body).unwrap_err();
        assert!(
            err.to_string().contains("decode"),
            "{codec}: a typed decode error, got {err}"
        );
        decode_every_way(body);
    }
}

/// A 4 GiB length claimed in a 5-byte body is refused without reserving
/// the memory it claims (the process would abort if it tried).
#[test]
fn claimed_lengths_are_not_allocated() {
    for marker in [0xc6u8, 0xdb, 0xdd, 0xdf] {
        let body = [&[marker][..], &u32::MAX.to_be_bytes()].concat();
        for _ in 0..1000 {
            assert!(ContentType::MsgPack
                .decode::<serde_json::Value>(&body)
                .is_err());
            assert!(ContentType::MsgPack.decode::<Args>(&body).is_err());
            assert!(ContentType::MsgPack.decode::<Vec<u64>>(&body).is_err());
        }
    }
}
