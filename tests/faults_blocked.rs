//! Broker flow control: a memory alarm blocks publishers (`connection.blocked`);
//! calls wait or fail fast with the broker's reason, never hang unexplained,
//! and flow again once the alarm clears. The alarm blocks every publisher
//! on the node, so the test has a node of its own.
mod support;

use std::time::{Duration, Instant};
use support::broker::PrivateBroker;
use support::service::{echo, Service};
use warren::WhenDisconnected;
use warren::{Address, Client, ConnectionState, ContentType, Delivery, Error, Node, Request};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocked_publishing_is_surfaced_and_released() {
    let broker = PrivateBroker::new();
    broker.start().await;
    let cfg = support::config().url(broker.url()).unwrap();
    let waiting = support::connect(cfg.clone()).await;
    let fast = support::connect(cfg.when_disconnected(WhenDisconnected::FailFast)).await;
    let t = support::service_type("blocked");
    let node = Node::builder(t.clone())
        .serve(&waiting, Service::default())
        .await
        .unwrap();
    let address = Address::Any(t);
    let client = Client::new(&waiting);
    let fast_client = Client::new(&fast);
    client
        .call(echo(&address, Duration::from_secs(5)))
        .await
        .unwrap();
    fast_client
        .call(echo(&address, Duration::from_secs(5)))
        .await
        .unwrap();

    broker.ctl(&["set_vm_memory_high_watermark", "0"]).await;
    // The broker tells a connection it is blocked when it next publishes:
    // that call fails at once under fail-fast, saying why.
    let start = Instant::now();
    let err = fast_client
        .call(echo(&address, Duration::from_secs(5)))
        .await
        .unwrap_err();
    let first = start.elapsed();
    assert!(
        matches!(&err, Error::Blocked { reason } if reason.contains("memory")),
        "{err}"
    );
    assert!(first < Duration::from_secs(1), "{first:?}");
    assert!(matches!(
        *fast.state().borrow(),
        ConnectionState::Connected {
            blocked: Some(_),
            ..
        }
    ));
    // Later calls are not even sent.
    let start = Instant::now();
    let err = fast_client
        .call(echo(&address, Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable { reason } if reason.contains("low on memory")),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_millis(500));

    // Waiting calls wait up to their deadline, then say why.
    let start = Instant::now();
    let err = client
        .call(echo(&address, Duration::from_secs(1)))
        .await
        .unwrap_err();
    let waited = start.elapsed();
    assert!(matches!(&err, Error::Blocked { .. }), "{err}");
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    let send = Request::encode(address.clone(), "Sink.put", ContentType::MsgPack, &1u64)
        .unwrap()
        .with_timeout(Duration::from_millis(500));
    let err = client
        .call(send.with_delivery(Delivery::OneWay))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable { reason } if reason.contains("blocked")),
        "{err}"
    );

    // A call made while blocked goes through once the alarm clears.
    let call = tokio::spawn({
        let (client, address) = (client.clone(), address.clone());
        async move { client.call(echo(&address, Duration::from_secs(20))).await }
    });
    let unblocked = tokio::spawn({
        let mut state = waiting.state();
        async move {
            let _ = state.wait_for(ConnectionState::is_connected).await;
            Instant::now()
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!call.is_finished());
    broker.ctl(&["set_vm_memory_high_watermark", "0.4"]).await;
    call.await.unwrap().unwrap();
    let answered = unblocked.await.unwrap().elapsed();
    fast_client
        .call(echo(&address, Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(fast.state().borrow().is_connected());
    println!(
        "blocked: the first fail-fast call failed after {first:?}; the waiting call was \
         answered {answered:?} after the broker unblocked the connection"
    );
    node.shutdown().await;
}
