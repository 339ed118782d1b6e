//! Prometheus metrics scraped over HTTP during a real workload: calls,
//! errors, a gather, handlers, a node, the connection and events, checked
//! by name and value with a Prometheus text parser. One test in this
//! binary: the metrics are the process's, and nothing else may add to
//! them while it counts.
mod support;

use prometheus_parse::{LineInfo, Scrape, Value};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use support::handler::{echo, Hits};
use support::metrics::value;
use tower::service_fn;
use warren::events::{Delivery, Publisher, RetryPolicy, Subscription};
use warren::http::HttpConfig;
use warren::metrics::MetricsServer;
use warren::{Address, Client, ContentType, Error, Gather, Node};

#[derive(Debug, Clone, Serialize, Deserialize, warren::Event)]
#[event(name = "metric.counted", version = 1)]
struct Counted {
    fail: bool,
}

/// GETs `url` and parses it, checking every line is one the Prometheus
/// text format knows.
async fn scrape(url: &str) -> Scrape {
    let resp = reqwest::get(url).await.expect("GET /metrics");
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = resp.text().await.unwrap();
    for line in text.lines() {
        let known = matches!(
            LineInfo::parse(line),
            LineInfo::Doc { .. } | LineInfo::Type { .. } | LineInfo::Sample { .. }
        ) || line == "# EOF"
            || line.starts_with("# UNIT ");
        assert!(known, "not a metrics line: {line:?}");
    }
    support::metrics::parse(&text)
}

