//! The bounds of a node's HTTP listener, on real sockets: clients that
//! send their headers too slowly and idle keep-alive connections are
//! closed after their timeouts while calls go on; connections over the
//! limit are refused, counted in `/metrics`, and calls succeed again once
//! connections close; settings that cannot work are refused at start.
#[path = "support/degraded.rs"]
mod degraded;
mod support;

use degraded::{client_for, echo, http_config};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren::http::HttpConfig;
use warren::metrics::MetricsServer;
use warren::{Error, Node};

/// Room for a busy machine on top of a timeout, before a test calls a
/// connection left open.
const SLACK: Duration = Duration::from_secs(6);

async fn node(http: HttpConfig) -> Node {
    let conn = support::connect(support::config()).await;
    let hits = support::handler::Hits::default();
    Node::builder(support::service_type("limits"))
        .http(http)
        .serve(&conn, support::handler::echo(&hits))
        .await
        .expect("the node starts")
}

/// Reads until the server closes the connection; what it sent.
async fn until_closed(stream: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one response to a `GET /health/live` (its body ends the JSON).
async fn one_response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"}") {
        let n = stream.read(&mut buf).await.expect("a response");
        assert!(n > 0, "closed before the response");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

const LIVE: &[u8] = b"GET /health/live HTTP/1.1\r\nHost: node\r\n\r\n";

/// A series of `name{listener="node"} value` in a scrape, summed.
fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains("listener=\"node\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn scrape(metrics: &MetricsServer) -> String {
    reqwest::get(format!("http://{}/metrics", metrics.addr()))
        .await
        .expect("the metrics listener answers")
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn slow_headers_are_closed_after_the_timeout_while_calls_go_on() {
    let timeout = Duration::from_secs(1);
    let node = node(http_config().header_read_timeout(timeout)).await;
    let addr = node.http_addr().unwrap();
    let client = client_for(&node);

    // Slow clients: a byte of headers every 200 ms, never done; and one
    // that sends nothing at all.
    let mut slow = Vec::new();
    for n in 0..20 {
        // Taken before the connection exists, so that it cannot be later
        // than the server's accept (a late poll would make it so).
        let started = Instant::now();
        let stream = TcpStream::connect(addr).await.unwrap();
        slow.push(tokio::spawn(async move {
            let (mut rx, mut tx) = stream.into_split();
            let dripping = tokio::spawn(async move {
                let head = b"POST /rpc/Echo.say HTTP/1.1\r\nHost: node\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
                for byte in head.iter().cycle() {
                    if n == 0 || tx.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                tokio::time::sleep(Duration::from_secs(60)).await;
            });
            let got = tokio::time::timeout(timeout + SLACK, until_closed(&mut rx)).await;
            dripping.abort();
            (got, started.elapsed())
        }));
    }
    // Calls go on meanwhile, on connections of their own.
    for n in 0..10 {
        let resp = client.call(echo(&node, n)).await.expect("a call");
        assert_eq!(resp.decode::<i32>().unwrap(), n);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for s in slow {
        let (got, after) = s.await.unwrap();
        let got = got.unwrap_or_else(|_| panic!("a slow client still open after {after:?}"));
        assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
        assert!(
            after >= timeout,
            "closed after {after:?}, before the timeout"
        );
    }
    let resp = client.call(echo(&node, 7)).await.expect("a call after");
    assert_eq!(resp.decode::<i32>().unwrap(), 7);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let idle = Duration::from_secs(2);
    // The header-read timeout is longer than idle + slack: only the idle
    // timeout can close these connections in time.
    let cfg = http_config()
        .idle_timeout(idle)
        .header_read_timeout(idle + SLACK * 3);
    let node = node(cfg).await;
    let addr = node.http_addr().unwrap();

    let mut stream = TcpStream::connect(addr).await.unwrap();
    // Keep-alive: requests on one connection, each within the idle
    // timeout of the last, are all answered.
    for _ in 0..3 {
        stream.write_all(LIVE).await.unwrap();
        let resp = one_response(&mut stream).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        tokio::time::sleep(idle / 4).await;
    }
    // Taken before the last request is sent: the idle timer cannot start
    // earlier than that (after reading the answer would be later than it
    // on a busy machine).
    let answered = Instant::now();
    stream.write_all(LIVE).await.unwrap();
    one_response(&mut stream).await;
    let got = tokio::time::timeout(idle + SLACK, until_closed(&mut stream))
        .await
        .expect("the idle connection is closed");
    assert!(got.is_empty());
    assert!(answered.elapsed() >= idle, "closed before the idle timeout");
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_counted_and_calls_resume() {
    let metrics = MetricsServer::builder()
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let refused_before = sample(
        &scrape(&metrics).await,
        "warren_http_connections_refused_total",
    );
    let node = node(
        http_config()
            .max_connections(3)
            .header_read_timeout(Duration::from_secs(60)),
    )
    .await;
    let addr = node.http_addr().unwrap();
    let client = client_for(&node);
    client
        .call(echo(&node, 1))
        .await
        .expect("a call under the limit");

    // The client's pooled connection may hold a place: fill the rest.
    let mut held = Vec::new();
    let mut over = loop {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\n")
            .await
            .unwrap();
        // Refused: closed at once, without an answer.
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut [0u8; 64])).await {
            Ok(Ok(0)) | Ok(Err(_)) => break stream,
            Ok(Ok(_)) => panic!("a refused connection got an answer"),
            Err(_) => held.push(stream),
        }
        assert!(held.len() <= 3, "more than 3 connections held");
    };
    assert!(!held.is_empty());
    assert!(until_closed(&mut over).await.is_empty());

    // A call now finds no room, on a new connection or the held one
    // (nothing in flight on it).
    let text = scrape(&metrics).await;
    let refused = sample(&text, "warren_http_connections_refused_total");
    assert!(refused > refused_before, "{text}");
    assert!(sample(&text, "warren_http_connections_open") >= 3, "{text}");

    drop(held);
    let deadline = Instant::now() + SLACK;
    loop {
        match client.call(echo(&node, 2)).await {
            Ok(resp) => break assert_eq!(resp.decode::<i32>().unwrap(), 2),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("calls do not resume once connections close: {e}"),
        }
    }
}

#[tokio::test]
async fn settings_that_cannot_work_are_refused_at_start() {
    let conn = support::connect(support::config()).await;
    let hits = support::handler::Hits::default();
    for (cfg, says) in [
        (http_config().max_connections(0), "connection limit"),
        (http_config().idle_timeout(Duration::ZERO), "idle timeout"),
        (
            http_config().header_read_timeout(Duration::ZERO),
            "header-read timeout",
        ),
    ] {
        let err = Node::builder(support::service_type("limits"))
            .http(cfg)
            .serve(&conn, support::handler::echo(&hits))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert!(err.to_string().contains(says), "{err}");
    }
    for (var, value) in [
        ("WARREN_HTTP_MAX_CONNECTIONS", "0"),
        ("WARREN_HTTP_IDLE_TIMEOUT_MS", "0"),
        ("WARREN_HTTP_HEADER_TIMEOUT_MS", "soon"),
    ] {
        let err = HttpConfig::default()
            .with_env_from(|k| (k == var).then(|| value.to_owned()))
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert!(err.to_string().contains(var), "{err}");
    }
    let cfg = HttpConfig::default()
        .with_env_from(|k| match k {
            "WARREN_HTTP_MAX_CONNECTIONS" => Some("5".into()),
            "WARREN_HTTP_IDLE_TIMEOUT_MS" => Some("1500".into()),
            "WARREN_HTTP_HEADER_TIMEOUT_MS" => Some("700".into()),
            _ => None,
        })
        .unwrap();
    assert_eq!(cfg.listener.max_connections, 5);
    assert_eq!(cfg.listener.idle_timeout, Duration::from_millis(1500));
    assert_eq!(cfg.listener.header_read_timeout, Duration::from_millis(700));
}
