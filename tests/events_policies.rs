//! Queue policies of a subscription against a real broker: a length limit
//! that drops the oldest events or refuses new ones (a typed error for the
//! publisher), a message TTL, quorum queues for the service, delay and
//! dead-letter queues, and a queue declared before with other arguments.
mod support;

use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::raw::Raw;
use tower::service_fn;
use warren::events::{
    permanent, DeadLetters, Delivery, Overflow, Publisher, QueueType, RetryPolicy, Subscription,
};
use warren::{Connection, Error};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, warren::Event)]
#[event(name = "meter.read", version = 1)]
struct MeterRead {
    n: u32,
}

/// A connection whose events exchange is the test's own.
async fn connect() -> Connection {
    support::connect(support::config().events_exchange(support::unique("policies"))).await
}

/// The `n`s and attempts the handler saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(u32, u32)>>>);

impl Seen {
    fn all(&self) -> Vec<(u32, u32)> {
        self.0.lock().unwrap().clone()
    }

    /// Waits (up to 30 s) until the handler saw `count` events.
    async fn until(&self, count: usize) -> Vec<(u32, u32)> {
        let start = Instant::now();
        while self.all().len() < count {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "still waiting for {count} events; seen {:?}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.all()
    }
}

/// A subscription of `service` recording what it handles.
fn subscription(service: &str, seen: &Seen) -> Subscription {
    let seen = seen.clone();
    Subscription::new(service).on(service_fn(move |d: Delivery<MeterRead>| {
        seen.0.lock().unwrap().push((d.payload.n, d.attempt));
        async { Ok::<_, Error>(()) }
    }))
}

/// Declares the subscription's queues, then stops consuming, so that
/// events wait in `<service>.q`.
async fn declared(conn: &Connection, s: Subscription) {
    s.start(conn)
        .await
        .expect("the subscription starts")
        .shutdown()
        .await;
}

async fn publish_all(publisher: &Publisher, ns: impl IntoIterator<Item = u32>) {
    for n in ns {
        publisher.publish(&MeterRead { n }).await.unwrap();
    }
}

#[tokio::test]
async fn a_full_queue_with_drop_head_keeps_the_newest_events() {
    let conn = connect().await;
    let service = support::unique("meters");
    let seen = Seen::default();
    let policy = |s: Subscription| s.max_length(3).overflow(Overflow::DropHead);
    declared(&conn, policy(subscription(&service, &seen))).await;

    publish_all(&Publisher::new(&conn), 1..=10).await;
    let raw = Raw::open().await;
    assert_eq!(raw.depth(&format!("{service}.q")).await, 3);

    let sub = policy(subscription(&service, &seen))
        .start(&conn)
        .await
        .unwrap();
    let mut got: Vec<u32> = seen.until(3).await.into_iter().map(|(n, _)| n).collect();
    got.sort_unstable();
    assert_eq!(got, [8, 9, 10], "the newest three are kept");
    sub.shutdown().await;
}

#[tokio::test]
async fn a_full_queue_with_reject_publish_fails_the_publish_with_a_typed_error() {
    let conn = connect().await;
    let service = support::unique("meters");
    let seen = Seen::default();
    let policy = |s: Subscription| s.max_length(2).overflow(Overflow::RejectPublish);
    declared(&conn, policy(subscription(&service, &seen))).await;

    let publisher = Publisher::new(&conn);
    publish_all(&publisher, 1..=2).await;
    let err = publisher.publish(&MeterRead { n: 3 }).await.unwrap_err();
    assert!(
        matches!(&err, Error::Rejected { event_type, .. } if event_type == "meter.read"),
        "{err:?}"
    );
    // The publisher goes on working: once the queue drains, it takes more.
    let sub = policy(subscription(&service, &seen))
        .start(&conn)
        .await
        .unwrap();
    seen.until(2).await;
    publisher.publish(&MeterRead { n: 4 }).await.unwrap();
    let mut got: Vec<u32> = seen.until(3).await.into_iter().map(|(n, _)| n).collect();
    got.sort_unstable();
    assert_eq!(got, [1, 2, 4], "the refused event was never stored");
    sub.shutdown().await;
}

#[tokio::test]
async fn events_expire_after_the_message_ttl() {
    let conn = connect().await;
    let service = support::unique("meters");
    let seen = Seen::default();
    let policy = |s: Subscription| s.message_ttl(Duration::from_millis(200));
    declared(&conn, policy(subscription(&service, &seen))).await;

    publish_all(&Publisher::new(&conn), 1..=3).await;
    let raw = Raw::open().await;
    let queue = format!("{service}.q");
    let start = Instant::now();
    while raw.depth(&queue).await > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the events did not expire"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let sub = policy(subscription(&service, &seen))
        .start(&conn)
        .await
        .unwrap();
    publish_all(&Publisher::new(&conn), [4]).await;
    assert_eq!(seen.until(1).await, [(4, 1)]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.all(), [(4, 1)], "the expired events never come");
    sub.shutdown().await;
}

#[tokio::test]
async fn quorum_queues_carry_retries_and_dead_letters() {
    let conn = connect().await;
    let service = support::unique("meters");
    let seen = Seen::default();
    let failed = Arc::new(Mutex::new(false));
    let handler = {
        let (seen, failed) = (seen.clone(), failed.clone());
        service_fn(move |d: Delivery<MeterRead>| {
            seen.0.lock().unwrap().push((d.payload.n, d.attempt));
            let first = d.payload.n == 1 && !std::mem::replace(&mut *failed.lock().unwrap(), true);
            async move {
                match d.payload.n {
                    // Fails once: retried through the quorum delay queue.
                    1 if first => Err(Error::InvalidRequest("not yet".into()).into()),
                    // Fails for good: to the quorum dead-letter queue.
                    2 => Err(permanent("never")),
                    _ => Ok::<_, tower::BoxError>(()),
                }
            }
        })
    };
    let sub = Subscription::new(&service)
        .queue_type(QueueType::Quorum)
        .retry(RetryPolicy::delays([Duration::from_millis(300)]))
        .on(handler)
        .start(&conn)
        .await
        .unwrap();
    publish_all(&Publisher::new(&conn), 1..=2).await;
    let mut got = seen.until(3).await;
    got.sort_unstable();
    assert_eq!(got, [(1, 1), (1, 2), (2, 1)]);
    let dead = DeadLetters::new(&conn, &service);
    let start = Instant::now();
    while dead.count().await.unwrap() < 1 {
        assert!(start.elapsed() < Duration::from_secs(10), "no dead letter");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sub.shutdown().await;

    // All three queues are quorum queues: a classic declaration of the
    // same service is refused, naming the type.
    for s in [
        subscription(&service, &seen),
        subscription(&service, &seen).queue_type(QueueType::Classic),
    ] {
        let err = s
            .retry(RetryPolicy::delays([Duration::from_millis(300)]))
            .start(&conn)
            .await
            .unwrap_err();
        let Error::TopologyMismatch { existing, .. } = &err else {
            panic!("not TopologyMismatch: {err}");
        };
        assert_eq!(
            existing.get("x-queue-type"),
            Some(&Some("quorum".to_owned())),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_queue_declared_with_other_policies_is_a_typed_mismatch() {
    let conn = connect().await;
    let service = support::unique("meters");
    let seen = Seen::default();
    declared(&conn, subscription(&service, &seen).max_length(5)).await;

    let err = subscription(&service, &seen)
        .max_length(10)
        .overflow(Overflow::RejectPublish)
        .start(&conn)
        .await
        .unwrap_err();
    let Error::TopologyMismatch {
        entity,
        declared,
        existing,
        hint,
    } = &err
    else {
        panic!("not TopologyMismatch: {err}");
    };
    assert_eq!(entity, &format!("queue `{service}.q`"));
    assert_eq!(declared.get("x-max-length").map(String::as_str), Some("10"));
    assert_eq!(
        declared.get("x-overflow").map(String::as_str),
        Some("reject-publish")
    );
    assert_eq!(existing.get("x-max-length"), Some(&Some("5".to_owned())));
    assert!(hint.contains("max_length"), "{hint}");
    assert!(err.to_string().contains("x-max-length"), "{err}");

    // The connection is fine after the broker closed the refused channel:
    // the first policies still subscribe, and events flow.
    let sub = subscription(&service, &seen)
        .max_length(5)
        .start(&conn)
        .await
        .unwrap();
    publish_all(&Publisher::new(&conn), [1]).await;
    assert_eq!(seen.until(1).await, [(1, 1)]);
    sub.shutdown().await;
}
