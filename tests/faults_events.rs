//! Events through faults: the broker killed (SIGKILL) and restarted while
//! events wait in delay queues and in `<service>.q`; a consumer process
//! killed in the middle of a handler; the connection lost between a
//! publish and its confirm. Nothing is lost, and nobody restarts the
//! subscription or the publisher.
//!
//! The broker-restart test runs its own broker node (on a free port of its
//! own), so the shared test broker is never disturbed. The killed consumer
//! is this test binary run again as a child process, running only the
//! ignored test `child_consumer`.
mod support;

use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use support::broker::PrivateBroker;
use support::proxy::Proxy;
use tower::service_fn;
use warren::events::{Delivery, Publisher, RetryPolicy, Subscription};
use warren::Error;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, warren::Event)]
#[event(name = "job.queued", version = 1)]
struct JobQueued {
    n: u32,
    /// Fails its first attempt, to wait in a delay queue.
    fail_once: bool,
}

/// What the handlers saw: each eventId with the attempts that succeeded
/// or failed.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Attempts>>);

/// Each event's `n` with its attempts: (attempt, succeeded).
type Attempts = HashMap<u32, Vec<(u32, bool)>>;

impl Seen {
    fn record(&self, n: u32, attempt: u32, ok: bool) {
        self.0
            .lock()
            .unwrap()
            .entry(n)
            .or_default()
            .push((attempt, ok));
    }

