//! A Python (pika) service publishing and consuming warren's events from
//! docs/PROTOCOL.md alone. Needs `python3` with `pika` (see tests/interop.rs).
mod support;

#[path = "interop/python.rs"]
mod python;

use python::{python, script, Peer};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::process::Command;
use tower::service_fn;
use warren::events::{Delivery, Publisher, Subscription};
use warren::Error;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, warren::Event)]
#[event(name = "ticket.created", version = 1)]
struct TicketCreated {
    id: u64,
    title: String,
}

#[tokio::test]
async fn a_python_publisher_and_consumer_interoperate() {
    let conn = support::connect(support::config().events_exchange(support::unique("events"))).await;
    let exchange = conn.config().events_exchange.clone();

    // Python publishes, warren handles.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let sub = Subscription::new(support::unique("search"))
        .on(service_fn(move |d: Delivery<TicketCreated>| {
            let _ = tx.send(d);
            async { Ok::<_, Error>(()) }
        }))
        .start(&conn)
        .await
        .unwrap();
    let out = Command::new(python())
        .arg(script("events.py"))
        .args([&support::url(), &exchange, "publish"])
        .output()
        .await
        .expect("run events.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let d = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("the Python event arrives")
        .unwrap();
    assert_eq!(d.meta.id, id);
    assert_eq!(d.meta.version, 1);
    assert!(d.meta.time().is_some(), "{:?}", d.meta.timestamp);
    assert_eq!(
        d.payload,
        TicketCreated {
            id: 42,
            title: "from python".into()
        }
    );
    sub.shutdown().await;

    // warren publishes, Python consumes.
    let service = support::unique("pyconsumer");
    let mut peer = Peer::start(
        "events.py",
        &[&support::url(), &exchange, "consume", &service],
    )
    .await;
    Publisher::new(&conn)
        .publish(&TicketCreated {
            id: 7,
            title: "from warren".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        peer.line().await,
        r#"{"eventType": "ticket.created", "payload": {"id": 7, "title": "from warren"}, "version": 1}"#
    );
}
