//! How requests and replies map onto HTTP: the path and the headers. The
//! envelope itself (header names, the status mapping) is defined once for
//! both transports in `envelope.rs`.

use crate::address::{Peer, ServiceId, ServiceType};
use crate::envelope::{self, SENDER_ID, SENDER_TYPE};
use crate::headers::Headers;
use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// Headers that belong to HTTP, never to the application.
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
];

/// Whether a header of this (lower-case) name is the application's.
pub(crate) fn is_application(name: &str) -> bool {
    !NOT_APPLICATION.contains(&name) && !envelope::HEADERS.contains(&name)
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
        put(map, SENDER_ID, id.as_str())?;
    }
    if let Some(t) = &peer.service {
        put(map, SENDER_TYPE, t.as_str())?;
    }
    Ok(())
}

/// Reads the sender headers.
pub(crate) fn peer_of(map: &HeaderMap) -> Peer {
    let get = |n: &str| map.get(n).and_then(|v| v.to_str().ok());
    Peer {
        id: get(SENDER_ID).and_then(|s| ServiceId::new(s).ok()),
        service: get(SENDER_TYPE).and_then(|s| ServiceType::new(s).ok()),
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
    let mut parts = path.split('%');
    let mut out = parts.next()?.as_bytes().to_vec();
    for part in parts {
        // Each `%` is followed by two hex digits.
        out.push(u8::from_str_radix(part.get(..2)?, 16).ok()?);
        out.extend_from_slice(&part.as_bytes()[2..]);
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn application_headers_leave_out_transport_ones() {
        let mut map = HeaderMap::new();
        put(&mut map, "traceparent", "00-1-2-01").unwrap();
        put(&mut map, envelope::STATUS, "ok").unwrap();
        put(&mut map, "content-type", "application/json").unwrap();
        let app = application_headers(&map);
        assert_eq!(app.len(), 1);
        assert_eq!(app.get("traceparent"), Some("00-1-2-01"));
        assert!(put(&mut map, "bad name", "v").is_err());
        assert!(put(&mut map, "n", "line\nbreak").is_err());
    }
}
