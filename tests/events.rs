//! Events against a real broker: routing (exact, `*`, `#`) across services
//! and instances, unroutable events, the retry ladder, the dead-letter
//! queue and its replay, poison messages, versions and upcasting, the
//! inbox, foreign envelopes.
mod support;

use lapin::BasicProperties;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::raw::Raw;
use tower::service_fn;
use warren::events::{
    permanent, DeadLetters, Delivery, Format, Publisher, RetryPolicy, Subscription, Unroutable,
};
use warren::{Connection, Error};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, warren::Event)]
#[event(name = "ticket.created", version = 1)]
struct TicketCreated {
    id: u64,
    title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, warren::Event)]
#[event(name = "ticket.status_changed")]
struct StatusChanged {
    id: u64,
    status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, warren::Event)]
#[event(name = "payment.failed", version = 2)]
struct PaymentFailed {
    invoice: String,
    reason: String,
}

/// A connection whose events exchange is the test's own.
async fn connect() -> Connection {
    support::connect(support::config().events_exchange(support::unique("events"))).await
}

/// What a handler saw: (service label, event type, eventId, attempt).
type Record = (String, String, String, u32);

/// What the handlers saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Record>>>);

impl Seen {
    fn push<T>(&self, label: &str, d: &Delivery<T>) {
        self.0.lock().unwrap().push((
            label.to_owned(),
            d.meta.event_type.clone(),
            d.meta.id.clone(),
            d.attempt,
        ));
    }

    fn all(&self) -> Vec<Record> {
        self.0.lock().unwrap().clone()
    }

