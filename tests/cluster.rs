//! warren on a three-node RabbitMQ cluster (started by the test through
//! `scripts/cluster`), with quorum queues (`Config::queue_type`), under
//! load: calls in flight, confirmed one-way sends, events published and
//! consumed on a quorum `<service>.q`. Three nodes are killed (SIGKILL) in
//! turn, each restarted before the next: the node the caller is connected
//! to, the node hosting the leader of the events queue, and a node with
//! no clients. Each time, the calls in flight end within their deadline
//! with a reply or a typed error, calls succeed again (the recovery time is
//! printed), the event consumer resumes; at the end, every confirmed send
//! and every confirmed event has arrived. Then a network stall between a
//! caller and its node (the fault proxy) is detected by heartbeats and
//! survived the same way.
mod support;

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use support::cluster::Cluster;
use support::load::{check, Load};
use support::proxy::Proxy;
use support::sends::{all_received, Sends};
use support::service::Service;
use support::state::{lost, reconnected};
use tokio::sync::watch;
use tower::service_fn;
use warren::events::{Delivery, Publisher, QueueType, Subscription};
use warren::{Address, Backoff, Client, Config, Connection, Node, UrlOrder};

#[derive(Debug, Clone, Serialize, Deserialize, warren::Event)]
#[event(name = "tick.made", version = 1)]
struct Tick {
    n: u64,
}

/// The deadline of the load's calls.
const DEADLINE: Duration = Duration::from_secs(3);

/// A connection named `name` to the cluster, trying its nodes in `order`.
async fn connect(
    cluster: &Cluster,
    name: &str,
    order: [usize; 3],
    exchanges: &Config,
) -> Connection {
    connect_to(cluster.urls(order), name, exchanges).await
}

/// A connection named `name` trying `urls` in order.
async fn connect_to(urls: Vec<String>, name: &str, exchanges: &Config) -> Connection {
    let cfg = exchanges
        .clone()
        .urls(urls)
        .unwrap()
        .url_order(UrlOrder::InOrder)
        .connection_name(name)
        .heartbeat(Duration::from_secs(2))
        .backoff(
            Backoff::default()
                .initial(Duration::from_millis(50))
                .max(Duration::from_millis(500)),
        );
    support::connect(cfg).await
}

/// Events published in a loop, one at a time; the numbers confirmed.
struct Publishing {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<(BTreeSet<u64>, Vec<String>)>,
    confirmed: Arc<Mutex<BTreeSet<u64>>>,
}

