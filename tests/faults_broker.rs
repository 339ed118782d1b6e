//! The broker process itself: not there at start-up, then killed (SIGKILL)
//! and restarted under load, also while the service nodes come back after
//! their callers. Callers, serving nodes and confirmed sends all come
//! through without anyone restarting them. Each test kills a node of its
//! own.
mod support;

use std::time::{Duration, Instant, SystemTime};
use support::broker::PrivateBroker;
use support::load::{check, Load, Outcome};
use support::proxy::Proxy;
use support::sends::{all_received, Sends};
use support::service::{echo, Service};
use support::state::{handlers_settle, lost, reconnected};
use tower::Layer;
use warren::discovery::Peers;
use warren::http::{FallbackLayer, HttpClient, HttpConfig};
use warren::{Address, Client, Connection, Error, Node};
use warren::{Backoff, WhenDisconnected};

/// One test at a time: each boots a broker (seconds of CPU) and runs load,
/// and the second one measures gaps of 200 ms.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_killed_and_restarted_under_load() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let broker = PrivateBroker::new();
    // A reconnect delay of at most 1 s: calls succeed again within 2 s of
    // the broker being back.
    let cfg = support::config()
        .url(broker.url())
        .unwrap()
        .heartbeat(Duration::from_secs(2))
        .backoff(
            Backoff::default()
                .initial(Duration::from_millis(50))
                .max(Duration::from_secs(1)),
        );

    // Everything starts while the broker is not there.
    let serving = Connection::start(cfg.clone()).unwrap();
    let calling = Connection::start(cfg.clone()).unwrap();
    let fast = Connection::start(cfg.when_disconnected(WhenDisconnected::FailFast)).unwrap();
    let t = support::service_type("restart");
    let address = Address::Any(t.clone());
    let fast_client = Client::new(&fast);
    let fails_fast = || async {
        let start = Instant::now();
        let err = fast_client
            .call(echo(&address, Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_millis(500));
    };
    fails_fast().await;
    let service = Service {
        delay: Duration::from_millis(20),
        ..Service::default()
    };
    let received = service.received.clone();
    let serve = tokio::spawn({
        let serving = serving.clone();
        async move { Node::builder(t).serve(&serving, service).await }
    });
    let started = Instant::now();
    broker.start().await;
    let node = tokio::time::timeout(Duration::from_secs(10), serve)
        .await
        .expect("the node did not come up with the broker")
        .unwrap()
        .unwrap();
    println!("broker started in {:?}; the node serves", started.elapsed());

    // Under load, the broker dies.
    let client = Client::new(&calling);
    let load = Load::start(&client, &address, 16, Duration::from_secs(3));
    // Sends that wait out the restart.
    let sends = Sends::start(&client, &address, 2, Duration::from_secs(30));
    load.successes_after(Instant::now(), 50, Duration::from_secs(10))
        .await;
    let in_flight = load.in_flight();
    let (killed, at) = (Instant::now(), SystemTime::now());
    broker.kill().await;
    let noticed = lost(&calling, Duration::from_secs(2)).await;
    lost(&serving, Duration::from_secs(2)).await;
    // Calls in flight failed at once, not at their deadline.
    for o in load.ended(&in_flight, Duration::from_secs(1)).await {
        assert!(
            o.result
                .as_ref()
                .map_or_else(|e| e.starts_with("ConnectionLost"), |()| true),
            "{o:?}"
        );
        assert!(o.ended < killed + Duration::from_millis(500), "{o:?}");
    }
    fails_fast().await;

    // It comes back: clients and node reconnect by themselves.
    let (up, restart) = broker.restart().await;
    let back = reconnected(&calling, at, Duration::from_secs(10)).await;
    let node_back = reconnected(&serving, at, Duration::from_secs(10)).await;
    let first_ok = load
        .successes_after(killed, 20, Duration::from_secs(10))
        .await;
    let broker = restart.await.unwrap();
    let outcomes = load.stop().await;
    let counts = check(&outcomes);
    println!(
        "broker killed: loss noticed after {:?}; down for {:?}; after it accepted \
         connections again: client reconnected in {:?}, node in {:?}, first successful call \
         after {:?} ({:?} after the client reconnected); outcomes {counts:?}",
        noticed - killed,
        up - killed,
        back.saturating_duration_since(up),
        node_back.saturating_duration_since(up),
        first_ok.saturating_duration_since(up),
        first_ok.saturating_duration_since(back),
    );
    assert!(
        first_ok.saturating_duration_since(up) < Duration::from_secs(2),
        "{:?}",
        first_ok.saturating_duration_since(up)
    );

    // Every send that returned `Ok` arrived; none failed.
    let sent = sends.stop().await;
    let failed: Vec<_> = sent.iter().filter(|s| s.result.is_err()).collect();
    assert!(failed.is_empty(), "{failed:?}");
    let confirmed = all_received(&sent, &received, Duration::from_secs(10)).await;
    let slowest = sent.iter().map(|s| s.took).max().unwrap();
    println!("sends across the restart: {confirmed} confirmed, all received; the slowest took {slowest:?}");
    handlers_settle(&node).await;
    node.shutdown().await;
    drop(broker);
}