    /// Waits (up to 30 s) until `done` holds.
    async fn until(&self, what: &str, done: impl Fn(&[Record]) -> bool) {
        let start = Instant::now();
        while !done(&self.all()) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{what}: still waiting; seen {:?}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A pattern handler recording under `label`.
fn recorder(
    seen: &Seen,
    label: &str,
) -> impl tower::Service<Delivery<Value>, Response = (), Error = Error, Future = impl Send>
       + Clone
       + Send
       + Sync
       + 'static {
    let (seen, label) = (seen.clone(), label.to_owned());
    service_fn(move |d: Delivery<Value>| {
        seen.push(&label, &d);
        async { Ok::<_, Error>(()) }
    })
}

#[tokio::test]
async fn each_service_gets_each_event_once_whatever_its_instances() {
    let conn = connect().await;
    let seen = Seen::default();
    let notifications = support::unique("notifications");
    let search = support::unique("search");
    let audit = support::unique("audit");
    let mut subscribers = Vec::new();
    for _ in 0..2 {
        subscribers.push(
            Subscription::new(&notifications)
                .on_pattern("*.created", recorder(&seen, "notifications"))
                .on_pattern("*.status_changed", recorder(&seen, "notifications"))
                .on_pattern("payment.*", recorder(&seen, "notifications"))
                .start(&conn)
                .await
                .unwrap(),
        );
        let s = seen.clone();
        subscribers.push(
            Subscription::new(&search)
                .on(service_fn(move |d: Delivery<TicketCreated>| {
                    s.push("search", &d);
                    async { Ok::<_, Error>(()) }
                }))
                .start(&conn)
                .await
                .unwrap(),
        );
        subscribers.push(
            Subscription::new(&audit)
                .on_pattern("#", recorder(&seen, "audit"))
                .start(&conn)
                .await
                .unwrap(),
        );
    }
    let publisher = Publisher::new(&conn);
    let mut ids = HashMap::new();
    for i in 0..10 {
        let created = TicketCreated {
            id: i,
            title: format!("t{i}"),
        };
        ids.insert(publisher.publish(&created).await.unwrap(), "ticket.created");
        let changed = StatusChanged {
            id: i,
            status: "open".into(),
        };
        ids.insert(
            publisher.publish(&changed).await.unwrap(),
            "ticket.status_changed",
        );
        let failed = PaymentFailed {
            invoice: format!("F{i}"),
            reason: "card".into(),
        };
        ids.insert(publisher.publish(&failed).await.unwrap(), "payment.failed");
    }
    seen.until("every event handled", |s| s.len() >= 30 + 30 + 10)
        .await;
    // Let any duplicate show up before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = seen.all();
    assert_eq!(all.len(), 70, "{all:?}");
    for (label, expected) in [("notifications", 30), ("search", 10), ("audit", 30)] {
        let mine: Vec<_> = all.iter().filter(|s| s.0 == label).collect();
        let distinct: std::collections::HashSet<_> = mine.iter().map(|s| &s.2).collect();
        assert_eq!(
            (mine.len(), distinct.len()),
            (expected, expected),
            "{label}"
        );
        for s in mine {
            assert_eq!(ids[&s.2], s.1, "the envelope's type is the published one");
            assert_eq!(s.3, 1, "first attempt");
        }
    }
    assert!(all
        .iter()
        .filter(|s| s.0 == "search")
        .all(|s| s.1 == "ticket.created"));
    for s in subscribers {
        s.shutdown().await;
    }
}

#[tokio::test]
async fn an_unroutable_event_is_counted_or_refused_as_asked() {
    let conn = connect().await;
    let publisher = Publisher::new(&conn);
    let event = TicketCreated {
        id: 1,
        title: "nobody listens".into(),
    };
    publisher
        .publish(&event)
        .await
        .expect("not an error by default");
    publisher.publish(&event).await.unwrap();
    assert_eq!(publisher.unroutable_count(), 2);

    let strict = Publisher::new(&conn).unroutable(Unroutable::Error);
    let err = strict.publish(&event).await.unwrap_err();
    assert!(
        matches!(&err, Error::Unroutable { event_type, .. } if event_type == "ticket.created"),
        "{err:?}"
    );
}

#[tokio::test]
async fn failures_are_retried_then_dead_lettered_with_their_history_and_replayed() {
    let conn = connect().await;
    let seen = Seen::default();
    let service = support::unique("billing");
    let healed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s, h) = (seen.clone(), healed.clone());
    let handler = service_fn(move |d: Delivery<TicketCreated>| {
        s.push("billing", &d);
        let ok = match d.payload.title.as_str() {
            "flaky" => d.attempt >= 3,
            _ => h.load(std::sync::atomic::Ordering::SeqCst),
        };
        async move {
            if ok {
                Ok(())
            } else {
                Err(Error::InvalidRequest("the ledger is locked".into()))
            }
        }
    });
    let sub = Subscription::new(&service)
        .on(handler)
        .retry(RetryPolicy::delays(
            [0, 100, 200].map(Duration::from_millis),
        ))
        .start(&conn)
        .await
        .unwrap();
    let publisher = Publisher::new(&conn);
    let flaky = publisher
        .publish(&TicketCreated {
            id: 1,
            title: "flaky".into(),
        })
        .await
        .unwrap();
    let doomed = publisher
        .publish(&TicketCreated {
            id: 2,
            title: "doomed".into(),
        })
        .await
        .unwrap();
    let dlq = DeadLetters::new(&conn, &service);
    seen.until("the flaky event succeeds on its third try", |s| {
        s.iter().filter(|e| e.2 == flaky).count() == 3
    })
    .await;
    let start = Instant::now();
    while dlq.count().await.unwrap() < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nothing dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let attempts = |id: &str| -> Vec<u32> {
        seen.all()
            .iter()
            .filter(|e| e.2 == id)
            .map(|e| e.3)
            .collect()
    };
    assert_eq!(attempts(&flaky), [1, 2, 3]);
    assert_eq!(attempts(&doomed), [1, 2, 3, 4], "one try and three retries");

    let letters = dlq.peek(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.event_id.as_deref(), Some(doomed.as_str()));
    assert_eq!(letter.event_type.as_deref(), Some("ticket.created"));
    assert_eq!(letter.attempts, 4);
    assert_eq!(letter.routing_key.as_deref(), Some("ticket.created"));
    let reason = letter.reason.as_deref().unwrap();
    assert!(reason.contains("the ledger is locked"), "{reason}");
    let (first, last) = (
        letter.first_failure.clone().unwrap(),
        letter.last_failure.clone().unwrap(),
    );
    assert!(first < last, "{first} {last}");
    assert_eq!(dlq.count().await.unwrap(), 1, "peeking leaves it there");

    healed.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(dlq.replay(10).await.unwrap(), 1);
    seen.until("the replayed event is handled", |s| {
        s.iter().filter(|e| e.2 == doomed).count() == 5
    })
    .await;
    assert_eq!(attempts(&doomed).last(), Some(&1), "a replay starts afresh");
    assert_eq!(dlq.count().await.unwrap(), 0);
    assert_eq!(dlq.purge().await.unwrap(), 0);
    sub.shutdown().await;
}

