//! An HTTP request turned into a [`Request`], or refused before the
//! handler runs: a missing or wrong token, a body over the limit, a content
//! type warren does not speak, a deadline already passed, a request meant
//! for another instance.

use super::auth;
use super::server::Shared;
use super::wire;
use crate::address::Address;
use crate::codec::ContentType;
use crate::envelope;
use crate::message::{Delivery, Request, Response};
use crate::status::{Code, Status};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue};
use futures::StreamExt;
use std::time::{Duration, Instant};

/// Why a request is answered without running the handler: the reply, and
/// whether it was meant for another instance (HTTP 421).
pub(super) struct Refusal(pub(super) Response, pub(super) bool);

/// Reads and checks a request; an error reply if it must be refused.
pub(super) async fn read(s: &Shared, req: axum::extract::Request) -> Result<Request, Refusal> {
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    // Refusals before the content type is known are in JSON.
    let refuse =
        |ct, code, msg: String| Refusal(Response::error(ct, &Status::new(code, msg)), false);
    if let Some(token) = &s.token {
        auth::check(token, h).map_err(|m| refuse(ContentType::Json, Code::Unauthenticated, m))?;
    }
    let ct = match h.get(header::CONTENT_TYPE).map(HeaderValue::to_str) {
        None => Ok(ContentType::Json),
        Some(Ok(v)) => ContentType::parse(v).map_err(|e| e.to_string()),
        Some(Err(_)) => Err("the content type is not readable text".to_owned()),
    }
    .map_err(|m| refuse(ContentType::Json, Code::UnsupportedContentType, m))?;
    let path = parts.uri.path().strip_prefix("/rpc/").unwrap_or_default();
    let method = wire::decode_method(path)
        .filter(|m| crate::address::check_method(m).is_ok())
        .ok_or_else(|| format!("`{path}` is not a method name"))
        .map_err(|m| refuse(ct, Code::BadRequest, m))?;
    let address = address(s, h).map_err(|m| Refusal(refuse(ct, Code::Unavailable, m).0, true))?;
    let deadline = match h
        .get(envelope::TIMEOUT_MS)
        .map(|v| v.to_str().ok()?.trim().parse().ok())
    {
        None => None,
        Some(None) => {
            let msg = format!("{} must be a number of milliseconds", envelope::TIMEOUT_MS);
            return Err(refuse(ct, Code::BadRequest, msg));
        }
        Some(Some(0)) => {
            let msg = "the deadline passed before the call arrived".to_owned();
            return Err(refuse(ct, Code::DeadlineExceeded, msg));
        }
        // A deadline too far away for this platform's clock is no deadline.
        Some(Some(ms)) => Instant::now().checked_add(Duration::from_millis(ms)),
    };
    let body = read_body(body, h, s.max_body)
        .await
        .map_err(|(code, msg)| refuse(ct, code, msg))?;
    let message_id = h.get(envelope::MESSAGE_ID).and_then(|v| v.to_str().ok());
    let message_id = message_id.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    Ok(Request {
        address,
        method,
        body,
        content_type: ct,
        headers: wire::application_headers(h),
        deadline,
        delivery: Delivery::Call,
        idempotent: false,
        from: wire::peer_of(h),
        message_id: Some(message_id),
        under_policy: false,
    })
}

/// The address the caller meant, if it is this instance; a caller that
/// reached us through a stale URL meant to reach someone else.
fn address(s: &Shared, h: &HeaderMap) -> Result<Address, String> {
    let Some(v) = h.get(envelope::ADDRESS).and_then(|v| v.to_str().ok()) else {
        return Ok(Address::Instance(s.id.clone()));
    };
    let ours = |a: &Address| a.reaches(&s.id, &s.service);
    envelope::parse_address(v).filter(ours).ok_or_else(|| {
        format!(
            "this is instance `{}` of `{}`, not {v}; the peer list is stale",
            s.id, s.service
        )
    })
}

async fn read_body(body: Body, h: &HeaderMap, max: usize) -> Result<bytes::Bytes, (Code, String)> {
    let too_large = |n: String| {
        let msg = format!("the body is {n} bytes; this node accepts {max}");
        (Code::PayloadTooLarge, msg)
    };
    let declared = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > max as u64) {
        return Err(too_large(n.to_string()));
    }
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| (Code::BadRequest, format!("the body could not be read: {e}")))?;
        if buf.len() + chunk.len() > max {
            return Err(too_large(format!("more than {max}")));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}
