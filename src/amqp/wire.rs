//! How requests and replies map onto AMQP properties and headers.
//!
//! This file is the wire protocol; `docs/PROTOCOL.md` describes the same
//! thing for peers in other languages. Keep the two in step. The header
//! names are the envelope's (`envelope.rs`), shared with HTTP.

use crate::address::{Peer, ServiceId, ServiceType};
use crate::codec::ContentType;
use crate::envelope::{SENDER_ID, SENDER_TYPE, STATUS, TIMEOUT_MS};
use crate::error::Error;
use crate::headers::Headers;
use crate::status::Code;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The direct reply-to pseudo queue.
pub(crate) const REPLY_TO: &str = "amq.rabbitmq.reply-to";
/// AMQP `delivery_mode` for messages that survive a broker restart.
pub(crate) const PERSISTENT: u8 = 2;

/// What the sending side fills in beyond the request itself.
pub(crate) struct Outgoing<'a> {
    pub(crate) method: &'a str,
    pub(crate) content_type: ContentType,
    pub(crate) headers: &'a Headers,
    /// Sends always have one; calls only if their caller gave one.
    pub(crate) message_id: Option<&'a str>,
    pub(crate) correlation_id: Option<u64>,
    pub(crate) reply_to: Option<&'a str>,
    /// The remaining deadline; also the message's TTL in the queue.
    pub(crate) timeout: Option<Duration>,
    pub(crate) persistent: bool,
    /// The sender, from [`sender_app_id`].
    pub(crate) app_id: Option<&'a ShortString>,
}

fn short(what: &str, s: &str) -> Result<ShortString, Error> {
    ShortString::try_new(s).map_err(|_| {
        Error::InvalidRequest(format!("{what} is {} bytes long; AMQP allows 255", s.len()))
    })
}

/// The sender as an `app_id`: `<type>/<id>`, either side empty when
/// unknown; `None` when both are. A client's or node's, computed once and
/// sent with each of its requests or replies. Always a short string: each
/// name is at most [`MAX_NAME_LEN`](crate::address::MAX_NAME_LEN) bytes.
pub(crate) fn sender_app_id(peer: &Peer) -> Option<ShortString> {
    let t = peer.service.as_ref().map(ServiceType::as_str);
    let id = peer.id.as_ref().map(ServiceId::as_str);
    if t.is_none() && id.is_none() {
        return None;
    }
    ShortString::try_new(format!(
        "{}/{}",
        t.unwrap_or_default(),
        id.unwrap_or_default()
    ))
    .ok()
}

/// The sender named by an `app_id`: `<type>/<id>` as warren sends it; a
/// foreign peer's `app_id` without a `/` names its application, taken as
/// the service type.
fn peer_of_app_id(app_id: &str) -> Peer {
    let (t, id) = app_id.split_once('/').unwrap_or((app_id, ""));
    Peer {
        id: ServiceId::new(id).ok(),
        service: ServiceType::new(t).ok(),
    }
}

