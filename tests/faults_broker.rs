//! The broker process itself: not there at start-up, then killed (SIGKILL)
//! and restarted under load. Callers, a serving node and confirmed sends
//! all come through without anyone restarting them. The test kills a node
//! of its own.
mod support;

use std::time::{Duration, Instant, SystemTime};
use support::broker::PrivateBroker;
use support::load::{check, Load};
use support::sends::{all_received, Sends};
use support::service::{echo, Service};
use support::state::{handlers_settle, lost, reconnected};
use warren::config::{Backoff, WhenDisconnected};
use warren::{Address, Client, Connection, Error, Node};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_killed_and_restarted_under_load() {
    let broker = PrivateBroker::new();
    // A reconnect delay of at most 1 s: calls succeed again within 2 s of
    // the broker being back.
    let cfg = support::config()
        .url(broker.url())
        .unwrap()
        .heartbeat(Duration::from_secs(2))
        .backoff(Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(1),
            ..Backoff::default()
        });

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
    let port = broker.port();
    let restart = tokio::spawn(async move {
        broker.start().await;
        broker
    });
    let up = support::broker::accepting(port).await;
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
