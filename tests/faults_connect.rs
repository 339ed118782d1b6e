//! Reaching the broker: not there at start-up, several URLs (a cluster)
//! tried in turn, a slow path.
mod support;

use std::time::{Duration, Instant, SystemTime};
use support::load::{check, Load};
use support::proxy::Proxy;
use support::service::{echo, Service};
use support::state::reconnected;
use warren::{Address, Client, Connection, ConnectionState, Error, Node};
use warren::{Backoff, UrlOrder, WhenDisconnected};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_not_there_at_start_up() {
    let proxy = Proxy::to_url(&support::url()).await;
    proxy.refuse();
    let cfg = support::recovering_config(&proxy.url());

    // `connect` gives up after the configured attempts, with the reason.
    let gives_up = cfg.clone().backoff(
        Backoff::default()
            .initial(Duration::from_millis(10))
            .max(Duration::from_millis(20))
            .max_attempts(Some(3)),
    );
    let err = Connection::connect(gives_up).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");

    // `start` returns at once; calls wait, or fail fast, by configuration.
    let waiting = Connection::start(cfg.clone()).unwrap();
    let fast = Connection::start(cfg.when_disconnected(WhenDisconnected::FailFast)).unwrap();
    // A service that is already up (on a direct connection), and one that
    // starts while the broker is not there.
    let direct = support::connect(support::config()).await;
    let up = support::service_type("up");
    let up_node = Node::builder(up.clone())
        .serve(&direct, Service::default())
        .await
        .unwrap();
    let up = Address::Any(up);
    let start = Instant::now();
    let err = Client::new(&fast)
        .call(echo(&up, Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    let call = tokio::spawn({
        let client = Client::new(&waiting);
        async move { client.call(echo(&up, Duration::from_secs(10))).await }
    });
    let late = support::service_type("late");
    let serve = tokio::spawn({
        let (waiting, late) = (waiting.clone(), late.clone());
        async move {
            Node::builder(late)
                .serve(&waiting, Service::default())
                .await
        }
    });
    // The state says why: still trying, and the last error.
    let mut state = waiting.state();
    tokio::time::timeout(
        Duration::from_secs(2),
        state.wait_for(|s| {
            matches!(
                s,
                ConnectionState::Reconnecting {
                    last_error: Some(_),
                    ..
                }
            )
        }),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(!call.is_finished() && !serve.is_finished());

    let (there, at) = (Instant::now(), SystemTime::now());
    proxy.resume();
    let back = reconnected(&waiting, at, Duration::from_secs(2)).await;
    call.await.unwrap().unwrap();
    let answered = Instant::now();
    let late_node = serve.await.unwrap().unwrap();
    let client = Client::new(&waiting);
    client
        .call(echo(&Address::Any(late), Duration::from_secs(5)))
        .await
        .unwrap();
    println!(
        "broker there after start-up: connected {:?} later, the waiting call answered {:?} \
         after that, the late node serving {:?} after that",
        back - there,
        answered - back,
        answered.elapsed()
    );
    assert!(answered - there < Duration::from_secs(2));
    up_node.shutdown().await;
    late_node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_urls_are_tried_in_turn() {
    // Nothing listens on the first URL's port.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("amqp://guest:guest@{}/%2f", dead.local_addr().unwrap());
    drop(dead);
    let first = Proxy::to_url(&support::url()).await;
    let second = Proxy::to_url(&support::url()).await;
    let cfg = support::recovering_config(&dead_url)
        .urls([dead_url.clone(), first.url(), second.url()])
        .unwrap()
        .url_order(UrlOrder::InOrder);
    let conn = support::connect(cfg).await;
    let t = support::service_type("urls");
    let node = Node::builder(t.clone())
        .serve(&conn, Service::default())
        .await
        .unwrap();
    let client = Client::new(&conn);
    let address = Address::Any(t);
    client
        .call(echo(&address, Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(first.open_connections(), 1);

    // That node of the cluster goes away: the connection moves on to the next.
    first.refuse();
    let (cut, at) = (Instant::now(), SystemTime::now());
    first.cut();
    reconnected(&conn, at, Duration::from_secs(5)).await;
    let load = Load::start(&client, &address, 1, Duration::from_secs(5));
    let first_ok = load.successes_after(cut, 1, Duration::from_secs(5)).await;
    check(&load.stop().await);
    assert_eq!(
        (first.open_connections(), second.open_connections()),
        (0, 1)
    );
    println!(
        "failover to the next URL: first successful call {:?} after the cut",
        first_ok - cut
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn latency_slows_calls_and_deadlines_hold() {
    let proxy = Proxy::to_url(&support::url()).await;
    let cfg = support::recovering_config(&proxy.url());
    let conn = support::connect(cfg).await;
    let t = support::service_type("latency");
    let node = Node::builder(t.clone())
        .serve(&conn, Service::default())
        .await
        .unwrap();
    let client = Client::new(&conn);
    let address = Address::Any(t);
    // (The first call waits for the client's reply channel to open.)
    client
        .call(echo(&address, Duration::from_secs(5)))
        .await
        .unwrap();
    let mut state = conn.state();
    state.borrow_and_update();
    proxy.latency(Duration::from_millis(100));
    // Request and reply each cross the proxy twice (caller → broker → node,
    // and back): 400 ms at least.
    let start = Instant::now();
    client
        .call(echo(&address, Duration::from_secs(5)))
        .await
        .unwrap();
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(400), "{took:?}");
    // A deadline shorter than the path ends on time, with a typed error.
    let start = Instant::now();
    let err = client
        .call(echo(&address, Duration::from_millis(250)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(
        start.elapsed() < Duration::from_millis(750),
        "{:?}",
        start.elapsed()
    );
    // Heartbeats (1 s) still get through: the connection never dropped.
    assert!(!state.has_changed().unwrap(), "{:?}", *state.borrow());
    println!("latency 100 ms each way: a call took {took:?}");
    proxy.latency(Duration::ZERO);
    node.shutdown().await;
}