/// Application headers as an AMQP table; `None` when there are none, so a
/// message without them carries no table at all (cheaper for every hop,
/// the broker included).
fn table_of(headers: &Headers, extra: Option<(&str, &str)>) -> Result<Option<FieldTable>, Error> {
    if headers.is_empty() && extra.is_none() {
        return Ok(None);
    }
    let mut table = FieldTable::default();
    for (k, v) in headers.iter().chain(extra) {
        table.insert(
            short("a header name", k)?,
            AMQPValue::LongString(LongString::from(v)),
        );
    }
    Ok(Some(table))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The header RabbitMQ keeps a message's dead-letter history in.
const X_DEATH: &str = "x-death";

/// Whether `headers` hold no `x-death` header of a shape RabbitMQ does not
/// write (an array of tables, each `count` a long). RabbitMQ 3.10 crashes
/// the queue that dead-letters a message carrying such a header and, when
/// the message is persistent, crashes again at each restart; a sender must
/// not be able to do that to a service's queues.
pub(crate) fn x_death_well_formed(headers: &FieldTable) -> bool {
    match headers.inner().get(X_DEATH) {
        None => true,
        Some(AMQPValue::FieldArray(deaths)) => deaths.as_slice().iter().all(|death| {
            matches!(death, AMQPValue::FieldTable(t)
                if matches!(t.inner().get("count"), None | Some(AMQPValue::LongLongInt(_))))
        }),
        Some(_) => false,
    }
}

/// `headers` without a forged `x-death` header ([`x_death_well_formed`]);
/// `None` when nothing had to be removed.
pub(crate) fn without_forged_x_death(headers: &FieldTable) -> Option<FieldTable> {
    if x_death_well_formed(headers) {
        return None;
    }
    let mut kept = headers.inner().clone();
    kept.remove(X_DEATH);
    Some(FieldTable::from(kept))
}

/// Properties of a request.
pub(crate) fn request_properties(out: &Outgoing<'_>) -> Result<BasicProperties, Error> {
    let mut props = BasicProperties::default()
        .with_type(short("method", out.method)?)
        .with_content_type(ShortString::from(out.content_type.as_str()))
        .with_timestamp(now_secs());
    if let Some(t) = out.timeout {
        // At least 1 ms: an expiration of 0 would make RabbitMQ drop the
        // message unless a consumer is ready at that very moment.
        let ms = t.as_millis().clamp(1, u128::from(u32::MAX)) as u64;
        props = props.with_expiration(ShortString::from(ms.to_string()));
    }
    if let Some(c) = out.correlation_id {
        props = props.with_correlation_id(ShortString::from(c.to_string()));
    }
    if let Some(r) = out.reply_to {
        props = props.with_reply_to(short("reply_to", r)?);
    }
    if out.persistent {
        props = props.with_delivery_mode(PERSISTENT);
    }
    if let Some(m) = out.message_id {
        props = props.with_message_id(short("message id", m)?);
    }
    if let Some(app_id) = out.app_id {
        props = props.with_app_id(app_id.clone());
    }
    if let Some(table) = table_of(out.headers, None)? {
        props = props.with_headers(table);
    }
    Ok(props)
}

/// Properties of a reply to a request with `correlation_id`: what a caller
/// needs and no more (the status only when it is not `ok`, the sender for
/// gathers, the handler's headers if it set any).
pub(crate) fn reply_properties(
    correlation_id: Option<&ShortString>,
    content_type: ContentType,
    status: &Code,
    headers: &Headers,
    sender: Option<&ShortString>,
) -> Result<BasicProperties, Error> {
    let status = (*status != Code::Ok).then(|| (STATUS, status.as_str()));
    let mut props =
        BasicProperties::default().with_content_type(ShortString::from(content_type.as_str()));
    if let Some(c) = correlation_id {
        props = props.with_correlation_id(c.clone());
    }
    if let Some(s) = sender {
        props = props.with_app_id(s.clone());
    }
    if let Some(table) = table_of(headers, status)? {
        props = props.with_headers(table);
    }
    Ok(props)
}

/// A header value as text, whatever AMQP type a peer used for it.
pub(crate) fn value_str(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        AMQPValue::ByteArray(b) => Some(String::from_utf8_lossy(b.as_slice()).into_owned()),
        AMQPValue::Boolean(b) => Some(b.to_string()),
        AMQPValue::Float(n) => Some(n.to_string()),
        AMQPValue::Double(n) => Some(n.to_string()),
        other => value_i64(other).map(|n| n.to_string()),
    }
}

/// A header value as a whole number, whatever AMQP type a peer used for it.
pub(crate) fn value_i64(v: &AMQPValue) -> Option<i64> {
    match v {
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok(),
        // JavaScript has only doubles, and some clients send every number
        // as one; a timeout of `1500.0` ms is still 1500 ms.
        AMQPValue::Float(n) => whole(f64::from(*n)),
        AMQPValue::Double(n) => whole(*n),
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.trim().parse().ok(),
        AMQPValue::ShortString(s) => s.as_str().trim().parse().ok(),
        _ => None,
    }
}

fn whole(n: f64) -> Option<i64> {
    // `as` saturates at the i64 bounds, which is what a timeout wants.
    n.is_finite().then(|| n.trunc() as i64)
}

/// What warren reads out of an incoming message's properties.
#[derive(Debug, Default)]
pub(crate) struct Incoming {
    /// Application headers (warren's own `x-` headers removed).
    pub(crate) headers: Headers,
    pub(crate) sender: Peer,
    pub(crate) timeout: Option<Duration>,
    /// `None` when the reply has no status header: a plain RPC server's
    /// reply, taken as ok.
    pub(crate) status: Option<Code>,
}

