//! Malformed input: every kind gets an error reply when a reply is possible,
//! and is otherwise rejected once, to the dead-letter exchange, never
//! redelivered in a loop; after each, the node still answers.
mod support;

use lapin::BasicProperties;
use std::collections::BTreeSet;
use support::handler::{echo, Hits};
use support::raw::{self, Raw};
use warren::{Address, Client, Code, ContentType, Error, Node, Request, ServiceType};

const MAX_BODY: usize = 1024;
const JSON: &str = "application/json";
const MSGPACK: &str = "application/msgpack";

/// A node of its own type that takes at most [`MAX_BODY`] bytes, handles
/// one request at a time (so replies come in the order of the requests) and
/// dead-letters to `dlx`.
async fn node(dlx: Option<&str>, hits: &Hits) -> (warren::Connection, ServiceType, Node) {
    let cfg = support::config().max_body(MAX_BODY);
    let conn = support::connect(cfg).await;
    let t = support::service_type("malformed");
    let mut builder = Node::builder(t.clone()).concurrency(1);
    if let Some(dlx) = dlx {
        builder = builder.dead_letter_exchange(dlx);
    }
    let node = builder.serve(&conn, echo(hits)).await.unwrap();
    (conn, t, node)
}

/// Publishes a well-formed call and checks its ok reply: the node still
/// answers, and everything published before it was dealt with.
async fn still_answers(raw: &mut Raw, t: &ServiceType) {
    let id = support::unique("ok");
    let props = raw::call(Some("Echo.upper"), Some(JSON), &id);
    raw.publish("", t.as_str(), props, br#""fine""#).await;
    let reply = raw.reply().await;
    assert_eq!(raw::correlation_id(&reply), Some(id.as_str()));
    assert_eq!(raw::status(&reply).code(), &Code::Ok);
    assert_eq!(&reply.data[..], br#""FINE""#);
}

/// A call that must get an error reply.
struct Case<'a> {
    what: &'a str,
    method: Option<&'a str>,
    content_type: &'a str,
    body: &'a [u8],
    code: Code,
    /// Whether the handler sees it (or the node refuses it first).
    runs: bool,
}

impl<'a> Case<'a> {
    fn new(
        what: &'a str,
        method: Option<&'a str>,
        content_type: &'a str,
        body: &'a [u8],
        code: Code,
    ) -> Self {
        Self {
            what,
            method,
            content_type,
            body,
            code,
            runs: true,
        }
    }

    fn refused(self) -> Self {
        Self {
            runs: false,
            ..self
        }
    }
}

#[tokio::test]
async fn malformed_calls_get_error_replies() {
    let hits = Hits::default();
    let (_conn, t, node) = node(None, &hits).await;
    let mut raw = Raw::open().await;
    let big = vec![b'x'; MAX_BODY + 1];
    let cases = [
        Case::new(
            "bad json",
            Some("Echo.upper"),
            JSON,
            b"{not json",
            Code::BadRequest,
        ),
        Case::new(
            "bad msgpack",
            Some("Echo.upper"),
            MSGPACK,
            &[0xc1, 0xff],
            Code::BadRequest,
        ),
        Case::new(
            "unknown method",
            Some("Echo.nope"),
            JSON,
            b"1",
            Code::UnknownMethod,
        ),
        Case::new(
            "panic",
            Some("Echo.panic"),
            MSGPACK,
            &[0xc0],
            Code::Internal,
        ),
        Case::new(
            "text/plain",
            Some("Echo.upper"),
            "text/plain",
            b"hi",
            Code::UnsupportedContentType,
        )
        .refused(),
        Case::new(
            "oversized",
            Some("Echo.say"),
            JSON,
            &big,
            Code::PayloadTooLarge,
        )
        .refused(),
        Case::new("no type", None, JSON, b"1", Code::BadRequest).refused(),
    ];
    for Case {
        what,
        method,
        content_type,
        body,
        code,
        runs,
    } in cases
    {
        let before = hits.count();
        let id = support::unique("bad");
        raw.publish(
            "",
            t.as_str(),
            raw::call(method, Some(content_type), &id),
            body,
        )
        .await;
        let reply = raw.reply().await;
        assert_eq!(raw::correlation_id(&reply), Some(id.as_str()), "{what}");
        let status = raw::status(&reply);
        assert_eq!(status.code(), &code, "{what}: {status}");
        assert!(!status.message().is_empty(), "{what}: an empty message");
        assert_eq!(hits.count() - before, usize::from(runs), "{what}");
        still_answers(&mut raw, &t).await;
    }
    node.shutdown().await;
}

#[tokio::test]
async fn what_cannot_be_answered_is_dead_lettered_once() {
    let mut raw = Raw::open().await;
    let (dlx, mut dead) = raw.dead_letters().await;
    let hits = Hits::default();
    let (_conn, t, node) = node(Some(&dlx), &hits).await;
    let big = vec![b'x'; MAX_BODY + 1];
    let one_way = |method: Option<&str>, ct: &str| {
        let mut p = BasicProperties::default().with_content_type(ct.into());
        if let Some(m) = method {
            p = p.with_type(m.into());
        }
        p
    };
    // (what, properties, body, reaches the handler)
    let cases: [(&str, BasicProperties, &[u8], bool); 6] = [
        (
            "a call without reply_to",
            one_way(Some("Echo.say"), JSON).with_correlation_id("7".into()),
            b"1",
            false,
        ),
        (
            "a send of unknown content type",
            one_way(Some("Echo.say"), "text/plain"),
            b"1",
            false,
        ),
        ("a send without type", one_way(None, JSON), b"1", false),
        (
            "an oversized send",
            one_way(Some("Echo.say"), JSON),
            &big,
            false,
        ),
        (
            "a failing send",
            one_way(Some("Echo.fail"), JSON),
            br#""no""#,
            true,
        ),
        (
            "a panicking send",
            one_way(Some("Echo.panic"), JSON),
            b"1",
            true,
        ),
    ];
    let mut expected = BTreeSet::new();
    for (what, props, body, _) in &cases {
        let id = support::unique("dead");
        expected.insert((id.clone(), *what));
        let props = props.clone().with_message_id(id.as_str().into());
        raw.publish("", t.as_str(), props, body).await;
    }
    still_answers(&mut raw, &t).await;
    let runs = cases.iter().filter(|c| c.3).count();
    assert_eq!(hits.count(), runs + 1, "each failing send ran once");

    let mut got = BTreeSet::new();
    for _ in &cases {
        let d = raw::next(&mut dead).await;
        assert_eq!(raw::death_reason(&d), "rejected");
        let id = d.properties.message_id().as_ref().unwrap().to_string();
        let what = expected
            .iter()
            .find(|(e, _)| *e == id)
            .expect("one of ours")
            .1;
        assert!(got.insert((id, what)), "{what} dead-lettered twice");
    }
    assert_eq!(got, expected);
    // Nothing else follows: no copy, no redelivery.
    raw.publish(
        &dlx,
        "",
        BasicProperties::default().with_message_id("end".into()),
        b"",
    )
    .await;
    let d = raw::next(&mut dead).await;
    assert_eq!(d.properties.message_id().as_ref().unwrap().as_str(), "end");
    assert_eq!(raw.depth(t.as_str()).await, 0);
    assert_eq!(hits.count(), runs + 1);
    node.shutdown().await;
}

#[tokio::test]
async fn without_a_dead_letter_exchange_rejected_messages_are_dropped() {
    let hits = Hits::default();
    let (_conn, t, node) = node(None, &hits).await;
    let mut raw = Raw::open().await;
    let props = BasicProperties::default()
        .with_type("Echo.say".into())
        .with_content_type(JSON.into())
        .with_correlation_id("1".into());
    raw.publish("", t.as_str(), props, b"1").await;
    let failing = BasicProperties::default().with_type("Echo.fail".into());
    raw.publish("", t.as_str(), failing, br#""no""#).await;
    still_answers(&mut raw, &t).await;
    assert_eq!(raw.depth(t.as_str()).await, 0);
    assert_eq!(
        hits.count(),
        2,
        "the failing send ran once, the call not at all"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_not_sent() {
    let hits = Hits::default();
    let (conn, t, node) = node(None, &hits).await;
    let big = vec![b'x'; MAX_BODY + 1];
    let req = Request::new(Address::Any(t), "Echo.say", ContentType::Json, big).unwrap();
    let err = Client::new(&conn).call(req).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::BodyTooLarge {
                size: 1025,
                limit: MAX_BODY
            }
        ),
        "{err}"
    );
    assert_eq!(hits.count(), 0);
    node.shutdown().await;
}
