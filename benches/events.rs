//! Events benchmark: warren's `Publisher` and `Subscription` against a
//! hand-written lapin publisher and consumer, over a real RabbitMQ, in one
//! run, alternating round by round.
//!
//! Run with: `cargo bench --bench events` (broker from `WARREN_AMQP_URL`,
//! default `amqp://guest:guest@127.0.0.1:5672/%2f`).
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `WARREN_BENCH_EVENTS` | events per run with 64 in flight (a sixth of it with 1) | `12000` |
//! | `WARREN_BENCH_ROUNDS` | rounds per setting and implementation | `3` |
//!
//! Each run publishes events with publisher confirms, persistent, on a
//! durable topic exchange, from 1 or 64 tasks each awaiting its confirm
//! before the next publish, and one subscriber (prefetch 64) decodes each
//! JSON envelope, notes the publish-to-handler latency and acks. Reported:
//! events/s (first publish to last event handled), p50 latency, and CPU
//! (user + system of this process, both sides) per 1,000 events; the median
//! over rounds, and warren's ratio to the baseline.

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tower::service_fn;
use warren::events::{Delivery, Publisher, Subscription};

#[derive(Serialize, Deserialize, warren::Event)]
#[event(name = "bench.happened", version = 1)]
struct Happened {
    seq: u64,
    sent_ns: u64,
    note: String,
}

/// The baseline's envelope: the same fields warren writes.
#[derive(Serialize, Deserialize)]
struct Envelope<P> {
    #[serde(rename = "eventId")]
    event_id: String,
    version: u32,
    #[serde(rename = "eventType")]
    event_type: String,
    timestamp: String,
    payload: P,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// What the consumer side records.
struct Sink {
    latencies: Mutex<Vec<u64>>,
    expected: usize,
    done: Notify,
}

impl Sink {
    fn new(expected: usize) -> Arc<Self> {
        Arc::new(Self {
            latencies: Mutex::new(Vec::with_capacity(expected)),
            expected,
            done: Notify::new(),
        })
    }