/// The last `app_id` read and the sender it names. A client's replies
/// come from few instances, mostly the same one in a row: each `app_id` is
/// checked and parsed when it changes, not on every reply.
#[derive(Default)]
pub(crate) struct LastSender(Option<(ShortString, Peer)>);

impl LastSender {
    fn peer(&mut self, app_id: &ShortString) -> Peer {
        match &self.0 {
            Some((last, peer)) if last == app_id => peer.clone(),
            _ => {
                let peer = peer_of_app_id(app_id.as_str());
                self.0 = Some((app_id.clone(), peer.clone()));
                peer
            }
        }
    }
}

/// Reads headers, sender, deadline and status from `props`; the sender
/// through `last` when the reader keeps one.
pub(crate) fn incoming(props: &BasicProperties, last: Option<&mut LastSender>) -> Incoming {
    let mut inc = Incoming::default();
    if let Some(app_id) = props.app_id() {
        inc.sender = match last {
            Some(last) => last.peer(app_id),
            None => peer_of_app_id(app_id.as_str()),
        };
    }
    if let Some(table) = props.headers() {
        for (k, v) in table.inner() {
            match k.as_str() {
                TIMEOUT_MS => {
                    inc.timeout = value_i64(v)
                        .and_then(|n| u64::try_from(n).ok())
                        .map(Duration::from_millis);
                }
                SENDER_ID => inc.sender.id = value_str(v).and_then(|s| ServiceId::new(s).ok()),
                SENDER_TYPE => {
                    inc.sender.service = value_str(v).and_then(|s| ServiceType::new(s).ok());
                }
                STATUS => inc.status = value_str(v).map(|s| Code::from_wire(&s)),
                name => {
                    if let Some(s) = value_str(v) {
                        inc.headers.insert(name, s);
                    }
                }
            }
        }
    }
    // A peer that sets only the standard `expiration` still gets its
    // deadline honoured.
    if inc.timeout.is_none() {
        inc.timeout = props
            .expiration()
            .as_ref()
            .and_then(|e| e.as_str().trim().parse::<u64>().ok())
            .map(Duration::from_millis);
    }
    inc
}

