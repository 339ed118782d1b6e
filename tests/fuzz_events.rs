//! Property test of a subscription's input: 300 generated messages
//! published to the events exchange (envelopes with fields of any type,
//! both codecs, random and deeply nested bodies, headers of every AMQP
//! type, a forged `x-death`). Each is handled once or dead-lettered once,
//! and the subscription keeps handling well-formed events.
mod support;

use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::raw::Raw;
use tower::service_fn;
use warren::events::{DeadLetters, Delivery, Publisher, Subscription};
use warren::ContentType;

const CASES: usize = 300;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, warren::Event)]
#[event(name = "payment.failed", version = 1)]
struct PaymentFailed {
    invoice: String,
    reason: String,
}

/// Any JSON value, nested a little.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An envelope whose fields are mostly right, and otherwise of any type.
fn envelope() -> impl Strategy<Value = Value> {
    let payload = prop_oneof![
        4 => ("[a-zA-Z0-9-]{0,12}", ".{0,12}").prop_map(|(i, r)| json!({"invoice": i, "reason": r})),
        1 => json(),
    ];
    (
        prop_oneof![4 => "[a-z0-9-]{1,36}".prop_map(Value::from), 1 => json()],
        prop_oneof![4 => Just(Value::from(1)), 1 => (0u32..4).prop_map(Value::from), 1 => json()],
        prop_oneof![
            4 => Just(Value::from("payment.failed")),
            1 => Just(Value::from("payment.other")),
            1 => json()
        ],
        prop_oneof![4 => Just(Value::from("2026-12-01T10:00:00Z")), 1 => json()],
        payload,
        prop::sample::select(vec![
            None,
            None,
            None,
            None,
            None,
            None,
            Some("version"),
            Some("payload"),
            Some("eventId"),
        ]),
    )
        .prop_map(|(id, version, event_type, timestamp, payload, drop)| {
            let mut e = json!({
                "eventId": id, "version": version, "eventType": event_type,
                "timestamp": timestamp, "payload": payload,
            });
            if let Some(field) = drop {
                e.as_object_mut().unwrap().remove(field);
            }
            e
        })
}

#[derive(Debug, Clone)]
struct Case {
    content_type: Option<&'static str>,
    body: Vec<u8>,
    headers: Vec<(String, AMQPValue)>,
    event_type: Option<String>,
}

fn header() -> impl Strategy<Value = (String, AMQPValue)> {
    let value = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..24)
            .prop_map(|b| AMQPValue::LongString(LongString::from(b))),
        any::<i64>().prop_map(AMQPValue::LongLongInt),
        any::<bool>().prop_map(AMQPValue::Boolean),
        any::<f64>().prop_map(AMQPValue::Double),
        Just(AMQPValue::FieldArray(FieldArray::from(vec![
            AMQPValue::Double(1.5)
        ]))),
        Just(AMQPValue::FieldTable(FieldTable::default())),
    ];
    (
        prop_oneof![
            Just("x-death".to_owned()),
            Just("x-warren-attempts".to_owned()),
            Just("traceparent".to_owned()),
            "[a-z-]{1,12}",
        ],
        value,
    )
}

fn case() -> impl Strategy<Value = Case> {
    let body = prop_oneof![
        3 => envelope().prop_map(|e| (Some("application/json"), serde_json::to_vec(&e).unwrap())),
        3 => envelope().prop_map(|e| (
            Some("application/msgpack"),
            ContentType::MsgPack.encode(&e).unwrap().to_vec()
        )),
        1 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(|b| (None, b)),
        1 => (1usize..3000).prop_map(|n| (
            Some("application/json"),
            format!(
                r#"{{"eventId":"d","version":1,"eventType":"payment.failed","payload":{}}}"#,
                "[".repeat(n) + &"]".repeat(n)
            )
            .into_bytes()
        )),
        1 => (1usize..3000).prop_map(|n| (
            Some("application/msgpack"),
            [vec![0x91u8; n], vec![0xc0]].concat()
        )),
    ];
    (
        body,
        proptest::collection::vec(header(), 0..3),
        proptest::option::of(prop_oneof![Just("payment.failed".to_owned()), ".{0,20}"]),
    )
        .prop_map(|((content_type, body), headers, event_type)| Case {
            content_type,
            body,
            headers,
            event_type,
        })
}

fn properties(case: &Case) -> BasicProperties {
    let mut p = BasicProperties::default();
    if let Some(c) = case.content_type {
        p = p.with_content_type(c.into());
    }
    if let Some(t) = &case.event_type {
        p = p.with_type(t.as_str().into());
    }
    if !case.headers.is_empty() {
        let mut table = FieldTable::default();
        for (k, v) in &case.headers {
            table.insert(ShortString::from(k.clone()), v.clone());
        }
        p = p.with_headers(table);
    }
    p
}

#[tokio::test]
async fn generated_events_are_handled_or_dead_lettered_once_and_the_subscription_goes_on() {
    let conn = support::connect(support::config().events_exchange(support::unique("events"))).await;
    let exchange = conn.config().events_exchange.clone();
    let service = support::unique("fuzzed");
    let handled = Arc::new(AtomicUsize::new(0));
    let markers = Arc::new(AtomicUsize::new(0));
    let (h, m) = (handled.clone(), markers.clone());
    let sub = Subscription::new(&service)
        .on(service_fn(move |d: Delivery<PaymentFailed>| {
            if d.payload.invoice == "marker" {
                m.fetch_add(1, Ordering::SeqCst);
            } else {
                h.fetch_add(1, Ordering::SeqCst);
            }
            async { Ok::<_, tower::BoxError>(()) }
        }))
        .start(&conn)
        .await
        .unwrap();

    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let cases: Vec<Case> = (0..CASES)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    let raw = Raw::open().await;
    let publisher = Publisher::new(&conn);
    for (n, case) in cases.iter().enumerate() {
        raw.publish(&exchange, "payment.failed", properties(case), &case.body)
            .await;
        if n % 50 == 49 {
            publisher
                .publish(&PaymentFailed {
                    invoice: "marker".into(),
                    reason: String::new(),
                })
                .await
                .unwrap();
        }
    }
    let dlq = DeadLetters::new(&conn, &service);
    let start = Instant::now();
    loop {
        let dead = dlq.count().await.unwrap() as usize;
        let done = handled.load(Ordering::SeqCst) + dead;
        if markers.load(Ordering::SeqCst) == CASES / 50 && done == CASES {
            break;
        }
        assert!(
            done <= CASES,
            "{done} outcomes for {CASES} messages: some came twice"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "after 60 s: {} handled, {dead} dead-lettered, {} markers, of {CASES}",
            handled.load(Ordering::SeqCst),
            markers.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing more arrives later (no redelivery loop).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dead = dlq.count().await.unwrap() as usize;
    assert_eq!(handled.load(Ordering::SeqCst) + dead, CASES);
    println!(
        "{CASES} generated events: {} handled, {dead} dead-lettered",
        handled.load(Ordering::SeqCst)
    );
    dlq.purge().await.unwrap();
    sub.shutdown().await;
}
