//! Liveness and readiness over HTTP while the test's own broker is killed
//! and restarted: `/health/ready` turns 503 with the reason, and 200 again
//! once the connection and the node's consumers are back; `/health/live`
//! stays 200. Served by a `MetricsServer` for a node without the HTTP
//! fallback, and by the listener of a node with it.
mod support;

use std::time::{Duration, Instant};
use support::broker::PrivateBroker;
use support::handler::{echo, Hits};
use warren::health::{Liveness, Readiness};
use warren::http::HttpConfig;
use warren::metrics::MetricsServer;
use warren::Node;

async fn get<T: serde::de::DeserializeOwned>(url: &str) -> (u16, T) {
    let resp = reqwest::get(url).await.expect("GET");
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap();
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{url}: {e}: {}", String::from_utf8_lossy(&body)));
    (status, body)
}

/// Polls `url` until it answers `status`, for at most `within`.
async fn until(url: &str, status: u16, within: Duration) -> Readiness {
    let start = Instant::now();
    loop {
        let (s, r) = get::<Readiness>(url).await;
        if s == status {
            return r;
        }
        assert!(
            start.elapsed() < within,
            "{url} still answers {s} ({r:?}) after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_broker() {
    let broker = PrivateBroker::new();
    broker.start().await;
    let conn = support::connect(support::recovering_config(&broker.url())).await;
    let hits = Hits::default();
    let plain = Node::builder(support::service_type("ready"))
        .serve(&conn, echo(&hits))
        .await
        .unwrap();
    let with_http = Node::builder(support::service_type("ready-http"))
        .http(HttpConfig::default().listen("127.0.0.1:0".parse().unwrap()))
        .serve(&conn, echo(&hits))
        .await
        .unwrap();
    let server = MetricsServer::builder()
        .connection(&conn)
        .node(&plain)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", server.addr());
    let node_base = with_http.http_url().unwrap().to_owned();
    let ready = format!("{base}/health/ready");
    let node_ready = format!("{node_base}/health/ready");

    let (s, live) = get::<Liveness>(&format!("{base}/health/live")).await;
    assert_eq!((s, live.status.as_str()), (200, "live"));
    let (s, r) = get::<Readiness>(&ready).await;
    assert_eq!(s, 200, "{r:?}");
    assert!(r.ready && r.reasons.is_empty(), "{r:?}");
    assert_eq!(r.broker, ["connected"]);
    assert_eq!((r.consumers, r.expected_consumers), (2, 2));
    let (s, r) = get::<Readiness>(&node_ready).await;
    assert_eq!((s, r.status.as_str()), (200, "ready"));

    broker.kill().await;
    let r = until(&ready, 503, Duration::from_secs(10)).await;
    assert!(!r.ready && r.status == "not_ready", "{r:?}");
    assert!(
        r.reasons.iter().any(|why| why.starts_with("broker:")),
        "{r:?}"
    );
    // The node's consumers went with the connection, and readiness says so.
    let start = Instant::now();
    loop {
        let (s, r) = get::<Readiness>(&ready).await;
        assert_eq!(s, 503, "{r:?}");
        if r.consumers == 0 {
            assert!(
                r.reasons.iter().any(|why| why.starts_with("node `")),
                "{r:?}"
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    until(&node_ready, 503, Duration::from_secs(10)).await;
    // Alive all the same, and the node's older health endpoint too.
    let (s, _) = get::<Liveness>(&format!("{base}/health/live")).await;
    assert_eq!(s, 200);
    let (s, _) = get::<Liveness>(&format!("{node_base}/health/live")).await;
    assert_eq!(s, 200);
    let old = reqwest::get(format!("{node_base}/health")).await.unwrap();
    assert_eq!(old.status(), 200);

    let (_, booted) = broker.restart().await;
    let broker = booted.await.unwrap();
    let r = until(&ready, 200, Duration::from_secs(30)).await;
    assert_eq!(
        (r.consumers, r.broker.as_slice()),
        (2, &["connected".to_owned()][..])
    );
    until(&node_ready, 200, Duration::from_secs(30)).await;

    // The reconnection shows in the metrics too.
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let reconnects = text
        .lines()
        .find_map(|l| l.strip_prefix("warren_connection_reconnects_total "))
        .expect("the reconnects counter");
    assert!(
        reconnects.trim().parse::<f64>().unwrap() >= 1.0,
        "{reconnects}"
    );

    server.shutdown().await;
    plain.shutdown().await;
    with_http.shutdown().await;
    conn.close();
    broker.stop();
}
