//! PostOffice benchmark: calls through the WebSocket gateway against the
//! same calls made with warren's `Client` directly, in one run; push
//! fan-out to many clients; the memory an idle connection costs.
//!
//! Run with: `cargo bench --features postoffice --bench postoffice`
//! (broker from `WARREN_AMQP_URL`, default `amqp://guest:guest@127.0.0.1:5672/%2f`).
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `WARREN_BENCH_ROUNDS` | rounds of the call comparison | `3` |
//! | `WARREN_BENCH_SECS` | measured seconds per call run | `2` |
//! | `WARREN_BENCH_FANOUT` | clients the pushes fan out to | `1000` |
//! | `WARREN_BENCH_IDLE` | idle connections for the memory figure | `10000` |
//!
//! - **calls**: 16 WebSocket connections, each keeping 4 requests in
//!   flight (`any:` an echo service, a 64-byte JSON string), against 64
//!   tasks calling the same service with the same request through one
//!   `Client`. Requests/s over the window, median of the rounds, and the
//!   PostOffice's ratio to the direct client per round (median).
//! - **push fan-out**: `WARREN_BENCH_FANOUT` connected clients, 20 pushes
//!   `to_all` sent one after the other; push frames received per second,
//!   from the first push to the last frame read by the last client.
//! - **idle memory**: a child process opens `WARREN_BENCH_IDLE`
//!   authenticated connections and leaves them idle; the growth of this
//!   process's resident memory (`VmRSS`), divided by the connections, is
//!   the server's cost per idle connection (clients not counted).

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;
use warren::postoffice::{Identity, Limits, PostOffice, Pusher, TokenList};
use warren::{Address, Client, Config, Connection, ContentType, Node, Request, Response};

const TOKEN: &str = "bench-token";
const CONNECTIONS: usize = 16;
const PER_CONNECTION: usize = 4;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn login(addr: SocketAddr) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("the upgrade");
    ws.send(Message::text(json!({"auth": TOKEN}).to_string()))
        .await
        .unwrap();
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.contains("welcome") => ws,
        other => panic!("no welcome: {other:?}"),
    }
}

/// The child process of the idle-memory figure: opens `n` connections,
/// says `ready`, and holds them until its stdin closes.
async fn idle_clients(addr: SocketAddr, n: usize) {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(login(addr).await);
    }
    let mut out = tokio::io::stdout();
    out.write_all(b"ready\n").await.unwrap();
    out.flush().await.unwrap();
    let mut line = String::new();
    let _ = BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await;
    drop(held);
}

/// Requests/s through the PostOffice: 16 connections × 4 in flight.
async fn through_postoffice(addr: SocketAddr, to: &str, body: &str, window: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + window;
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let ws = login(addr).await;
        let (mut tx, mut rx) = ws.split();
        let frame = json!({"id": 0, "to": to, "method": "Echo.say", "body": body}).to_string();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..PER_CONNECTION {
                tx.send(Message::text(frame.clone())).await.unwrap();
            }
            let mut sent = PER_CONNECTION;
            let mut got = 0;
            while got < sent {
                match rx.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(&t).unwrap();
                        assert_eq!(v["status"], "ok", "{v}");
                        got += 1;
                        if Instant::now() < end {
                            done.fetch_add(1, Ordering::Relaxed);
                            tx.send(Message::text(frame.clone())).await.unwrap();
                            sent += 1;
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("connection ended: {other:?}"),
                }
            }
            let _ = tx.close().await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / window.as_secs_f64()
}