#[tokio::test]
async fn poison_unknown_versions_and_permanent_failures_go_to_the_dlq_at_once() {
    let conn = connect().await;
    let exchange = conn.config().events_exchange.clone();
    let seen = Seen::default();
    let service = support::unique("dunning");
    let s = seen.clone();
    let sub = Subscription::new(&service)
        .on(service_fn(move |d: Delivery<PaymentFailed>| {
            s.push("dunning", &d);
            let fail = d.payload.invoice == "bad";
            async move {
                if fail {
                    Err(permanent("invoice `bad` does not exist"))
                } else {
                    Ok(())
                }
            }
        }))
        // Version 1 had no reason.
        .upcast("payment.failed", 1, |mut v| {
            v["reason"] = "unknown".into();
            Ok(v)
        })
        .start(&conn)
        .await
        .unwrap();
    let publisher = Publisher::new(&conn);
    let old = publisher
        .publish_as("payment.failed", 1, &json!({"invoice": "F-1"}))
        .await
        .unwrap();
    publisher
        .publish_as(
            "payment.failed",
            3,
            &json!({"invoice": "F-2", "reason": "x", "more": 1}),
        )
        .await
        .unwrap();
    publisher
        .publish(&PaymentFailed {
            invoice: "bad".into(),
            reason: "card".into(),
        })
        .await
        .unwrap();
    let raw = Raw::open().await;
    raw.publish(
        &exchange,
        "payment.failed",
        BasicProperties::default().with_content_type("application/json".into()),
        b"{not json",
    )
    .await;
    raw.publish(
        &exchange,
        "payment.failed",
        BasicProperties::default().with_content_type("application/json".into()),
        br#"{"eventId":"e","version":2,"eventType":"payment.failed","timestamp":"2026-01-01T00:00:00Z","payload":{"invoice":7}}"#,
    )
    .await;
    let dlq = DeadLetters::new(&conn, &service);
    let start = Instant::now();
    while dlq.count().await.unwrap() < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not all dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen.until("the upcast v1 event is handled", |s| {
        s.iter().any(|e| e.2 == old)
    })
    .await;
    let upcast = seen.all();
    assert_eq!(upcast.iter().filter(|e| e.2 == old).count(), 1);
    let mut reasons: Vec<(u32, String)> = dlq
        .peek(10)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.attempts, l.reason.unwrap_or_default()))
        .collect();
    reasons.sort();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(reasons.iter().all(|r| r.0 == 1), "no retries: {reasons:?}");
    let has = |needle: &str| reasons.iter().any(|r| r.1.contains(needle));
    assert!(
        has("version 3 of `payment.failed` is not accepted"),
        "{reasons:?}"
    );
    assert!(has("not an event envelope"), "{reasons:?}");
    assert!(has("the payload does not decode"), "{reasons:?}");
    assert!(
        has("failed permanently: invoice `bad` does not exist"),
        "{reasons:?}"
    );
    assert_eq!(dlq.purge().await.unwrap(), 4);
    sub.shutdown().await;
}

/// Publishes the same envelope (same eventId) twice, raw, then a marker.
async fn duplicates(exchange: &str) {
    let raw = Raw::open().await;
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id("dup-1".into());
    let body = json!({"eventId": "dup-1", "version": 1, "eventType": "ticket.created",
        "timestamp": "2026-01-01T00:00:00Z", "payload": {"id": 1, "title": "twice"}});
    for _ in 0..2 {
        raw.publish(
            exchange,
            "ticket.created",
            props.clone(),
            body.to_string().as_bytes(),
        )
        .await;
    }
    let marker = json!({"eventId": "marker", "version": 1, "eventType": "ticket.created",
        "timestamp": "2026-01-01T00:00:00Z", "payload": {"id": 2, "title": "marker"}});
    raw.publish(
        exchange,
        "ticket.created",
        props,
        marker.to_string().as_bytes(),
    )
    .await;
}