    /// The events handled successfully.
    fn done(&self) -> BTreeSet<u32> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|(_, attempts)| attempts.iter().any(|(_, ok)| *ok))
            .map(|(n, _)| *n)
            .collect()
    }

    fn failed(&self) -> usize {
        let seen = self.0.lock().unwrap();
        seen.values().flatten().filter(|(_, ok)| !ok).count()
    }

    async fn until(&self, what: &str, within: Duration, done: impl Fn(&Self) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < within,
                "{what}: still waiting; seen {:?}",
                self.0.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// How many messages wait in `queue` on the broker at `url`.
async fn depth(url: &str, queue: &str) -> u32 {
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .expect("a raw connection");
    let channel = conn.create_channel().await.unwrap();
    let q = channel
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("the queue exists");
    let _ = conn.close(200, "done".into()).await;
    q.message_count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_waiting_in_delay_queues_and_the_service_queue_survive_a_broker_restart() {
    let broker = PrivateBroker::new();
    broker.start().await;
    let cfg = support::recovering_config(&broker.url())
        .heartbeat(Duration::from_secs(2))
        .events_exchange(support::unique("events"));
    let conn = support::connect(cfg).await;
    let service = support::unique("jobs");
    let seen = Seen::default();
    let handler = {
        let seen = seen.clone();
        service_fn(move |d: Delivery<JobQueued>| {
            let seen = seen.clone();
            async move {
                if d.payload.fail_once && d.attempt == 1 {
                    seen.record(d.payload.n, d.attempt, false);
                    return Err(Error::InvalidRequest("not yet".into()));
                }
                // Slow enough that most events still wait in the queue
                // when the broker dies.
                tokio::time::sleep(Duration::from_millis(100)).await;
                seen.record(d.payload.n, d.attempt, true);
                Ok(())
            }
        })
    };
    // One at a time, and the first retry waits 2 s in a delay queue.
    let sub = Subscription::new(&service)
        .prefetch(1)
        .concurrency(1)
        .retry(RetryPolicy::delays([Duration::from_secs(2)]))
        .on(handler)
        .start(&conn)
        .await
        .unwrap();
    let publisher = Publisher::new(&conn);
    let (failing, queued) = (5, 30);
    for n in 0..failing + queued {
        publisher
            .publish(&JobQueued {
                n,
                fail_once: n < failing,
            })
            .await
            .unwrap();
    }
    // The failing ones come first: once they all failed, they wait in the
    // delay queue, and the others in the service queue.
    seen.until("the first attempts", Duration::from_secs(20), |s| {
        s.failed() == failing as usize
    })
    .await;
    let delay_queue = format!("{service}.retry.2s");
    let start = Instant::now();
    while depth(&broker.url(), &delay_queue).await < failing {
        assert!(start.elapsed() < Duration::from_secs(5), "not delayed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waiting = depth(&broker.url(), &format!("{service}.q")).await;
    assert!(waiting > 10, "only {waiting} events wait in the queue");
    println!(
        "killing the broker: {failing} events in {delay_queue}, {waiting} in {service}.q, {} handled",
        seen.done().len()
    );

    let killed = SystemTime::now();
    broker.kill().await;
    let (_, booted) = broker.restart().await;
    let broker = booted.await.unwrap();
    support::state::reconnected(&conn, killed, Duration::from_secs(60)).await;

    let all: BTreeSet<u32> = (0..failing + queued).collect();
    seen.until("every event handled", Duration::from_secs(60), |s| {
        s.done() == all
    })
    .await;
    // The delayed ones were retried, after the restart, from the delay
    // queue.
    for n in 0..failing {
        let seen = seen.0.lock().unwrap();
        assert!(
            seen[&n].iter().any(|(attempt, ok)| *ok && *attempt >= 2),
            "event {n}: {:?}",
            seen[&n]
        );
    }
    sub.shutdown().await;
    drop(broker);
}

/// The child process of
/// [`a_consumer_killed_in_the_middle_of_a_handler_gets_its_event_redelivered`]:
/// subscribes as `FAULTS_EVENTS_SERVICE`, prints `handling <n>` when its
/// handler starts, and never finishes it.
#[tokio::test]
#[ignore = "run as a child process by another test"]
async fn child_consumer() {
    let Ok(service) = std::env::var("FAULTS_EVENTS_SERVICE") else {
        return;
    };
    let exchange = std::env::var("FAULTS_EVENTS_EXCHANGE").unwrap();
    let conn = support::connect(support::config().events_exchange(exchange)).await;
    let _sub = Subscription::new(service)
        .on(service_fn(|d: Delivery<JobQueued>| async move {
            println!("handling {}", d.payload.n);
            std::future::pending::<()>().await;
            Ok::<_, Error>(())
        }))
        .start(&conn)
        .await
        .unwrap();
    println!("subscribed");
    std::future::pending::<()>().await;
}

/// The next line of the child that starts with `what`.
async fn next_line(
    from_child: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    what: &str,
) -> String {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), from_child.recv())
            .await
            .unwrap_or_else(|_| panic!("the child did not say `{what}`"))
            .unwrap_or_else(|| panic!("the child ended before `{what}`"));
        if line.starts_with(what) {
            return line;
        }
    }
}

#[tokio::test]
async fn a_consumer_killed_in_the_middle_of_a_handler_gets_its_event_redelivered() {
    let exchange = support::unique("events");
    let service = support::unique("jobs");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_consumer", "--nocapture"])
        .env("FAULTS_EVENTS_SERVICE", &service)
        .env("FAULTS_EVENTS_EXCHANGE", &exchange)
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("run the child consumer");
    let (lines, mut from_child) = tokio::sync::mpsc::unbounded_channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    next_line(&mut from_child, "subscribed").await;

    let conn = support::connect(support::config().events_exchange(&exchange)).await;
    Publisher::new(&conn)
        .publish(&JobQueued {
            n: 7,
            fail_once: false,
        })
        .await
        .unwrap();
    let line = next_line(&mut from_child, "handling").await;
    assert_eq!(line, "handling 7");
    // SIGKILL, in the middle of the handler: no ack, no clean close.
    child.kill().unwrap();
    child.wait().unwrap();

    let seen = Seen::default();
    let sub = Subscription::new(&service)
        .on(service_fn({
            let seen = seen.clone();
            move |d: Delivery<JobQueued>| {
                seen.record(d.payload.n, d.attempt, true);
                async { Ok::<_, Error>(()) }
            }
        }))
        .start(&conn)
        .await
        .unwrap();
    seen.until("the redelivery", Duration::from_secs(30), |s| {
        s.done().contains(&7)
    })
    .await;
    sub.shutdown().await;
}

/// Publishes event `n` in a task of its own.
fn spawn_publish(publisher: &Publisher, n: u32) -> tokio::task::JoinHandle<Result<String, Error>> {
    let publisher = publisher.clone();
    tokio::spawn(async move {
        publisher
            .publish(&JobQueued {
                n,
                fail_once: false,
            })
            .await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_whose_confirm_is_lost_is_published_again_with_the_same_event_id() {
    let exchange = support::unique("events");
    let service = support::unique("jobs");
    let direct = support::connect(support::config().events_exchange(&exchange)).await;
    let handled = Arc::new(Mutex::new(Vec::<String>::new()));
    let sub = Subscription::new(&service)
        .idempotent()
        .on(service_fn({
            let handled = handled.clone();
            move |d: Delivery<JobQueued>| {
                handled.lock().unwrap().push(d.meta.id);
                async { Ok::<_, Error>(()) }
            }
        }))
        .start(&direct)
        .await
        .unwrap();

    let proxy = Proxy::to_url(&support::url()).await;
    let cfg = support::recovering_config(&proxy.url_for(&support::url()))
        .events_exchange(&exchange)
        .default_timeout(Duration::from_secs(20));
    let through = support::connect(cfg).await;
    let publisher = Publisher::new(&through);
    publisher
        .publish(&JobQueued {
            n: 0,
            fail_once: false,
        })
        .await
        .unwrap();

    // Lost on the way to the broker: a stall, then a cut, before the
    // publish reaches it.
    proxy.stall();
    let cut = SystemTime::now();
    let publishing = spawn_publish(&publisher, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!publishing.is_finished(), "confirmed through a stall");
    proxy.cut();
    proxy.resume();
    let first = publishing.await.unwrap().expect("published again");
    support::state::reconnected(&through, cut, Duration::from_secs(10)).await;

    // Lost on the way back: the broker has the event, its confirm is late
    // and cut.
    proxy.latency(Duration::from_millis(400));
    let cut = SystemTime::now();
    let publishing = spawn_publish(&publisher, 2);
    tokio::time::sleep(Duration::from_millis(600)).await;
    proxy.latency(Duration::ZERO);
    proxy.cut();
    let second = publishing.await.unwrap().expect("published again");
    support::state::reconnected(&through, cut, Duration::from_secs(10)).await;

    // Each eventId is handled exactly once (the inbox drops a second copy).
    let start = Instant::now();
    loop {
        let handled = handled.lock().unwrap().clone();
        if handled.contains(&first) && handled.contains(&second) {
            assert_eq!(handled.len(), 3, "{handled:?}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not handled: {handled:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handled.lock().unwrap().len(), 3);
    sub.shutdown().await;
}