/// Requests/s with warren's client directly: 64 tasks.
async fn direct(client: &Client, to: &Address, body: &str, window: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + window;
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS * PER_CONNECTION {
        let (client, to, body, done) = (client.clone(), to.clone(), body.to_owned(), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let req =
                    Request::encode(to.clone(), "Echo.say", ContentType::Json, &body).unwrap();
                client.call(req).await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / window.as_secs_f64()
}

/// Push frames received per second by `n` clients, 20 pushes to all.
async fn fan_out(addr: SocketAddr, pusher: &Pusher, n: usize) -> f64 {
    const PUSHES: usize = 20;
    let mut readers = Vec::new();
    for _ in 0..n {
        let mut ws = login(addr).await;
        readers.push(tokio::spawn(async move {
            let mut got = 0;
            while got < PUSHES {
                match ws.next().await {
                    Some(Ok(Message::Text(_))) => got += 1,
                    Some(Ok(_)) => {}
                    other => panic!("connection ended: {other:?}"),
                }
            }
            Instant::now()
        }));
    }
    let start = Instant::now();
    for i in 0..PUSHES {
        pusher.to_all("bench", &i).await.unwrap();
    }
    let mut last = start;
    for r in readers {
        last = last.max(r.await.unwrap());
    }
    (n * PUSHES) as f64 / (last - start).as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var("WARREN_BENCH_ROLE").as_deref() == Ok("idle-clients") {
        let addr: SocketAddr = std::env::var("WARREN_BENCH_ADDR")?.parse()?;
        idle_clients(addr, env_num("WARREN_BENCH_IDLE", 10_000) as usize).await;
        return Ok(());
    }
    // `cargo bench` passes `--bench`; nothing else is taken.
    let rounds = env_num("WARREN_BENCH_ROUNDS", 3).max(1);
    let window = Duration::from_secs(env_num("WARREN_BENCH_SECS", 2).max(1));
    let fanout = env_num("WARREN_BENCH_FANOUT", 1000) as usize;
    let idle = env_num("WARREN_BENCH_IDLE", 10_000) as usize;

    let exchange = format!("bench-po-{}", std::process::id());
    let conn = Connection::connect(Config::from_env()?.exchange(exchange)).await?;
    let echo_type: warren::ServiceType = format!("bench-echo-{}", std::process::id()).parse()?;
    let echo = tower::service_fn(|req: Request| async move {
        Ok::<_, warren::Error>(Response::ok(req.content_type, req.body))
    });
    let node = Node::builder(echo_type.clone()).serve(&conn, echo).await?;
    let office_type: warren::ServiceType = format!("bench-po-{}", std::process::id()).parse()?;
    let office = PostOffice::builder()
        .service(office_type.clone())
        .limits(Limits {
            max_connections: idle + 1_000,
            ..Limits::default()
        })
        .authenticator(TokenList::new().token(TOKEN, Identity::user("bench"))?)
        .start(&conn)
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = office.router();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let body = "x".repeat(64);
    let to = Address::Any(echo_type.clone());
    let to_text = format!("any:{echo_type}");
    let client = Client::new(&conn);
    // Warm-up.
    through_postoffice(addr, &to_text, &body, Duration::from_millis(500)).await;
    direct(&client, &to, &body, Duration::from_millis(500)).await;
    let (mut po, mut dc, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (p, d) = if round % 2 == 0 {
            let p = through_postoffice(addr, &to_text, &body, window).await;
            (p, direct(&client, &to, &body, window).await)
        } else {
            let d = direct(&client, &to, &body, window).await;
            (through_postoffice(addr, &to_text, &body, window).await, d)
        };
        println!("round {round}: postoffice {p:.0}/s, direct client {d:.0}/s");
        po.push(p);
        dc.push(d);
        ratio.push(p / d);
    }
    println!(
        "calls, 16 connections x 4 in flight: postoffice {:.0}/s, direct {:.0}/s, ratio {:.2}",
        median(po),
        median(dc),
        median(ratio)
    );

    let pusher = Pusher::new(Client::new(&conn)).service(office_type);
    let rate = fan_out(addr, &pusher, fanout).await;
    println!("push fan-out to {fanout} clients: {rate:.0} frames/s received");

    // Idle memory, server side only: the clients are another process.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib();
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .env("WARREN_BENCH_ROLE", "idle-clients")
        .env("WARREN_BENCH_ADDR", addr.to_string())
        .env("WARREN_BENCH_IDLE", idle.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut out = BufReader::new(child.stdout.take().expect("piped")).lines();
    let ready = out.next_line().await?;
    assert_eq!(ready.as_deref(), Some("ready"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = office.stats().connections;
    let after = rss_kib();
    println!(
        "idle connections: {held} held, {:.1} KiB resident per connection (server side)",
        after.saturating_sub(before) as f64 / held.max(1) as f64
    );
    drop(child.stdin.take());
    let _ = child.wait().await;
    office.shutdown().await;
    node.shutdown().await;
    Ok(())
}
