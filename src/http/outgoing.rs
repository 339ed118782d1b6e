//! One call as HTTP: a [`Request`] as request headers, and an HTTP reply
//! read back into a [`Response`] (bounded by the body limit).

use super::wire;
use super::Token;
use crate::address::Peer;
use crate::codec::ContentType;
use crate::envelope;
use crate::error::Error;
use crate::message::{Request, Response};
use crate::status::{Code, Status};
use axum::http::{header, HeaderMap, HeaderValue};
use std::time::Duration;

/// The headers of `request`, with `remaining` as its deadline.
pub(super) fn headers(
    request: &Request,
    remaining: Duration,
    identity: &Peer,
    token: Option<&Token>,
) -> Result<HeaderMap, Error> {
    let mut h = HeaderMap::new();
    let put = |h: &mut HeaderMap, name: &str, value: &str| {
        wire::put(h, name, value).map_err(Error::InvalidRequest)
    };
    for (k, v) in request.headers.iter() {
        if !wire::is_application(&k.to_ascii_lowercase()) {
            return Err(Error::InvalidRequest(format!(
                "header `{k}` is reserved for the transport"
            )));
        }
        put(&mut h, k, v)?;
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(request.content_type.as_str()),
    );
    let ms = remaining.as_millis().max(1).to_string();
    let address = envelope::address_value(&request.address);
    let message_id = uuid::Uuid::new_v4().to_string();
    put(&mut h, envelope::TIMEOUT_MS, &ms)?;
    put(&mut h, envelope::ADDRESS, &address)?;
    put(&mut h, envelope::MESSAGE_ID, &message_id)?;
    wire::put_peer(&mut h, identity).map_err(Error::InvalidRequest)?;
    if let Some(t) = token {
        let bearer = format!("Bearer {}", t.expose());
        put(&mut h, header::AUTHORIZATION.as_str(), &bearer)?;
    }
    Ok(h)
}

/// Reads a reply; its body may be at most `max_body` bytes.
pub(super) async fn read(
    mut resp: reqwest::Response,
    max_body: usize,
    after: Duration,
) -> Result<Response, Error> {
    let h = resp.headers().clone();
    let status = h
        .get(envelope::STATUS)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| envelope::code_of(resp.status()), Code::from_wire);
    let mut body = bytes::BytesMut::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() > max_body => {
                return Err(Error::BodyTooLarge {
                    size: body.len() + chunk.len(),
                    limit: max_body,
                });
            }
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) if e.is_timeout() => return Err(Error::Timeout { after }),
            Err(_) => return Err(Error::ConnectionLost),
        }
    }
    let ct = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let mut out = match ct.map_or(Ok(ContentType::Json), ContentType::parse) {
        Ok(ct) => Response {
            status,
            ..Response::ok(ct, body.freeze())
        },
        Err(e) => Response::error(
            ContentType::Json,
            &Status::new(Code::Internal, format!("the reply could not be read: {e}")),
        ),
    };
    out.headers = wire::application_headers(&h);
    out.from = wire::peer_of(&h);
    out.transport = crate::message::Transport::Http;
    Ok(out)
}
