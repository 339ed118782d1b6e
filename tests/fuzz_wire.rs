//! Property tests of a node's AMQP input: hundreds of requests with
//! generated properties, headers of every AMQP type, and bodies (random
//! bytes, deep nesting, lying length prefixes) published straight to a
//! node's work queue. Whatever arrives, the node answers each request at
//! most once with a known status, dead-letters what it cannot answer,
//! never leaves a message to loop, and keeps serving.
mod support;

use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::handler::{echo, Hits};
use support::raw::{self, Raw, REPLY_TO};
use warren::{Code, Node};

const CASES: usize = 1000;

/// One generated request.
#[derive(Debug, Clone)]
struct Case {
    method: Option<String>,
    content_type: Option<String>,
    reply: bool,
    correlation_id: bool,
    expiration_ms: Option<u32>,
    /// Seconds from now, any sign.
    timestamp_offset: Option<i64>,
    persistent: bool,
    app_id: Option<String>,
    message_id: Option<String>,
    headers: Vec<(String, Value)>,
    body: Vec<u8>,
}

/// A header value of any AMQP type warren may meet from RabbitMQ (which
/// does not take short strings in tables: `s` is a short int to it).
#[derive(Debug, Clone)]
enum Value {
    Text(Vec<u8>),
    Int(i64),
    Bool(bool),
    Float(f64),
    Bytes(Vec<u8>),
    Table(Vec<(String, Value)>),
    Array(Vec<Value>),
    Void,
}

fn short_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[ -~]{0,40}",
        ".{0,40}".prop_filter("an AMQP short string", |s| s.len() <= 255),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Value::Text),
        any::<i64>().prop_map(Value::Int),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>().prop_map(Value::Float),
        proptest::collection::vec(any::<u8>(), 0..32).prop_map(Value::Bytes),
        Just(Value::Void),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(("[a-z-]{1,12}", inner.clone()), 0..4).prop_map(Value::Table),
            proptest::collection::vec(inner, 0..4).prop_map(Value::Array),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        "[ -~]{0,64}".prop_map(|s| serde_json::to_vec(&s).unwrap()),
        (1usize..5000).prop_map(|n| [vec![0x91u8; n], vec![0xc0]].concat()),
        (1usize..5000).prop_map(|n| ("[".repeat(n) + &"]".repeat(n)).into_bytes()),
        (
            prop::sample::select(vec![0xc6u8, 0xdb, 0xdd, 0xdf]),
            any::<u32>()
        )
            .prop_map(|(m, len)| [&[m][..], &len.to_be_bytes()].concat()),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let method = prop_oneof![
        Just(None),
        prop::sample::select(vec![
            "Echo.say",
            "Echo.upper",
            "Echo.fail",
            "Echo.panic",
            "Echo.nope"
        ])
        .prop_map(|m| Some(m.to_owned())),
        short_text().prop_map(Some),
    ];
    let content_type = prop_oneof![
        Just(None),
        prop::sample::select(vec![
            "application/json",
            "application/msgpack",
            "application/x-msgpack; charset=binary",
            "APPLICATION/JSON",
            "text/plain",
            "",
        ])
        .prop_map(|c| Some(c.to_owned())),
        short_text().prop_map(Some),
    ];
    let headers_names = prop_oneof![
        prop::sample::select(vec![
            "x-status",
            "traceparent",
            "tracestate",
            "x-sender-id",
            "x-sender-service",
            "x-timeout-ms",
            "x-death",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z0-9-]{1,20}",
    ];
    (
        (method, content_type, any::<bool>(), any::<bool>()),
        (
            proptest::option::of(1u32..120_000),
            proptest::option::of(-100_000i64..100_000),
            any::<bool>(),
            proptest::option::of(short_text()),
            proptest::option::of(short_text()),
        ),
        proptest::collection::vec((headers_names, value()), 0..5),
        body(),
    )
        .prop_map(
            |(
                (method, content_type, reply, correlation_id),
                (expiration_ms, timestamp_offset, persistent, app_id, message_id),
                headers,
                body,
            )| Case {
                method,
                content_type,
                reply,
                correlation_id,
                expiration_ms,
                timestamp_offset,
                persistent,
                app_id,
                message_id,
                headers,
                body,
            },
        )
}

fn amqp(value: &Value) -> AMQPValue {
    match value {
        Value::Text(b) => AMQPValue::LongString(LongString::from(b.clone())),
        Value::Int(n) => AMQPValue::LongLongInt(*n),
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Float(f) => AMQPValue::Double(*f),
        Value::Bytes(b) => AMQPValue::ByteArray(b.clone().into()),
        Value::Table(entries) => AMQPValue::FieldTable(table(entries)),
        Value::Array(items) => {
            AMQPValue::FieldArray(FieldArray::from(items.iter().map(amqp).collect::<Vec<_>>()))
        }
        Value::Void => AMQPValue::Void,
    }
}

