//! Cluster benchmark: calls/s and events/s on a three-node RabbitMQ cluster
//! with quorum queues against one node with classic queues, with the same
//! client settings, in one run. It starts both itself (`scripts/cluster`,
//! `scripts/broker`, on free ports) and stops them at the end.
//!
//! Run with: `cargo bench --profile dev --bench cluster`
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `WARREN_BENCH_SECONDS` | seconds of calls, then of events, per broker | `5` |
//!
//! Calls: 16 callers, each awaiting its reply before the next call, to
//! `any(type)` served by one node (its work queue: quorum on the cluster);
//! the caller on one cluster node, the serving node on another. Events: 16
//! publishers, each awaiting its confirm, to a subscription (prefetch 64)
//! whose `<service>.q` is quorum on the cluster; events/s counts events
//! handled, from the first publish to the last one handled.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::service_fn;
use warren::events::{Delivery, Publisher, QueueType, Subscription};
use warren::{
    Address, Client, Config, Connection, ContentType, Node, Request, Response, ServiceType,
    UrlOrder,
};

#[derive(serde::Serialize, serde::Deserialize, warren::Event)]
#[event(name = "bench.ticked", version = 1)]
struct Ticked {
    n: u64,
}

const CALLERS: usize = 16;

fn free_port(taken: &[u16]) -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p < 45_000
            && !taken.contains(&p)
            && std::net::TcpListener::bind(("127.0.0.1", p + 20_000)).is_ok()
        {
            return p;
        }
    }
}

fn script(name: &str, args: &[&str], env: (&str, String)) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/").to_owned() + name;
    let out = Command::new(path)
        .args(args)
        .env(env.0, env.1)
        .env_remove("WARREN_AMQP_URL")
        .output()
        .expect("run a broker script");
    assert!(
        out.status.success(),
        "scripts/{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn connect(urls: &[String], queue_type: QueueType, tag: &str) -> Connection {
    let cfg = Config::default()
        .urls(urls.iter().cloned())
        .unwrap()
        .url_order(UrlOrder::InOrder)
        .queue_type(queue_type)
        .exchange(format!("bench-cluster-{tag}"))
        .events_exchange(format!("bench-cluster-events-{tag}"));
    Connection::connect(cfg).await.expect("connect")
}

/// Calls/s and events/s through `calling` and `serving`.
async fn measure(calling: &Connection, serving: &Connection, tag: &str, secs: u64) -> (f64, f64) {
    let t = ServiceType::new(format!("bench-cluster-{tag}")).unwrap();
    let node = Node::builder(t.clone())
        .serve(
            serving,
            service_fn(|req: Request| async move { Ok(Response::ok(req.content_type, req.body)) }),
        )
        .await
        .unwrap();
    let client = Client::new(calling);
    let address = Address::Any(t);
    let until = Instant::now() + Duration::from_secs(secs);
    let calls = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (client, address, calls) = (client.clone(), address.clone(), calls.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    let req =
                        Request::encode(address.clone(), "Echo.say", ContentType::MsgPack, &"ping")
                            .unwrap()
                            .with_timeout(Duration::from_secs(10));
                    if client.call(req).await.is_ok() {
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let calls_per_s = calls.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    node.shutdown().await;

    let handled = Arc::new(AtomicU64::new(0));
    let sub = Subscription::new(format!("bench-cluster-{tag}"))
        .prefetch(64)
        .on(service_fn({
            let handled = handled.clone();
            move |_: Delivery<Ticked>| {
                handled.fetch_add(1, Ordering::Relaxed);
                async { Ok::<_, warren::Error>(()) }
            }
        }))
        .start(serving)
        .await
        .unwrap();
    let publisher = Publisher::new(calling);
    let published = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let tasks: Vec<_> = (0..CALLERS as u64)
        .map(|i| {
            let (publisher, published) = (publisher.clone(), published.clone());
            tokio::spawn(async move {
                let mut n = i << 32;
                while Instant::now() < until {
                    n += 1;
                    if publisher.publish(&Ticked { n }).await.is_ok() {
                        published.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let total = published.load(Ordering::Relaxed);
    while handled.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let events_per_s = total as f64 / start.elapsed().as_secs_f64();
    sub.shutdown().await;
    (calls_per_s, events_per_s)
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::var("WARREN_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let single = free_port(&[]);
    let mut ports = vec![single];
    for _ in 0..3 {
        ports.push(free_port(&ports));
    }
    let cluster_ports = ports[1..]
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let broker_env = ("WARREN_BROKER_PORT", single.to_string());
    let cluster_env = ("WARREN_CLUSTER_PORTS", cluster_ports);
    let one = script("broker", &["start"], broker_env.clone());
    let urls: Vec<String> = script("cluster", &["start"], cluster_env.clone())
        .split(',')
        .map(str::to_owned)
        .collect();

    let mut rows = Vec::new();
    {
        let calling = connect(std::slice::from_ref(&one), QueueType::Classic, "one").await;
        let serving = connect(std::slice::from_ref(&one), QueueType::Classic, "one").await;
        rows.push((
            "one node, classic queues",
            measure(&calling, &serving, "one", secs).await,
        ));
    }
    {
        let order =
            |a: usize, b: usize, c: usize| [urls[a].clone(), urls[b].clone(), urls[c].clone()];
        let calling = connect(&order(0, 1, 2), QueueType::Quorum, "three").await;
        let serving = connect(&order(1, 2, 0), QueueType::Quorum, "three").await;
        rows.push((
            "three nodes, quorum queues",
            measure(&calling, &serving, "three", secs).await,
        ));
    }
    script("broker", &["stop"], broker_env);
    script("cluster", &["stop"], cluster_env);
    for dir in [
        format!("broker/{}", ports[0]),
        format!("cluster/{}", ports[1]),
    ] {
        let _ = std::fs::remove_dir_all(
            concat!(env!("CARGO_MANIFEST_DIR"), "/target/").to_owned() + &dir,
        );
    }

    println!("| broker | calls/s ({CALLERS} callers) | events/s ({CALLERS} publishers) |");
    println!("| --- | --- | --- |");
    for (name, (calls, events)) in rows {
        println!("| {name} | {calls:.0} | {events:.0} |");
    }
}
