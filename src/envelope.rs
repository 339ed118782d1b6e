//! The envelope both transports carry around a body: warren's header
//! names, and how status codes map onto HTTP. `amqp/wire.rs` puts the
//! envelope into AMQP properties, `http/wire.rs` into HTTP headers; both
//! take the names from here, so a peer reads one protocol whichever
//! transport (`docs/PROTOCOL.md` describes it for peers in other
//! languages).
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

#[cfg(feature = "http")]
use crate::address::Address;
#[cfg(feature = "http")]
use crate::status::Code;
#[cfg(feature = "http")]
use axum::http::StatusCode;

/// Header: the caller's remaining deadline, in milliseconds. Over AMQP it
/// is read, no longer sent: `expiration` carries the same number (see
/// `docs/DECISIONS.md`, "A lean envelope").
pub(crate) const TIMEOUT_MS: &str = "x-timeout-ms";
/// Header: the sender's instance id. Over AMQP it is read, no longer sent
/// (`app_id` is).
pub(crate) const SENDER_ID: &str = "x-sender-id";
/// Header: the sender's service type. Over AMQP it is read, no longer sent
/// (`app_id` is).
pub(crate) const SENDER_TYPE: &str = "x-sender-type";
/// Header: a reply's status code. Over AMQP it is sent only when it is not
/// `ok` (absent means `ok`).
pub(crate) const STATUS: &str = "x-status";
/// Header (HTTP): the address the caller meant (`instance/<id>`,
/// `any/<type>`, …), so that a node reached through a stale URL refuses
/// instead of running a call meant for another instance. AMQP routes by
/// the address instead.
#[cfg(feature = "http")]
pub(crate) const ADDRESS: &str = "x-address";
/// Header (HTTP): the request's unique message id; AMQP has a property.
#[cfg(feature = "http")]
pub(crate) const MESSAGE_ID: &str = "x-message-id";

/// Every header the envelope itself uses, never the application's.
#[cfg(feature = "http")]
pub(crate) const HEADERS: &[&str] = &[
    TIMEOUT_MS,
    SENDER_ID,
    SENDER_TYPE,
    STATUS,
    ADDRESS,
    MESSAGE_ID,
];

/// The HTTP status a reply with `code` is sent with.
#[cfg(feature = "http")]
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
#[cfg(feature = "http")]
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

/// The `x-address` value for `address`.
#[cfg(feature = "http")]
pub(crate) fn address_value(address: &Address) -> String {
    match address {
        Address::Instance(id) => format!("instance/{id}"),
        Address::Any(t) => format!("any/{t}"),
        Address::Every(t) => format!("every/{t}"),
        _ => "all".to_owned(),
    }
}

/// Reads an `x-address` value.
#[cfg(feature = "http")]
pub(crate) fn parse_address(value: &str) -> Option<Address> {
    match value.split_once('/') {
        Some(("instance", id)) => Address::instance(id).ok(),
        Some(("any", t)) => Address::any(t).ok(),
        Some(("every", t)) => Address::every(t).ok(),
        None if value == "all" => Some(Address::All),
        _ => None,
    }
}

#[cfg(all(test, feature = "http"))]
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
}