fn table(entries: &[(String, Value)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in entries {
        table.insert(ShortString::from(k.clone()), amqp(v));
    }
    table
}

/// The properties of `case`, with `id` as its correlation id if it has one.
fn properties(case: &Case, id: &str) -> BasicProperties {
    let mut p = BasicProperties::default();
    if let Some(m) = &case.method {
        p = p.with_type(m.as_str().into());
    }
    if let Some(c) = &case.content_type {
        p = p.with_content_type(c.as_str().into());
    }
    if case.reply {
        p = p.with_reply_to(REPLY_TO.into());
    }
    if case.correlation_id {
        p = p.with_correlation_id(id.into());
    }
    if let Some(ms) = case.expiration_ms {
        p = p.with_expiration(ms.to_string().into());
    }
    if let Some(offset) = case.timestamp_offset {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        p = p.with_timestamp((now + offset).max(0) as u64);
    }
    if case.persistent {
        p = p.with_delivery_mode(2);
    }
    if let Some(a) = &case.app_id {
        p = p.with_app_id(a.as_str().into());
    }
    if let Some(m) = &case.message_id {
        p = p.with_message_id(m.as_str().into());
    }
    if !case.headers.is_empty() {
        p = p.with_headers(table(&case.headers));
    }
    p
}

#[tokio::test]
async fn generated_requests_are_answered_once_or_dead_lettered_and_the_node_keeps_serving() {
    let hits = Hits::default();
    let conn = support::connect(support::config().max_body(64 * 1024)).await;
    let t = support::service_type("fuzz");
    let mut raw = Raw::open().await;
    let (dlx, mut dead) = raw.dead_letters().await;
    let node = Node::builder(t.clone())
        .concurrency(1)
        .dead_letter_exchange(&dlx)
        .serve(&conn, echo(&hits))
        .await
        .unwrap();

    // Deterministic: the same cases on every run, so a failure is
    // reproduced by running the test again.
    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let cases: Vec<Case> = (0..CASES)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();

    // Each case is followed by a well-formed call, whose reply comes after
    // any the case caused (the node handles one request at a time): a case
    // that stops the node is named.
    let mut answered = BTreeSet::new();
    for (n, case) in cases.iter().enumerate() {
        let id = format!("fuzz-{n}");
        raw.publish("", t.as_str(), properties(case, &id), &case.body)
            .await;
        let probe = format!("probe-{n}");
        raw.publish(
            "",
            t.as_str(),
            raw::call(Some("Echo.upper"), Some("application/json"), &probe),
            br#""still here""#,
        )
        .await;
        loop {
            let reply = tokio::time::timeout(Duration::from_secs(5), raw.reply())
                .await
                .unwrap_or_else(|_| panic!("no answer after case {n}: {case:?}"));
            let reply_id = raw::correlation_id(&reply).map(str::to_owned);
            let status = raw::status(&reply);
            if reply_id.as_deref() == Some(probe.as_str()) {
                assert_eq!(status.code(), &Code::Ok, "after case {n}: {status}");
                assert_eq!(&reply.data[..], br#""STILL HERE""#);
                break;
            }
            assert!(
                !matches!(status.code(), Code::Other(_)),
                "case {n}: a reply with an unknown status: {status}"
            );
            if status.code() != &Code::Ok {
                assert!(!status.message().is_empty(), "case {n}: no message");
            }
            if let Some(reply_id) = reply_id {
                assert_eq!(reply_id, id, "case {n}: a reply to another request");
                assert!(answered.insert(reply_id), "case {n}: two replies");
            }
        }
    }
    // Whatever the node could not answer went to the dead-letter exchange
    // once; nothing waits in its queue to be delivered again.
    let mut dead_letters = 0;
    while let Ok(Some(Ok(d))) = tokio::time::timeout(
        Duration::from_millis(500),
        futures::StreamExt::next(&mut dead),
    )
    .await
    {
        let reason = raw::death_reason(&d);
        assert!(reason == "rejected" || reason == "expired", "{reason}");
        dead_letters += 1;
    }
    assert_eq!(raw.depth(t.as_str()).await, 0, "messages left to loop");
    // Every case with somewhere to reply and an id to reply with, and a
    // deadline not yet passed, got an answer or was dead-lettered.
    let answerable = cases
        .iter()
        .filter(|c| c.reply && c.correlation_id && c.timestamp_offset.is_none())
        .count();
    assert!(
        answered.len() + dead_letters >= answerable,
        "{answerable} answerable requests, {} answered, {dead_letters} dead-lettered",
        answered.len()
    );
    node.shutdown().await;
}