#[tokio::test]
async fn an_inbox_runs_a_duplicate_once() {
    for idempotent in [false, true] {
        let conn = connect().await;
        let seen = Seen::default();
        let s = seen.clone();
        let mut sub = Subscription::new(support::unique("ledger"))
            .on(service_fn(move |d: Delivery<TicketCreated>| {
                s.push("ledger", &d);
                async { Ok::<_, Error>(()) }
            }))
            .prefetch(1)
            .concurrency(1);
        if idempotent {
            sub = sub.idempotent();
        }
        let sub = sub.start(&conn).await.unwrap();
        duplicates(&conn.config().events_exchange).await;
        seen.until("the marker", |s| s.iter().any(|e| e.2 == "marker"))
            .await;
        let runs = seen.all().iter().filter(|e| e.2 == "dup-1").count();
        assert_eq!(
            runs,
            if idempotent { 1 } else { 2 },
            "idempotent: {idempotent}"
        );
        sub.shutdown().await;
    }
}

#[tokio::test]
async fn foreign_envelopes_are_read_as_the_subscription_says() {
    let conn = connect().await;
    let exchange = conn.config().events_exchange.clone();
    let seen = Seen::default();
    let payloads = Arc::new(Mutex::new(Vec::new()));
    let mut subs = Vec::new();
    for (label, format) in [("flat", Format::TypeAndData), ("bare", Format::Bare)] {
        let (s, p, l) = (seen.clone(), payloads.clone(), label.to_owned());
        subs.push(
            Subscription::new(support::unique(label))
                .format(format)
                .on_pattern(
                    if label == "flat" {
                        "user.#"
                    } else {
                        "course.*"
                    },
                    service_fn(move |d: Delivery<Value>| {
                        s.push(&l, &d);
                        p.lock().unwrap().push((l.clone(), d.payload));
                        async { Ok::<_, Error>(()) }
                    }),
                )
                .start(&conn)
                .await
                .unwrap(),
        );
    }
    let raw = Raw::open().await;
    let json = BasicProperties::default().with_content_type("application/json".into());
    raw.publish(
        &exchange,
        "user.registered",
        json.clone().with_message_id("m-7".into()),
        br#"{"event_type":"user.registered","timestamp":"2024-01-15T10:30:00","data":{"user_id":123}}"#,
    )
    .await;
    raw.publish(&exchange, "course.enrolled", json, br#"{"course_id":9}"#)
        .await;
    seen.until("both handled", |s| s.len() == 2).await;
    let all = seen.all();
    let flat = all.iter().find(|e| e.0 == "flat").unwrap();
    assert_eq!(
        (flat.1.as_str(), flat.2.as_str()),
        ("user.registered", "m-7")
    );
    let bare = all.iter().find(|e| e.0 == "bare").unwrap();
    assert_eq!(bare.1, "course.enrolled");
    let payloads = payloads.lock().unwrap().clone();
    assert!(payloads.contains(&("flat".into(), json!({"user_id": 123}))));
    assert!(payloads.contains(&("bare".into(), json!({"course_id": 9}))));
    for s in subs {
        s.shutdown().await;
    }
}

/// The default ladder: at once, then 1 s, 2 s, 4 s, 8 s (about 15 s).
#[tokio::test]
async fn the_default_retry_ladder_waits_in_the_broker() {
    let conn = connect().await;
    let times = Arc::new(Mutex::new(Vec::new()));
    let t = times.clone();
    let service = support::unique("ladder");
    let sub = Subscription::new(&service)
        .on(service_fn(move |_: Delivery<TicketCreated>| {
            t.lock().unwrap().push(Instant::now());
            async { Err::<(), _>(Error::InvalidRequest("always".into())) }
        }))
        .start(&conn)
        .await
        .unwrap();
    Publisher::new(&conn)
        .publish(&TicketCreated {
            id: 1,
            title: "ladder".into(),
        })
        .await
        .unwrap();
    let dlq = DeadLetters::new(&conn, &service);
    let start = Instant::now();
    while dlq.count().await.unwrap() < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let times = times.lock().unwrap().clone();
    assert_eq!(times.len(), 6, "one try and five retries");
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    for (gap, want) in gaps.iter().zip([0.0, 1.0, 2.0, 4.0, 8.0]) {
        assert!(
            *gap >= want * 0.9 && *gap <= want + 2.0,
            "gaps {gaps:?}: expected about 0, 1, 2, 4, 8 s"
        );
    }
    sub.shutdown().await;
}