/// The broker is killed and restarted, and the nodes' own path to it stays
/// closed for a while after their callers are back (a fault proxy between
/// the nodes and the broker refuses them). Plain callers' requests wait in
/// the queue for the nodes, never `NoRoute`; callers with the HTTP fallback
/// keep completing calls over HTTP until the nodes consume again, then go
/// back to AMQP.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_restarted_while_the_nodes_reconnect_after_the_callers() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let broker = PrivateBroker::new();
    broker.start().await;
    let cfg = support::recovering_config(&broker.url()).heartbeat(Duration::from_secs(2));
    let proxy = Proxy::to_url(&broker.url()).await;
    let serving = support::connect(cfg.clone().url(proxy.url()).unwrap()).await;
    let t = support::service_type("late");
    let address = Address::Any(t.clone());
    let service = Service {
        delay: Duration::from_millis(5),
        ..Service::default()
    };
    let http = HttpConfig::default()
        .listen("127.0.0.1:0".parse().unwrap())
        .announce_every(Duration::from_secs(2));
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let node = Node::builder(t.clone())
            .http(http.clone())
            .serve(&serving, service.clone())
            .await
            .unwrap();
        nodes.push(node);
    }

    // Callers on the broker directly: plain ones, and ones over the fallback.
    let calling = support::connect(cfg.clone()).await;
    let client = Client::new(&calling);
    let falling = support::connect(cfg.when_disconnected(WhenDisconnected::FailFast)).await;
    let peers = Peers::new();
    peers.learn_from(&falling);
    tokio::time::timeout(Duration::from_secs(15), peers.wait_until(|p| p.len() >= 2))
        .await
        .expect("the nodes announce themselves");
    let fallback =
        FallbackLayer::new(&falling, HttpClient::new(peers).unwrap()).layer(Client::new(&falling));
    let timeout = Duration::from_secs(3);
    let plain = Load::start(&client, &address, 16, timeout);
    let degraded = Load::start(&fallback, &address, 16, timeout);
    let started = Instant::now();
    plain
        .successes_after(started, 50, Duration::from_secs(10))
        .await;
    degraded
        .successes_after(started, 50, Duration::from_secs(10))
        .await;

    // The broker dies; the nodes may not reconnect until the callers have.
    proxy.refuse();
    let (killed, at) = (Instant::now(), SystemTime::now());
    broker.kill().await;
    lost(&serving, Duration::from_secs(2)).await;
    let (up, restart) = broker.restart().await;
    let back = reconnected(&calling, at, Duration::from_secs(10)).await;
    let falling_back = reconnected(&falling, at, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.resume();
    let nodes_back = reconnected(&serving, at, Duration::from_secs(10)).await;
    let amqp_again = degraded
        .wait_for(Duration::from_secs(10), |all| {
            first_over(all, nodes_back, "amqp").is_some()
        })
        .await;
    let amqp_again = first_over(&amqp_again, nodes_back, "amqp").unwrap();
    plain
        .successes_after(nodes_back, 20, Duration::from_secs(10))
        .await;
    let broker = restart.await.unwrap();
    let outcomes = plain.stop().await;
    let fallen = degraded.stop().await;

    // No call failed with NoRoute (`check` allows none), over either.
    let counts = check(&outcomes);
    let fallen_counts = check(&fallen);
    // The window this is about: from the fallback callers' reconnection
    // (where they used to go back to AMQP and wait) to their first call
    // answered over AMQP after the nodes were back. Before it (the broker
    // down and booting), calls go over HTTP as they always did; after it,
    // they wait on the broker as they always do. Both are printed.
    let switched = first_over(&fallen, killed, "http").unwrap();
    let (gap, gap_at) = longest_without_success(&fallen, falling_back, amqp_again);
    let (down, _) = longest_without_success(&fallen, switched, falling_back);
    let last = fallen.iter().map(|o| o.ended).max().unwrap();
    let (after, _) = longest_without_success(&fallen, amqp_again, last);
    let over = |name| {
        fallen
            .iter()
            .filter(|o| o.started > killed && o.transport == Some(name))
            .count()
    };
    println!(
        "broker killed, down for {:?}; after it accepted connections again: callers back in \
         {:?}, nodes in \
         {:?}; the fallback back on AMQP {:?} after the nodes; plain callers {counts:?}; \
         fallback callers {fallen_counts:?} (after the kill: {} over HTTP, {} over AMQP), \
         first HTTP call completed {:?} after the kill; the longest time without a \
         completed call: until the fallback callers reconnected {down:?}, from then until \
         back on AMQP {gap:?} ({:?} after the kill), after that {after:?}",
        up - killed,
        back.saturating_duration_since(up),
        nodes_back.saturating_duration_since(up),
        amqp_again.saturating_duration_since(nodes_back),
        over("http"),
        over("amqp"),
        switched - killed,
        gap_at - killed,
    );
    let around: Vec<_> = fallen
        .iter()
        .filter(|o| o.started < gap_at + gap && o.ended > gap_at)
        .map(|o| (o.started - killed, o.took(), o.transport, &o.result))
        .collect();
    assert!(
        gap < Duration::from_millis(200),
        "no call completed for {gap:?} although HTTP peers were healthy; calls then \
         (started after the kill, took, over, result): {around:?}"
    );
    for node in nodes {
        handlers_settle(&node).await;
        node.shutdown().await;
    }
    drop(broker);
}

/// When the first call started after `after` and answered over `transport`
/// ended, if one did.
fn first_over(outcomes: &[Outcome], after: Instant, transport: &str) -> Option<Instant> {
    outcomes
        .iter()
        .filter(|o| o.started > after && o.transport == Some(transport))
        .map(|o| o.ended)
        .min()
}

/// The longest time from `from` to `until` without a successful call
/// ending, and when it began.
fn longest_without_success(
    outcomes: &[Outcome],
    from: Instant,
    until: Instant,
) -> (Duration, Instant) {
    let mut ends: Vec<Instant> = outcomes
        .iter()
        .filter(|o| o.result.is_ok() && o.ended > from && o.ended <= until)
        .map(|o| o.ended)
        .collect();
    ends.sort();
    std::iter::once(from)
        .chain(ends)
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| (w[1] - w[0], w[0]))
        .max()
        .unwrap_or((Duration::ZERO, from))
}
