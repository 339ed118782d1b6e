//! How requests and replies map onto HTTP: the path, the headers, and the
//! status codes. The AMQP mapping lives in `amqp/wire.rs`; both carry the
//! same `x-` headers so a peer reads one protocol, whichever transport.
//!
//! | code | HTTP |
//! | --- | --- |
//! | `ok` | 200 |
//! | `bad_request` | 400 |
//! | `unauthenticated` | 401 |
//! | `unknown_method` | 404 |
//! | `payload_too_large` | 413 |
//! | `unsupported_content_type` | 415 |
//! | `application` | 422 |
//! | `internal` (and unknown codes) | 500 |
//! | `unavailable` | 503 |
//! | `deadline_exceeded` | 504 |

use crate::address::{Address, Peer};
use crate::headers::Headers;
use crate::status::Code;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// Header: the caller's remaining deadline, in milliseconds.
pub(crate) const TIMEOUT_MS: &str = "x-timeout-ms";
/// Header: the sender's instance id.
pub(crate) const SENDER_ID: &str = "x-sender-id";
/// Header: the sender's service type.
pub(crate) const SENDER_TYPE: &str = "x-sender-type";
/// Header: a reply's status code.
pub(crate) const STATUS: &str = "x-status";
/// Header: the address the caller meant (`instance/<id>`, `any/<type>`, …),
/// so that a node reached through a stale URL refuses instead of running
/// a call meant for another instance.
pub(crate) const ADDRESS: &str = "x-address";
/// Header: the request's unique message id.
pub(crate) const MESSAGE_ID: &str = "x-message-id";

/// Headers that belong to HTTP or to warren itself, never to the application.
const NOT_APPLICATION: &[&str] = &[
    "accept",
    "accept-encoding",
    "authorization",
    "connection",
    "content-length",
    "content-type",
    "date",
    "expect",
    "host",
    "keep-alive",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "www-authenticate",
    TIMEOUT_MS,
    SENDER_ID,
    SENDER_TYPE,
    STATUS,
    ADDRESS,
    MESSAGE_ID,
];

/// The HTTP status a reply with `code` is sent with.
#[must_use]
pub fn http_status(code: &Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::BadRequest => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::UnknownMethod => StatusCode::NOT_FOUND,
        Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Code::UnsupportedContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Code::Application => StatusCode::UNPROCESSABLE_ENTITY,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The code of a reply that has no `x-status` header (a plain HTTP server,
/// a proxy in between): the reverse of [`http_status`].
#[must_use]
pub fn code_of(status: StatusCode) -> Code {
    match status.as_u16() {
        200..=299 => Code::Ok,
        401 | 403 => Code::Unauthenticated,
        404 => Code::UnknownMethod,
        413 => Code::PayloadTooLarge,
        415 => Code::UnsupportedContentType,
        422 => Code::Application,
        502 | 503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        400..=499 => Code::BadRequest,
        _ => Code::Internal,
    }
}

/// Whether a header of this (lower-case) name is the application's.
pub(crate) fn is_application(name: &str) -> bool {
    !NOT_APPLICATION.contains(&name)
}

/// Application headers found in `map` (HTTP's and warren's own left out).
pub(crate) fn application_headers(map: &HeaderMap) -> Headers {
    map.iter()
        .filter(|(name, _)| is_application(name.as_str()))
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect()
}

/// Adds `name: value`, refusing what HTTP cannot carry.
pub(crate) fn put(map: &mut HeaderMap, name: &str, value: &str) -> Result<(), String> {
    let name = HeaderName::try_from(name)
        .map_err(|_| format!("`{name}` cannot be an HTTP header name"))?;
    let value = HeaderValue::try_from(value)
        .map_err(|_| format!("the value of header `{name}` cannot travel over HTTP"))?;
    map.insert(name, value);
    Ok(())
}

/// Adds the sender headers for `peer`.
pub(crate) fn put_peer(map: &mut HeaderMap, peer: &Peer) -> Result<(), String> {
    if let Some(id) = &peer.id {
        put(map, SENDER_ID, id)?;
    }
    if let Some(t) = &peer.service {
        put(map, SENDER_TYPE, t)?;
    }
    Ok(())
}

/// Reads the sender headers.
pub(crate) fn peer_of(map: &HeaderMap) -> Peer {
    let get = |n: &str| map.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Peer {
        id: get(SENDER_ID),
        service: get(SENDER_TYPE),
    }
}

/// The `x-address` value for `address`.
pub(crate) fn address_value(address: &Address) -> String {
    match address {
        Address::Instance(id) => format!("instance/{id}"),
        Address::Any(t) => format!("any/{t}"),
        Address::Every(t) => format!("every/{t}"),
        _ => "all".to_owned(),
    }
}

/// Reads an `x-address` value.
pub(crate) fn parse_address(value: &str) -> Option<Address> {
    match value.split_once('/') {
        Some(("instance", id)) => Address::instance(id).ok(),
        Some(("any", t)) => Address::any(t).ok(),
        Some(("every", t)) => Address::every(t).ok(),
        None if value == "all" => Some(Address::All),
        _ => None,
    }
}

/// Percent-encodes a method name for the URL path. Method names are
/// printable ASCII, so only the reserved characters need escaping.
pub(crate) fn encode_method(method: &str) -> String {
    let mut out = String::with_capacity(method.len());
    for b in method.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a percent-encoded path segment; `None` if it is malformed.
pub(crate) fn decode_method(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_back_to_itself() {
        for code in [
            Code::Ok,
            Code::BadRequest,
            Code::Unauthenticated,
            Code::UnknownMethod,
            Code::PayloadTooLarge,
            Code::UnsupportedContentType,
            Code::Application,
            Code::Internal,
            Code::Unavailable,
            Code::DeadlineExceeded,
        ] {
            assert_eq!(code_of(http_status(&code)), code, "{code}");
        }
        assert_eq!(
            http_status(&Code::Other("teapot".into())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn methods_survive_the_path() {
        for m in ["Calculator.add", "a/b?c#d%e", "x~y_z-1"] {
            let enc = encode_method(m);
            assert!(!enc.contains(['/', '?', '#']), "{enc}");
            assert_eq!(decode_method(&enc).as_deref(), Some(m));
        }
        assert_eq!(decode_method("%zz"), None);
        assert_eq!(decode_method("%4"), None);
    }

    #[test]
    fn addresses_round_trip() {
        for a in [
            Address::instance("c-1").unwrap(),
            Address::any("calc").unwrap(),
            Address::every("calc").unwrap(),
            Address::all(),
        ] {
            assert_eq!(parse_address(&address_value(&a)), Some(a));
        }
        assert_eq!(parse_address("instance/a.b"), None);
        assert_eq!(parse_address("nowhere"), None);
    }

    #[test]
    fn application_headers_leave_out_transport_ones() {
        let mut map = HeaderMap::new();
        put(&mut map, "traceparent", "00-1-2-01").unwrap();
        put(&mut map, STATUS, "ok").unwrap();
        put(&mut map, "content-type", "application/json").unwrap();
        let app = application_headers(&map);
        assert_eq!(app.len(), 1);
        assert_eq!(app.get("traceparent"), Some("00-1-2-01"));
        assert!(put(&mut map, "bad name", "v").is_err());
        assert!(put(&mut map, "n", "line\nbreak").is_err());
    }
}
