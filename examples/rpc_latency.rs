//! Run with: `scripts/broker start && WARREN_AMQP_URL=$(scripts/broker url) cargo run --release --example rpc_latency`
//!
//! Round-trip latency and throughput of calls through one broker.
//!
//! Starts an echo node, then measures sequential calls (p50, p99) and the
//! throughput with 16 calls in flight. It prints figures; it asserts nothing.

use futures::stream::{self, StreamExt};
use std::time::Instant;
use tower::service_fn;
use warren::{
    Address, Client, Config, Connection, ContentType, Node, Request, Response, ServiceType,
};

const SEQUENTIAL: usize = 2_000;
const CONCURRENT: usize = 20_000;
const IN_FLIGHT: usize = 16;

#[tokio::main]
async fn main() -> Result<(), warren::Error> {
    let config = Config::from_env()?.exchange(format!("latency-{}", std::process::id()));
    let conn = Connection::connect(config).await?;
    let service = ServiceType::new(format!("latency-{}", std::process::id()))?;
    let echo =
        service_fn(|req: Request| async move { Ok(Response::ok(req.content_type, req.body)) });
    let node = Node::builder(service.clone()).serve(&conn, echo).await?;
    let client = Client::new(&conn);
    let to = Address::Any(service);
    let request = || {
        Request::encode(
            to.clone(),
            "Echo.say",
            ContentType::MsgPack,
            "a short request body",
        )
    };

    for _ in 0..200 {
        client.call(request()?).await?;
    }

    let mut times = Vec::with_capacity(SEQUENTIAL);
    for _ in 0..SEQUENTIAL {
        let start = Instant::now();
        client.call(request()?).await?;
        times.push(start.elapsed());
    }
    times.sort();
    let pct = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
    println!(
        "sequential: {SEQUENTIAL} calls, p50 {:?}, p90 {:?}, p99 {:?}",
        pct(50),
        pct(90),
        pct(99)
    );

    let start = Instant::now();
    let failures = stream::iter(0..CONCURRENT)
        .map(|_| {
            let client = client.clone();
            let req = request();
            async move { client.call(req?).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .filter(|r| std::future::ready(r.is_err()))
        .count()
        .await;
    let took = start.elapsed();
    println!(
        "{IN_FLIGHT} in flight: {CONCURRENT} calls in {took:?}, {:.0} calls/s, {failures} failed",
        CONCURRENT as f64 / took.as_secs_f64().max(f64::EPSILON)
    );

    node.shutdown().await;
    conn.close();
    Ok(())
}
