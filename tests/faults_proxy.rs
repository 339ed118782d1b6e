//! Network faults between warren and a running broker, made by a TCP
//! proxy: connections cut, a stalled path caught by heartbeats; calls,
//! serving nodes and confirmed sends come through.
mod support;

use std::time::{Duration, Instant, SystemTime};
use support::load::{check, Load};
use support::proxy::Proxy;
use support::sends::{all_received, Sends};
use support::service::Service;
use support::state::{handlers_settle, lost, reconnected};
use warren::{Address, Client, ConnectionState, Delivery, Node};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cut_under_load_then_calls_succeed_again() {
    let proxy = Proxy::to_url(&support::url()).await;
    let cfg = support::recovering_config(&proxy.url());
    let serving = support::connect(cfg.clone()).await;
    let calling = support::connect(cfg).await;
    let t = support::service_type("cut");
    let service = Service {
        delay: Duration::from_millis(20),
        ..Service::default()
    };
    let node = Node::builder(t.clone())
        .serve(&serving, service)
        .await
        .unwrap();
    let client = Client::new(&calling);
    let address = Address::Any(t);
    let timeout = Duration::from_secs(3);
    let load = Load::start(&client, &address, 16, timeout);
    load.successes_after(Instant::now(), 50, Duration::from_secs(10))
        .await;

    let in_flight = load.in_flight();
    let (cut, at) = (Instant::now(), SystemTime::now());
    proxy.cut();
    let noticed = lost(&calling, Duration::from_secs(2)).await;
    let back = reconnected(&calling, at, Duration::from_secs(5)).await;
    let first_ok = load.successes_after(cut, 20, Duration::from_secs(5)).await;
    let outcomes = load.stop().await;
    let counts = check(&outcomes);
    // Calls in flight at the cut failed at once (their replies are gone with
    // the channel), not at their deadline. A call the load had started but
    // not yet published when the channel died is told so: `Unavailable`
    // (not sent), also at once.
    for o in outcomes.iter().filter(|o| in_flight.contains(&o.id)) {
        assert!(
            o.result.as_ref().map_or_else(
                |e| e.starts_with("ConnectionLost") || e.starts_with("Unavailable"),
                |()| true
            ),
            "{o:?}"
        );
        assert!(o.ended < cut + Duration::from_millis(500), "{o:?}");
    }
    println!(
        "cut: loss noticed after {:?}, reconnected after {:?}, \
         first successful call {:?} after the cut ({:?} after reconnecting); outcomes {counts:?}",
        noticed - cut,
        back - cut,
        first_ok - cut,
        first_ok.saturating_duration_since(back)
    );
    assert!(
        first_ok - cut < Duration::from_secs(2),
        "{:?}",
        first_ok - cut
    );
    handlers_settle(&node).await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stall_is_caught_by_heartbeats() {
    let proxy = Proxy::to_url(&support::url()).await;
    let cfg = support::recovering_config(&proxy.url()).default_timeout(Duration::from_secs(10));
    let cfg = cfg.connect_timeout(Duration::from_secs(1));
    let serving = support::connect(cfg.clone()).await;
    let calling = support::connect(cfg).await;
    let t = support::service_type("stall");
    let service = Service {
        delay: Duration::from_millis(20),
        ..Service::default()
    };
    let node = Node::builder(t.clone())
        .serve(&serving, service)
        .await
        .unwrap();
    let client = Client::new(&calling);
    let address = Address::Any(t);
    let timeout = Duration::from_secs(10);
    let load = Load::start(&client, &address, 8, timeout);
    load.successes_after(Instant::now(), 20, Duration::from_secs(10))
        .await;

    let in_flight = load.in_flight();
    let stall = Instant::now();
    proxy.stall();
    // Nothing was closed: only the silence tells (heartbeat 1 s, so about 2 s).
    let noticed = lost(&calling, Duration::from_secs(4)).await;
    // Every call in flight then failed at once, long before its deadline.
    let ended = load.ended(&in_flight, Duration::from_secs(1)).await;
    assert!(!ended.is_empty());
    for o in &ended {
        // (A reply already on its way before the stall may still get through.)
        assert!(
            o.result
                .as_ref()
                .map_or_else(|e| e.starts_with("ConnectionLost"), |()| true),
            "{o:?}"
        );
        assert!(o.ended < noticed + Duration::from_millis(500), "{o:?}");
    }
    // A one-way send on the dead path ends with an error (or `Ok` if it got
    // through after all), never hangs.
    let send = tokio::spawn({
        let client = client.clone();
        let address = address.clone();
        async move {
            let started = Instant::now();
            let req =
                warren::Request::encode(address, "Sink.put", warren::ContentType::MsgPack, &1u64)
                    .unwrap()
                    .with_timeout(Duration::from_secs(2));
            (
                client
                    .call(req.with_delivery(Delivery::OneWay))
                    .await
                    .map(drop),
                started.elapsed(),
            )
        }
    });
    // Let a reconnection attempt run into its connect timeout first.
    let mut state = calling.state();
    tokio::time::timeout(
        Duration::from_secs(3),
        state.wait_for(
            |s| matches!(s, ConnectionState::Reconnecting { attempts, .. } if *attempts >= 1),
        ),
    )
    .await
    .expect("no failed attempt")
    .unwrap();
    let (resume, at) = (Instant::now(), SystemTime::now());
    proxy.resume();
    let back = reconnected(&calling, at, Duration::from_secs(5)).await;
    let first_ok = load
        .successes_after(stall, 10, Duration::from_secs(5))
        .await;
    let (sent, took) = send.await.unwrap();
    assert!(
        took < Duration::from_millis(2500),
        "the send took {took:?}: {sent:?}"
    );
    let outcomes = load.stop().await;
    let counts = check(&outcomes);
    println!(
        "stall: noticed after {:?} (heartbeat 1 s); after resuming: reconnected in {:?}, \
         first successful call {:?} ({:?} after reconnecting); send during the stall: {sent:?} \
         after {took:?}; outcomes {counts:?}",
        noticed - stall,
        back.saturating_duration_since(resume),
        first_ok - resume,
        first_ok.saturating_duration_since(back)
    );
    assert!(
        first_ok - resume < Duration::from_secs(2),
        "{:?}",
        first_ok - resume
    );
    handlers_settle(&node).await;
    node.shutdown().await;
    // Attempts abandoned at their connect timeout during the stall went
    // through when it ended; none may linger as a connection nobody uses.
    let start = Instant::now();
    while proxy.open_connections() > 2 {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{} connections open",
            proxy.open_connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serving_side_cut_loses_no_call() {
    // Only the node's connection goes through the proxy: its unacknowledged
    // requests go back to the queue and are answered after it reconnects.
    let proxy = Proxy::to_url(&support::url()).await;
    let cfg = support::recovering_config(&proxy.url());
    let serving = support::connect(cfg.clone()).await;
    let calling = support::connect(cfg.url(support::url()).unwrap()).await;
    let t = support::service_type("servecut");
    let service = Service {
        delay: Duration::from_millis(20),
        ..Service::default()
    };
    let node = Node::builder(t.clone())
        .serve(&serving, service)
        .await
        .unwrap();
    let client = Client::new(&calling);
    let load = Load::start(&client, &Address::Any(t), 16, Duration::from_secs(3));
    load.successes_after(Instant::now(), 50, Duration::from_secs(10))
        .await;
    let in_flight = load.in_flight();
    let (cut, at) = (Instant::now(), SystemTime::now());
    proxy.cut();
    let back = reconnected(&serving, at, Duration::from_secs(5)).await;
    let ended = load.ended(&in_flight, Duration::from_secs(3)).await;
    let outcomes = load.stop().await;
    let counts = check(&outcomes);
    assert!(outcomes.iter().all(|o| o.result.is_ok()), "{counts:?}");
    let slowest = ended.iter().map(|o| o.ended - cut).max().unwrap();
    println!(
        "serving side cut: node reconnected after {:?}; the calls in flight were all \
         answered, the last {slowest:?} after the cut; outcomes {counts:?}",
        back - cut
    );
    handlers_settle(&node).await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn confirmed_sends_survive_cuts() {
    let proxy = Proxy::to_url(&support::url()).await;
    let cfg = support::recovering_config(&proxy.url());
    let serving = support::connect(cfg.clone()).await;
    let sending = support::connect(cfg).await;
    let t = support::service_type("sends");
    let service = Service::default();
    let (received, deliveries) = (service.received.clone(), service.deliveries.clone());
    let node = Node::builder(t.clone())
        .serve(&serving, service)
        .await
        .unwrap();
    let client = Client::new(&sending);
    let sends = Sends::start(&client, &Address::Any(t), 4, Duration::from_secs(5));
    for _ in 0..3 {
        let before = received.lock().unwrap().len();
        let at = SystemTime::now();
        proxy.cut();
        reconnected(&sending, at, Duration::from_secs(5)).await;
        // Sends flow again before the next cut.
        let start = Instant::now();
        while received.lock().unwrap().len() < before + 50 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "sends stopped flowing"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let sent = sends.stop().await;
    let failed: Vec<_> = sent.iter().filter(|s| s.result.is_err()).collect();
    assert!(failed.is_empty(), "{failed:?}");
    let confirmed = all_received(&sent, &received, Duration::from_secs(5)).await;
    let deliveries = deliveries.load(std::sync::atomic::Ordering::SeqCst);
    let slowest = sent.iter().map(|s| s.took).max().unwrap();
    println!(
        "sends across 3 cuts: {confirmed} confirmed, all received ({deliveries} deliveries: \
         duplicates are allowed); the slowest send took {slowest:?}"
    );
    handlers_settle(&node).await;
    node.shutdown().await;
}
