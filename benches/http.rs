//! Calls over HTTP: warren's `HttpClient` to a node's HTTP endpoint
//! (`HttpServer`, warren's listener with its connection bounds) against a
//! hand-written baseline, `reqwest` posting to an `axum::serve` echo
//! route; 1 and 16 callers, calls per second. No broker is needed.
//!
//! Run with: `cargo bench --profile dev --bench http`
//! (`WARREN_BENCH_SECS` sets the seconds per measurement, default 3).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warren::discovery::Peers;
use warren::http::{HttpClient, HttpServer, PeerUrl};
use warren::{Address, ContentType, Error, Request, Response, ServiceId, ServiceType};

/// Runs `call` from `callers` tasks for `secs`; calls per second.
async fn measure<F, Fut>(callers: usize, secs: Duration, call: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + secs;
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (call, done) = (call.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    call().await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    for t in tasks {
        t.await.expect("a caller");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn warren_side() -> (HttpClient, ServiceId) {
    let service = ServiceType::new("bench").unwrap();
    let id = ServiceId::new("bench-1").unwrap();
    let echo = tower::service_fn(|req: Request| async move {
        Ok::<_, Error>(Response::ok(req.content_type, req.body))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = HttpServer::new(service.clone(), id.clone(), echo);
    tokio::spawn(server.serve(listener, std::future::pending()));
    let peers = Peers::new();
    peers.insert(PeerUrl::parse(&format!("{service}/{id}=http://{addr}")).unwrap());
    (HttpClient::new(peers).unwrap(), id)
}

async fn baseline_side() -> String {
    let app = axum::Router::new().route(
        "/echo",
        axum::routing::post(|body: axum::body::Bytes| async move { body }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/echo")
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs = std::env::var("WARREN_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(3), Duration::from_secs);
    let (client, id) = warren_side().await;
    let url = baseline_side().await;
    let http = reqwest::Client::new();
    let body = serde_json::to_vec(&"hello, warren").unwrap();
    println!("calls/s over HTTP ({secs:?} each, loopback)");
    println!("callers  warren  baseline  ratio");
    for callers in [1, 16] {
        let warren = {
            let (client, id, body) = (client.clone(), id.clone(), body.clone());
            measure(callers, secs, move || {
                let req = Request::new(
                    Address::Instance(id.clone()),
                    "Echo.say",
                    ContentType::Json,
                    body.clone(),
                )
                .unwrap();
                let client = client.clone();
                async move {
                    client.call(req).await.expect("a warren call");
                }
            })
            .await
        };
        let baseline = {
            let (http, url, body) = (http.clone(), url.clone(), body.clone());
            measure(callers, secs, move || {
                let post = http.post(&url).body(body.clone()).send();
                async move {
                    let resp = post.await.expect("a baseline call");
                    resp.bytes().await.expect("a baseline reply");
                }
            })
            .await
        };
        println!(
            "{callers:>7}  {warren:>6.0}  {baseline:>8.0}  {:.2}",
            warren / baseline
        );
    }
}
