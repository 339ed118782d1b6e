//! Bodies over `Config::max_body` are refused without being buffered: a
//! node sent many oversized requests at once answers each with
//! `payload_too_large` while its memory stays near where it was, and a
//! caller sent an oversized reply gets `Error::BodyTooLarge` and goes on;
//! an oversized event is dead-lettered and the subscription goes on.
mod support;

use bytes::Bytes;
use lapin::BasicProperties;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::handler::{echo, Hits};
use support::raw::Raw;
use tower::service_fn;
use warren::events::{DeadLetters, Delivery, Publisher, Subscription, Tail};
use warren::{Address, Client, Code, ContentType, Error, Node, Request, Response};

const MIB: usize = 1024 * 1024;
/// The child node's limit.
const NODE_MAX_BODY: usize = MIB;
/// Oversized requests sent at once, and the size of each.
const REQUESTS: usize = 20;
const REQUEST_SIZE: usize = 64 * MIB;
/// How far the node's peak resident memory may rise above where it was
/// before the requests (see SECURITY.md): its bodies in flight are at most
/// `prefetch × max_body` (64 × 1 MiB here) and oversized ones cost nothing,
/// but none of these requests is within the limit, so the rise is lapin's
/// read buffers and the replies; one request buffered whole would be 64 MiB.
const ALLOWED_RISE: u64 = 32 * MIB as u64;

/// A kibibyte figure of /proc/<pid>/status, in bytes.
fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line
        .trim_start_matches(field)
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

/// The node the memory test measures, run by it as a child process: an
/// echo node of `BODY_LIMIT_SERVICE` with `WARREN_MAX_BODY` 1 MiB. It
/// says `serving` and runs until its stdin closes.
#[tokio::test]
#[ignore = "run by oversized_requests_are_refused_in_bounded_memory"]
async fn child_node() {
    let service = std::env::var("BODY_LIMIT_SERVICE").unwrap();
    let exchange = std::env::var("BODY_LIMIT_EXCHANGE").unwrap();
    let config = warren::Config::from_env().unwrap().exchange(exchange);
    assert_eq!(config.max_body, NODE_MAX_BODY);
    let conn = support::connect(config).await;
    let service = warren::ServiceType::new(service).unwrap();
    let _node = Node::builder(service)
        .serve(&conn, echo(&Hits::default()))
        .await
        .unwrap();
    println!("serving");
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).unwrap_or(0) > 0 {}
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn oversized_requests_are_refused_in_bounded_memory() {
    let service = support::unique("bodies");
    let exchange = support::unique("bodies-ex");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_node", "--nocapture"])
        .env("BODY_LIMIT_SERVICE", &service)
        .env("BODY_LIMIT_EXCHANGE", &exchange)
        .env("WARREN_AMQP_URL", support::url())
        .env("WARREN_MAX_BODY", NODE_MAX_BODY.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the child node");
    let pid = child.id();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (serving, started) = std::sync::mpsc::channel();
    // Reads the child's output to its end (it reports its test result).
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if line == "serving" {
                let _ = serving.send(());
            }
        }
    });
    started
        .recv_timeout(Duration::from_secs(60))
        .expect("the child node starts");
    // The libtest harness runs the test on its own thread: the node's
    // figure is the child process's, whole.
    let before = proc_status(pid, "VmRSS");

    // The caller's own limit is above the requests: only the node refuses.
    let conn = support::connect(
        support::config()
            .exchange(&exchange)
            .max_body(2 * REQUEST_SIZE)
            .default_timeout(Duration::from_secs(60)),
    )
    .await;
    let client = Client::new(&conn);
    let address = Address::any(&service).unwrap();
    let body = Bytes::from(vec![b'x'; REQUEST_SIZE]);
    let calls = (0..REQUESTS).map(|_| {
        let request = Request::new(address.clone(), "Echo.say", ContentType::Json, body.clone());
        client.call(request.unwrap())
    });
    for reply in futures::future::join_all(calls).await {
        match reply {
            Err(Error::Remote(status)) => {
                assert_eq!(status.code(), &Code::PayloadTooLarge, "{status}");
                assert!(
                    status.message().contains(&REQUEST_SIZE.to_string()),
                    "the refusal names the size: {status}"
                );
            }
            Err(e) => panic!("expected payload_too_large, got {e}"),
            Ok(r) => panic!(
                "expected payload_too_large, got a reply of {} bytes",
                r.body.len()
            ),
        }
    }
    let peak = proc_status(pid, "VmHWM");
    // The node still serves.
    let ok = client
        .call(support::request(
            address,
            "Echo.upper",
            ContentType::Json,
            "fine",
        ))
        .await
        .unwrap();
    assert_eq!(ok.decode::<String>().unwrap(), "FINE");
    drop(child.stdin.take());
    child.wait().unwrap();
    println!(
        "node RSS before {} MiB, peak {} MiB, after {REQUESTS} requests of {} MiB",
        before / MIB as u64,
        peak / MIB as u64,
        REQUEST_SIZE / MIB
    );
    assert!(
        peak < before + ALLOWED_RISE,
        "the node's peak RSS rose from {before} to {peak} bytes"
    );
}