/// The content type of an incoming message. A message without one is taken
/// as JSON, the lingua franca of hand-written peers.
pub(crate) fn content_type(props: &BasicProperties) -> Result<ContentType, Error> {
    let ct = props.content_type().as_ref().map(|ct| ct.as_str());
    Ok(ct.map_or(Ok(ContentType::Json), ContentType::parse)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer of type `service`, instance `id`.
    fn peer(service: Option<&str>, id: Option<&str>) -> Peer {
        Peer::new(
            service.map(|s| ServiceType::new(s).unwrap()),
            id.map(|s| ServiceId::new(s).unwrap()),
        )
    }

    /// A transient call's request, as a client sends it.
    fn call<'a>(headers: &'a Headers, app_id: Option<&'a ShortString>) -> Outgoing<'a> {
        Outgoing {
            method: "Calc.add",
            content_type: ContentType::Json,
            headers,
            message_id: Some("m1"),
            correlation_id: Some(7),
            reply_to: Some(REPLY_TO),
            timeout: Some(Duration::from_millis(1500)),
            persistent: false,
            app_id,
        }
    }

    #[test]
    fn request_round_trip() {
        let headers: Headers = [("traceparent", "00-1-2-01")].into_iter().collect();
        let sender = peer(Some("caller"), Some("c1"));
        let props = request_properties(&call(&headers, sender_app_id(&sender).as_ref())).unwrap();
        assert_eq!(props.expiration().as_ref().unwrap().as_str(), "1500");
        assert_eq!(props.kind().as_ref().unwrap().as_str(), "Calc.add");
        assert_eq!(props.delivery_mode(), &None);
        let inc = incoming(&props, None);
        assert_eq!(inc.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(inc.sender, sender);
        assert_eq!(inc.headers, headers);
        assert_eq!(content_type(&props).unwrap(), ContentType::Json);
    }

    #[test]
    fn a_plain_call_and_an_ok_reply_carry_no_header_table() {
        let sender = peer(None, Some("c1"));
        let props = request_properties(&Outgoing {
            content_type: ContentType::MsgPack,
            timeout: Some(Duration::from_millis(20)),
            ..call(&Headers::default(), sender_app_id(&sender).as_ref())
        })
        .unwrap();
        assert_eq!(props.headers(), &None);
        assert_eq!(props.app_id().as_ref().unwrap().as_str(), "/c1");
        assert_eq!(incoming(&props, None).sender, sender);
        let longest = "x".repeat(crate::address::MAX_NAME_LEN);
        assert!(sender_app_id(&peer(Some(&longest), Some(&longest))).is_some());

        let me = sender_app_id(&peer(Some("calc"), Some("n1")));
        let none = Headers::default();
        let ok = reply_properties(None, ContentType::Json, &Code::Ok, &none, me.as_ref()).unwrap();
        assert_eq!(ok.headers(), &None);
        assert_eq!(ok.app_id().as_ref().unwrap().as_str(), "calc/n1");
        let inc = incoming(&ok, None);
        assert_eq!(inc.status, None);
        assert_eq!(inc.sender.service.unwrap().as_str(), "calc");
        assert_eq!(inc.sender.id.unwrap().as_str(), "n1");

        let err = reply_properties(None, ContentType::Json, &Code::Internal, &none, None).unwrap();
        assert_eq!(incoming(&err, None).status, Some(Code::Internal));
    }

    /// The sender named by `app_id`, read through `last` if given.
    fn sender_of(app_id: &str, last: Option<&mut LastSender>) -> Peer {
        incoming(&BasicProperties::default().with_app_id(app_id.into()), last).sender
    }

    #[test]
    fn a_kept_last_sender_follows_each_change_of_app_id() {
        let mut last = LastSender::default();
        for app_id in [
            "calc/n1", "calc/n1", "calc/n2", "bill/", "calc/n1", "a.b/n1",
        ] {
            let kept = sender_of(app_id, Some(&mut last));
            assert_eq!(kept, sender_of(app_id, None), "{app_id}");
        }
        // No app_id at all: no sender, whatever was read before.
        let mut last = LastSender::default();
        let _ = sender_of("calc/n1", Some(&mut last));
        assert_eq!(
            incoming(&BasicProperties::default(), Some(&mut last)).sender,
            Peer::default()
        );
    }

    /// What is read from a message carrying the header table `headers`.
    fn with_headers<const N: usize>(headers: [(&str, AMQPValue); N]) -> Incoming {
        let t: std::collections::BTreeMap<_, _> = headers.map(|(k, v)| (k.into(), v)).into();
        incoming(&BasicProperties::default().with_headers(t.into()), None)
    }

    #[test]
    fn senders_are_read_from_app_id_or_older_headers() {
        let of = |app_id: &str| sender_of(app_id, None);
        assert_eq!(of("calc/n1"), peer(Some("calc"), Some("n1")));
        assert_eq!(of("calc/"), peer(Some("calc"), None));
        assert_eq!(of("billing-script"), peer(Some("billing-script"), None));
        assert_eq!(of("/"), peer(None, None));

        let inc = with_headers([
            ("x-sender-id", AMQPValue::LongString("py-1".into())),
            ("x-sender-type", AMQPValue::LongString("python".into())),
        ]);
        assert_eq!(inc.sender, peer(Some("python"), Some("py-1")));
        assert!(inc.headers.is_empty());
    }

    #[test]
    fn long_header_names_are_errors_not_panics() {
        let headers: Headers = [("h".repeat(300), "v")].into_iter().collect();
        let err = request_properties(&Outgoing {
            method: "m",
            correlation_id: None,
            reply_to: None,
            timeout: None,
            persistent: true,
            ..call(&headers, None)
        })
        .unwrap_err();
        assert!(err.to_string().contains("255"), "{err}");
    }

    #[test]
    fn foreign_integer_and_string_headers_are_read() {
        let inc = with_headers([
            ("x-timeout-ms", AMQPValue::LongString("250".into())),
            ("x-status", AMQPValue::LongString("application".into())),
            ("n", AMQPValue::LongInt(5)),
            ("f", AMQPValue::Double(0.5)),
            ("yes", AMQPValue::Boolean(true)),
        ]);
        assert_eq!(inc.timeout, Some(Duration::from_millis(250)));
        assert_eq!(inc.status, Some(Code::Application));
        assert_eq!(inc.headers.get("n"), Some("5"));
        assert_eq!(inc.headers.get("f"), Some("0.5"));
        assert_eq!(inc.headers.get("yes"), Some("true"));

        let inc = with_headers([("x-timeout-ms", AMQPValue::Double(1500.0))]);
        assert_eq!(inc.timeout, Some(Duration::from_millis(1500)));
    }
}