impl Publishing {
    fn start(publisher: Publisher) -> Self {
        let (stop, stopped) = watch::channel(false);
        let confirmed = Arc::new(Mutex::new(BTreeSet::new()));
        let task = tokio::spawn({
            let confirmed = confirmed.clone();
            async move {
                let mut failed = Vec::new();
                let mut n = 0;
                while !*stopped.borrow() {
                    n += 1;
                    match publisher.publish(&Tick { n }).await {
                        Ok(_) => {
                            confirmed.lock().unwrap().insert(n);
                        }
                        Err(e) => failed.push(support::load::kind(&e)),
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (confirmed.lock().unwrap().clone(), failed)
            }
        });
        Self {
            stop,
            task,
            confirmed,
        }
    }

    /// The highest number confirmed so far.
    fn last(&self) -> u64 {
        self.confirmed.lock().unwrap().last().copied().unwrap_or(0)
    }

    async fn stop(self) -> (BTreeSet<u64>, Vec<String>) {
        self.stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("a publish hung past its deadline")
            .unwrap()
    }
}

/// Waits until event `n` was consumed; says when.
async fn consumed(seen: &Mutex<BTreeSet<u64>>, n: u64, within: Duration) -> Instant {
    let until = Instant::now() + within;
    while !seen.lock().unwrap().contains(&n) {
        assert!(
            Instant::now() < until,
            "event {n} not consumed within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Instant::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_sends_and_events_survive_the_loss_of_any_node() {
    let cluster = Cluster::start().await;
    let base = support::config()
        .events_exchange(support::unique("events"))
        .queue_type(QueueType::Quorum)
        .default_timeout(Duration::from_secs(10));
    // The caller (and the publisher) starts on node 1, the serving node
    // and the subscriber on node 2; each goes on to the next in its list.
    let calling = connect(&cluster, "caller", [1, 3, 2], &base).await;
    let serving = connect(&cluster, "server", [2, 3, 1], &base).await;

    let t = support::service_type("cluster");
    let service = Service {
        // Long enough that calls are in flight when a node dies.
        delay: Duration::from_millis(200),
        ..Service::default()
    };
    let received = service.received.clone();
    let node = Node::builder(t.clone())
        .serve(&serving, service)
        .await
        .unwrap();
    let events_service = support::unique("ticks");
    let events_queue = format!("{events_service}.q");
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let sub = Subscription::new(&events_service)
        .on(service_fn({
            let seen = seen.clone();
            move |d: Delivery<Tick>| {
                seen.lock().unwrap().insert(d.payload.n);
                async { Ok::<_, warren::Error>(()) }
            }
        }))
        .start(&serving)
        .await
        .unwrap();
    assert_eq!(cluster.queue_type(3, t.as_str()).await, "quorum");
    assert_eq!(cluster.queue_type(3, &events_queue).await, "quorum");
    let placed = cluster.clients(3).await;
    assert!(placed.contains(&("caller".to_owned(), 1)), "{placed:?}");
    assert!(placed.contains(&("server".to_owned(), 2)), "{placed:?}");

    let client = Client::new(&calling);
    let address = Address::Any(t.clone());
    let load = Load::start(&client, &address, 8, DEADLINE);
    let sends = Sends::start(&client, &address, 1, Duration::from_secs(30));
    let publishing = Publishing::start(Publisher::new(&calling));
    load.successes_after(Instant::now(), 20, Duration::from_secs(10))
        .await;
    consumed(&seen, publishing.last().max(1), Duration::from_secs(10)).await;

    let mut report = Vec::new();
    for phase in [
        "the caller's node",
        "the events queue leader's node",
        "a node with no clients",
    ] {
        let clients = cluster.clients(if report.is_empty() { 3 } else { 1 }).await;
        let on = |name: &str| {
            clients
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, node)| *node)
        };
        let victim = match phase {
            "the caller's node" => on("caller").expect("the caller is connected"),
            "the events queue leader's node" => {
                let via = (1..=3).find(|&n| Some(n) != on("caller")).unwrap();
                cluster.leader(via, &events_queue).await
            }
            _ => {
                // Preferably one that leads neither queue either.
                let free: Vec<usize> = (1..=3)
                    .filter(|n| clients.iter().all(|(_, node)| node != n))
                    .collect();
                let leaders = [
                    cluster.leader(1, t.as_str()).await,
                    cluster.leader(1, &events_queue).await,
                ];
                *free
                    .iter()
                    .find(|n| !leaders.contains(n))
                    .or(free.first())
                    .expect("a node without clients")
            }
        };
        let hit: Vec<&str> = clients
            .iter()
            .filter(|(_, node)| *node == victim)
            .map(|(name, _)| name.as_str())
            .collect();
        let in_flight = load.in_flight();
        let (killed, at) = (Instant::now(), SystemTime::now());
        cluster.kill(victim).await;
        // (Reconnecting may be done before `kill` returns.)
        if hit.contains(&"caller") {
            reconnected(&calling, at, Duration::from_secs(10)).await;
        }
        if hit.contains(&"server") {
            reconnected(&serving, at, Duration::from_secs(10)).await;
        }
        // The calls in flight end within their deadline, with a reply or a
        // typed error (`check`).
        let ended = load
            .ended(&in_flight, DEADLINE + Duration::from_secs(1))
            .await;
        let ended = check(&ended);
        let first_ok = load
            .successes_after(killed, 10, Duration::from_secs(20))
            .await;
        // The event consumer resumes: an event confirmed after the loss is consumed.
        let after = publishing.last();
        let until = Instant::now() + Duration::from_secs(20);
        while publishing.last() <= after {
            assert!(Instant::now() < until, "no event confirmed after the loss");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let event_ok = consumed(&seen, publishing.last(), Duration::from_secs(20)).await;
        let line = format!(
            "killed node {victim} ({phase}; clients on it: {hit:?}): calls in flight {ended:?}; \
             calls succeed again after {:?}, events consumed again after {:?}",
            first_ok.saturating_duration_since(killed),
            event_ok.saturating_duration_since(killed),
        );
        println!("{line}");
        report.push(line);
        let restarted = Instant::now();
        cluster.restart(victim).await;
        println!("node {victim} restarted in {:?}", restarted.elapsed());
    }

    // A network stall between a caller and its node: nothing is closed,
    // only the missed heartbeats (2 s) tell; the caller moves on to the
    // next URL (the stalled path still accepts, and would stall again).
    let proxy = Proxy::to_url(&cluster.url(2)).await;
    let staller = connect_to(
        vec![proxy.url(), cluster.url(3), cluster.url(1)],
        "staller",
        &base,
    )
    .await;
    let stalled_client = Client::new(&staller);
    let stalled_load = Load::start(&stalled_client, &address, 4, DEADLINE);
    stalled_load
        .successes_after(Instant::now(), 10, Duration::from_secs(10))
        .await;
    let in_flight = stalled_load.in_flight();
    let (stalled, at) = (Instant::now(), SystemTime::now());
    proxy.stall();
    let noticed = lost(&staller, Duration::from_secs(10)).await;
    reconnected(&staller, at, Duration::from_secs(10)).await;
    let ended = check(
        &stalled_load
            .ended(&in_flight, DEADLINE + Duration::from_secs(1))
            .await,
    );
    let first_ok = stalled_load
        .successes_after(stalled, 10, Duration::from_secs(20))
        .await;
    println!(
        "network stall: noticed after {:?} (heartbeat 2 s); calls in flight {ended:?}; calls \
         succeed again after {:?}",
        noticed - stalled,
        first_ok - stalled
    );
    check(&stalled_load.stop().await);
    proxy.resume();

    let outcomes = load.stop().await;
    let counts = check(&outcomes);
    let sent = sends.stop().await;
    let failed: Vec<_> = sent.iter().filter(|s| s.result.is_err()).collect();
    assert!(failed.is_empty(), "sends failed: {failed:?}");
    let confirmed_sends = all_received(&sent, &received, Duration::from_secs(20)).await;
    let (confirmed_events, failed_events) = publishing.stop().await;
    let last = *confirmed_events.last().unwrap();
    consumed(&seen, last, Duration::from_secs(20)).await;
    let missing: Vec<u64> = confirmed_events
        .iter()
        .filter(|n| !seen.lock().unwrap().contains(n))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} confirmed events never consumed: {missing:?}",
        missing.len(),
        confirmed_events.len()
    );
    println!(
        "all calls {counts:?}; {confirmed_sends} confirmed sends, all received; {} confirmed \
         events, all consumed ({} publishes failed: {failed_events:?})",
        confirmed_events.len(),
        failed_events.len()
    );
    sub.shutdown().await;
    node.shutdown().await;
}