#[tokio::test]
async fn an_oversized_reply_gives_the_typed_error_and_the_client_goes_on() {
    let config = support::config();
    let exchange = config.exchange.clone();
    // The node may send 8 MiB; the caller takes 1 MiB.
    let node_conn = support::connect(config.max_body(8 * MIB)).await;
    let service = support::service_type("big-replies");
    let _node = Node::builder(service.clone())
        .serve(
            &node_conn,
            service_fn(|req: Request| async move {
                let size: usize = req.decode()?;
                Ok::<_, Error>(Response::ok(req.content_type, vec![b'y'; size]))
            }),
        )
        .await
        .unwrap();
    let conn = support::connect(support::config().exchange(&exchange).max_body(MIB)).await;
    let client = Client::new(&conn);
    let address = Address::Any(service);
    let call = |size: usize| {
        client.call(support::request(
            address.clone(),
            "Big.make",
            ContentType::Json,
            &size,
        ))
    };
    for _ in 0..3 {
        match call(3 * MIB).await {
            Err(Error::BodyTooLarge { size, limit }) => {
                assert_eq!((size, limit), (3 * MIB, MIB));
            }
            Err(e) => panic!("expected BodyTooLarge, got {e}"),
            Ok(r) => panic!(
                "expected BodyTooLarge, got a reply of {} bytes",
                r.body.len()
            ),
        }
        // The same client, on the same connection, goes on.
        let small = call(1000).await.unwrap();
        assert_eq!(small.body.len(), 1000);
    }
    // A reply of exactly the limit passes.
    assert_eq!(call(MIB).await.unwrap().body.len(), MIB);
}

#[derive(Debug, Clone, Serialize, Deserialize, warren::Event)]
#[event(name = "upload.stored")]
struct Stored {
    name: String,
}

/// A connection with a 1 KiB body limit, and an events exchange of its own.
async fn events_connection() -> (warren::Connection, String) {
    let config = support::config()
        .events_exchange(support::unique("events"))
        .max_body(1024);
    let exchange = config.events_exchange.clone();
    (support::connect(config).await, exchange)
}

/// Publishes a 100,000-byte `upload.stored` event on `exchange`, then a
/// normal one named `name`. The first is published raw: warren's publisher
/// keeps to its own limit.
async fn oversized_then(conn: &warren::Connection, exchange: &str, name: &str) {
    let raw = Raw::open().await;
    let json = BasicProperties::default().with_content_type("application/json".into());
    raw.publish(exchange, "upload.stored", json, &vec![b' '; 100_000])
        .await;
    Publisher::new(conn)
        .publish(&Stored { name: name.into() })
        .await
        .unwrap();
}

#[tokio::test]
async fn an_oversized_event_is_dead_lettered_and_the_subscription_goes_on() {
    let (conn, exchange) = events_connection().await;
    let service = support::unique("uploads");
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let sub = Subscription::new(&service)
        .on(service_fn(move |_: Delivery<Stored>| {
            h.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Error>(()) }
        }))
        .start(&conn)
        .await
        .unwrap();
    oversized_then(&conn, &exchange, "a").await;
    let dlq = DeadLetters::new(&conn, &service);
    let start = std::time::Instant::now();
    while dlq.count().await.unwrap() < 1 || handled.load(Ordering::SeqCst) < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let letters = dlq.peek(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    let reason = letters[0].reason.clone().unwrap_or_default();
    assert!(reason.contains("100000 bytes"), "{reason}");
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    assert_eq!(dlq.purge().await.unwrap(), 1);
    sub.shutdown().await;
}

#[tokio::test]
async fn a_tail_lists_an_oversized_event_without_its_body_and_goes_on() {
    let (conn, exchange) = events_connection().await;
    let mut tail = Tail::start(&conn, ["upload.*"]).await.unwrap();
    oversized_then(&conn, &exchange, "b").await;
    let big = tokio::time::timeout(Duration::from_secs(10), tail.next())
        .await
        .expect("the oversized event")
        .expect("a live tail");
    assert_eq!(big.dropped, Some(100_000));
    assert!(big.body.is_empty());
    assert_eq!(big.routing_key, "upload.stored");
    let small = tokio::time::timeout(Duration::from_secs(10), tail.next())
        .await
        .expect("the next event")
        .expect("a live tail");
    assert_eq!(small.dropped, None);
    let envelope = small.json().expect("a JSON envelope");
    assert_eq!(envelope["payload"]["name"], "b", "{envelope}");
    tail.close().await;
}