    fn record(&self, sent_ns: u64) {
        let mut l = self.latencies.lock().unwrap();
        l.push(now_ns().saturating_sub(sent_ns));
        if l.len() == self.expected {
            self.done.notify_one();
        }
    }
}

struct Figures {
    per_second: f64,
    p50_ms: f64,
    cpu_ms_per_1000: f64,
}

fn happened(seq: u64) -> Happened {
    Happened {
        seq,
        sent_ns: now_ns(),
        note: "a ticket was created in unit 4B".into(),
    }
}

async fn measure<F, Fut>(events: usize, in_flight: usize, sink: Arc<Sink>, publish: F) -> Figures
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let cpu = cpu_seconds();
    let start = Instant::now();
    let per_task = events / in_flight;
    let mut tasks = Vec::new();
    for t in 0..in_flight {
        let publish = publish.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_task {
                publish((t * per_task + i) as u64).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let waited = tokio::time::timeout(Duration::from_secs(120), sink.done.notified()).await;
    assert!(
        waited.is_ok() || sink.latencies.lock().unwrap().len() == sink.expected,
        "events lost"
    );
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    let mut l = sink.latencies.lock().unwrap().clone();
    l.sort_unstable();
    Figures {
        per_second: events as f64 / elapsed,
        p50_ms: l[l.len() / 2] as f64 / 1e6,
        cpu_ms_per_1000: cpu * 1000.0 / (events as f64 / 1000.0),
    }
}

async fn run_warren(url: &str, events: usize, in_flight: usize, round: usize) -> Figures {
    let exchange = format!(
        "bench.events.warren.{}.{round}.{in_flight}",
        std::process::id()
    );
    let config = warren::Config::default()
        .url(url)
        .unwrap()
        .events_exchange(exchange);
    let conn = warren::Connection::connect(config).await.unwrap();
    let sink = Sink::new(events);
    let s = sink.clone();
    let service = format!("bench-warren-{}", std::process::id());
    let sub = Subscription::new(&service)
        .on(service_fn(move |d: Delivery<Happened>| {
            s.record(d.payload.sent_ns);
            async { Ok::<_, warren::Error>(()) }
        }))
        .prefetch(64)
        .start(&conn)
        .await
        .unwrap();
    let publisher = Publisher::new(&conn);
    let figures = measure(events, in_flight, sink, move |seq| {
        let publisher = publisher.clone();
        async move {
            publisher.publish(&happened(seq)).await.unwrap();
        }
    })
    .await;
    sub.shutdown().await;
    cleanup(url, &service).await;
    conn.close();
    figures
}

async fn cleanup(url: &str, service: &str) {
    let conn = lapin::Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut queues = vec![format!("{service}.q"), format!("{service}.dlq")];
    for d in ["1s", "2s", "4s", "8s"] {
        queues.push(format!("{service}.retry.{d}"));
    }
    for q in queues {
        let _ = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "done".into()).await;
}

async fn run_lapin(url: &str, events: usize, in_flight: usize, round: usize) -> Figures {
    let exchange = format!(
        "bench.events.lapin.{}.{round}.{in_flight}",
        std::process::id()
    );
    let queue = format!("bench-lapin-{}.q", std::process::id());
    let conn = lapin::Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let publish_ch = conn.create_channel().await.unwrap();
    publish_ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    publish_ch
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .unwrap();
    let consume_ch = conn.create_channel().await.unwrap();
    consume_ch
        .basic_qos(64, BasicQosOptions::default())
        .await
        .unwrap();
    let durable_q = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    consume_ch
        .queue_declare(queue.as_str().into(), durable_q, FieldTable::default())
        .await
        .unwrap();
    consume_ch
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "bench.happened".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut consumer = consume_ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let sink = Sink::new(events);
    let s = sink.clone();
    let ch = consume_ch.clone();
    let consuming = tokio::spawn(async move {
        while let Some(Ok(d)) = consumer.next().await {
            let (s, ch) = (s.clone(), ch.clone());
            tokio::spawn(async move {
                let env: Envelope<Happened> = serde_json::from_slice(&d.data).unwrap();
                s.record(env.payload.sent_ns);
                ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
                    .await
                    .unwrap();
            });
        }
    });
    let exchange = Arc::new(exchange);
    let figures = measure(events, in_flight, sink, move |seq| {
        let (ch, exchange) = (publish_ch.clone(), exchange.clone());
        async move {
            let id = uuid::Uuid::new_v4().to_string();
            let env = Envelope {
                event_id: id.clone(),
                version: 1,
                event_type: "bench.happened".into(),
                timestamp: "2026-01-01T00:00:00.000Z".into(),
                payload: happened(seq),
            };
            let body = serde_json::to_vec(&env).unwrap();
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let props = BasicProperties::default()
                .with_message_id(id.as_str().into())
                .with_type("bench.happened".into())
                .with_timestamp(secs)
                .with_content_type("application/json".into())
                .with_delivery_mode(2);
            ch.basic_publish(
                exchange.as_str().into(),
                "bench.happened".into(),
                BasicPublishOptions::default(),
                &body,
                props,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
    })
    .await;
    consuming.abort();
    let _ = consume_ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = conn.close(200, "done".into()).await;
    figures
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "events bench: not running the benchmark (run it with `cargo bench --bench events`)"
        );
        return;
    }
    let url = std::env::var("WARREN_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let events = env("WARREN_BENCH_EVENTS", 12_000).max(64);
    let rounds = env("WARREN_BENCH_ROUNDS", 3).max(1);
    epoch();
    println!("| in flight | impl | events/s | p50 latency ms | CPU ms / 1000 events |");
    println!("| --- | --- | --- | --- | --- |");
    for in_flight in [1, 64] {
        let n = if in_flight == 1 {
            events / 6
        } else {
            events / 64 * 64
        };
        let mut lapin = Vec::new();
        let mut warren = Vec::new();
        for round in 0..rounds {
            lapin.push(run_lapin(&url, n, in_flight, round).await);
            warren.push(run_warren(&url, n, in_flight, round).await);
        }
        let med = |f: &[Figures], g: fn(&Figures) -> f64| median(f.iter().map(g).collect());
        let rows = [("lapin", &lapin), ("warren", &warren)];
        for (name, figures) in rows {
            println!(
                "| {in_flight} | {name} | {:.0} | {:.2} | {:.0} |",
                med(figures, |f| f.per_second),
                med(figures, |f| f.p50_ms),
                med(figures, |f| f.cpu_ms_per_1000),
            );
        }
        println!(
            "| {in_flight} | warren / lapin | {:.2}x | {:.2}x | {:.2}x |",
            med(&warren, |f| f.per_second) / med(&lapin, |f| f.per_second),
            med(&warren, |f| f.p50_ms) / med(&lapin, |f| f.p50_ms),
            med(&warren, |f| f.cpu_ms_per_1000) / med(&lapin, |f| f.cpu_ms_per_1000),
        );
    }
}