/// The `+Inf` bucket of histogram `name` (its total count).
fn histogram_count(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .find_map(|x| match &x.value {
            Value::Histogram(b) => b
                .iter()
                .find(|c| c.less_than == f64::INFINITY)
                .map(|c| c.count),
            _ => None,
        })
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_during_a_workload() {
    // Queue gauges read every 50 ms (15 s by default).
    warren::metrics::set_queue_refresh(Duration::from_millis(50));
    let cfg = support::config().events_exchange(support::unique("metrics-ev"));
    let conn = support::connect(cfg).await;
    let t = support::service_type("metrics");
    let hits = Hits::default();
    let node = Node::builder(t.clone())
        .concurrency(8)
        .http(HttpConfig::default().listen("127.0.0.1:0".parse().unwrap()))
        .serve(&conn, echo(&hits))
        .await
        .unwrap();
    let server = MetricsServer::builder()
        .connection(&conn)
        .node(&node)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("http://{}/metrics", server.addr());

    // The workload.
    let client = Client::new(&conn);
    let to = Address::Any(t.clone());
    let call = |method: &str| {
        let r = support::request(to.clone(), method, ContentType::Json, "hi");
        client.call(r)
    };
    for _ in 0..20 {
        call("Echo.say").await.unwrap();
    }
    for _ in 0..3 {
        let err = call("Echo.fail").await.unwrap_err();
        assert!(matches!(err, Error::Remote(_)), "{err}");
    }
    for _ in 0..2 {
        call("Echo.nope").await.unwrap_err();
    }
    let nobody = Address::Any(support::service_type("metrics-nobody"));
    let err = client
        .call(support::request(
            nobody,
            "Echo.say",
            ContentType::Json,
            "hi",
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoRoute { .. }), "{err}");
    let every = Address::Every(t.clone());
    let gather = Gather::new(support::request(
        every,
        "Echo.upper",
        ContentType::Json,
        "x",
    ))
    .expect(1);
    assert_eq!(client.gather(gather).await.unwrap().len(), 1);

    let events = support::unique("metrics-sub");
    let sub = Subscription::new(&events)
        .on(service_fn(|d: Delivery<Counted>| async move {
            if d.payload.fail {
                Err::<(), Error>(Error::InvalidRequest("asked to fail".into()))
            } else {
                Ok(())
            }
        }))
        .retry(RetryPolicy::delays([Duration::ZERO]))
        .start(&conn)
        .await
        .unwrap();
    let publisher = Publisher::new(&conn);
    for fail in [false, false, true] {
        publisher.publish(&Counted { fail }).await.unwrap();
    }

    // Events settle after their handlers: wait for the last count.
    let ty = [("type", "metric.counted")];
    let mut s = scrape(&url).await;
    for _ in 0..100 {
        if value(&s, "warren_events_dead_lettered_total", &ty) >= 1.0
            && value(&s, "warren_events_consumed_total", &ty) >= 2.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        s = scrape(&url).await;
    }

    let m = "Echo.say";
    let calls = "warren_client_calls_total";
    assert_eq!(value(&s, calls, &[("method", m), ("outcome", "ok")]), 20.0);
    assert_eq!(
        value(
            &s,
            calls,
            &[("method", "Echo.fail"), ("outcome", "application")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &s,
            calls,
            &[("method", "Echo.nope"), ("outcome", "unknown_method")]
        ),
        2.0
    );
    assert_eq!(
        value(&s, calls, &[("method", m), ("outcome", "no_route")]),
        1.0
    );
    assert_eq!(
        histogram_count(&s, "warren_client_call_duration_seconds", &[("method", m)]),
        21.0
    );
    assert_eq!(
        value(
            &s,
            "warren_client_call_duration_seconds_count",
            &[("method", m)]
        ),
        21.0
    );
    let sum = value(
        &s,
        "warren_client_call_duration_seconds_sum",
        &[("method", m)],
    );
    assert!(sum > 0.0 && sum < 21.0 * 10.0, "{sum}");

    let up = [("method", "Echo.upper")];
    assert_eq!(
        value(
            &s,
            "warren_client_gathers_total",
            &[up[0], ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(value(&s, "warren_client_gather_replies_sum", &up), 1.0);
    assert_eq!(value(&s, "warren_client_gather_replies_count", &up), 1.0);

    let served = "warren_server_requests_total";
    assert_eq!(value(&s, served, &[("method", m), ("code", "ok")]), 20.0);
    assert_eq!(
        value(
            &s,
            served,
            &[("method", "Echo.fail"), ("code", "application")]
        ),
        3.0
    );
    assert_eq!(value(&s, served, &[up[0], ("code", "ok")]), 1.0);
    assert_eq!(
        value(
            &s,
            "warren_server_request_duration_seconds_count",
            &[("method", m)]
        ),
        20.0
    );
    assert_eq!(
        value(&s, "warren_server_requests_in_flight", &[("method", m)]),
        0.0
    );

    let svc = [("service", t.as_str())];
    assert_eq!(value(&s, "warren_node_consumers", &svc), 2.0);
    assert_eq!(value(&s, "warren_node_handlers_limit", &svc), 8.0);
    assert_eq!(value(&s, "warren_node_handlers_in_use", &svc), 0.0);
    assert!(value(&s, "warren_connections", &[("state", "connected")]) >= 1.0);
    assert_eq!(
        value(&s, "warren_connections", &[("state", "reconnecting")]),
        0.0
    );
    assert_eq!(value(&s, "warren_connection_reconnects_total", &[]), 0.0);

    assert_eq!(value(&s, "warren_events_published_total", &ty), 3.0);
    assert_eq!(value(&s, "warren_events_consumed_total", &ty), 2.0);
    assert_eq!(value(&s, "warren_events_retried_total", &ty), 1.0);
    assert_eq!(value(&s, "warren_events_dead_lettered_total", &ty), 1.0);

    // Queue depths and consumers of the queues this process consumes,
    // read by passive declares: the dead-lettered event waits in the DLQ.
    let dlq = format!("{events}.dlq");
    let dead = [("queue", dlq.as_str()), ("kind", "dead_letter")];
    for _ in 0..100 {
        if value(&s, "warren_queue_messages", &dead) >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        s = scrape(&url).await;
    }
    assert_eq!(value(&s, "warren_queue_messages", &dead), 1.0);
    assert_eq!(value(&s, "warren_queue_consumers", &dead), 0.0);
    let events_q = format!("{events}.q");
    let consumers = |queue: &str, kind: &str| {
        value(
            &s,
            "warren_queue_consumers",
            &[("queue", queue), ("kind", kind)],
        )
    };
    assert_eq!(consumers(&events_q, "events"), 1.0);
    assert_eq!(consumers(t.as_str(), "work"), 1.0);
    assert_eq!(consumers(&format!("{t}-{}", node.id()), "instance"), 1.0);
    assert_eq!(
        value(
            &s,
            "warren_queue_messages",
            &[("queue", events_q.as_str()), ("kind", "events")]
        ),
        0.0
    );

    // Every family says what it means.
    for family in [
        "warren_queue_messages",
        "warren_client_calls",
        "warren_server_request_duration_seconds",
        "warren_connections",
    ] {
        assert!(
            s.docs.get(family).is_some_and(|d| !d.is_empty()),
            "{family} has no HELP"
        );
    }

    // The node's own HTTP listener serves the same registry.
    let node_url = format!("{}/metrics", node.http_url().unwrap());
    let from_node = scrape(&node_url).await;
    assert_eq!(
        value(&from_node, calls, &[("method", m), ("outcome", "ok")]),
        20.0
    );

    // A stopped subscription's queues leave the gauges.
    sub.shutdown().await;
    let mut gone = false;
    for _ in 0..100 {
        let s = scrape(&url).await;
        if !s
            .samples
            .iter()
            .any(|x| x.labels.get("queue") == Some(dlq.as_str()))
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the stopped subscription's queues are still shown");
    node.shutdown().await;
    server.shutdown().await;
    conn.close();
}
