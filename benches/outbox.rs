//! Outbox benchmark: events through the transactional outbox (a domain row
//! and its event committed together, the relay publishing) against the
//! hand-written dual write (the domain row committed with plain sqlx, then
//! the event published and confirmed by the same `Publisher`), in one run,
//! on SQLite and, with `WARREN_DATABASE_URL`, on PostgreSQL.
//!
//! Run with: `cargo bench --features outbox --bench outbox` (broker from
//! `WARREN_AMQP_URL`; PostgreSQL from `WARREN_DATABASE_URL`, e.g.
//! `$(scripts/postgres start)`).
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `WARREN_BENCH_EVENTS` | events per run | `4000` |
//! | `WARREN_BENCH_WRITERS` | writer tasks (each its own ordering key) | `16` |
//! | `WARREN_BENCH_RATE` | events/s of the steady load | `500` |
//!
//! Two loads per store and way: as fast as the writers commit (events/s
//! from the first commit to the last event handled), and a steady load of
//! `WARREN_BENCH_RATE` events/s, whose commit-to-handler latency (p50,
//! p99) is the relay's lag.

use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tower::service_fn;
use warren::events::{Delivery, Publisher, Subscription};
use warren::outbox::{sqlx, Backend, Outbox, Postgres, Relay, Sqlite, Store, StoreOptions};
use warren::{Config, Connection, Error};

#[derive(Serialize, Deserialize, warren::Event)]
#[event(name = "bench.recorded", version = 1)]
struct Recorded {
    seq: u64,
    committed_ns: u64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The subscriber's tally: latencies, and a signal when all arrived.
struct Sink {
    expected: usize,
    latencies: Mutex<Vec<u64>>,
    done: Notify,
}

impl Sink {
    fn record(&self, committed_ns: u64) {
        let mut l = self.latencies.lock().unwrap();
        l.push(now_ns().saturating_sub(committed_ns));
        if l.len() == self.expected {
            self.done.notify_one();
        }
    }
}

struct Figures {
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0) as f64 / 1e6
}

/// Runs `writers` tasks committing `events` in all through `write`, and
/// waits until the subscriber has them all.
async fn measure<W, Fut>(
    conn: &Connection,
    exchange: &str,
    events: usize,
    writers: usize,
    rate: Option<f64>,
    write: W,
) -> Figures
where
    W: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let sink = Arc::new(Sink {
        expected: events,
        latencies: Mutex::new(Vec::with_capacity(events)),
        done: Notify::new(),
    });
    let service = format!("bench-outbox-{}", uuid_ish());
    let sub = Subscription::new(&service)
        .exchange(exchange)
        .on(service_fn({
            let sink = sink.clone();
            move |d: Delivery<Recorded>| {
                sink.record(d.payload.committed_ns);
                async { Ok::<_, Error>(()) }
            }
        }))
        .start(conn)
        .await
        .expect("subscribe");
    let start = Instant::now();
    let per_writer = events / writers;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let write = write.clone();
        tasks.push(tokio::spawn(async move {
            // At a steady rate, writer `w` commits at its own offset in
            // each period, so that the commits spread evenly.
            let period = rate.map(|r| Duration::from_secs_f64(writers as f64 / r));
            for i in 0..per_writer {
                if let Some(period) = period {
                    let at = period.mul_f64(i as f64 + w as f64 / writers as f64);
                    tokio::time::sleep_until((start + at).into()).await;
                }
                write(w, (w * per_writer + i) as u64).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(300), sink.done.notified())
        .await
        .expect("every event arrives");
    let elapsed = start.elapsed();
    sub.shutdown().await;
    let mut l = sink.latencies.lock().unwrap().clone();
    l.sort_unstable();
    Figures {
        per_s: events as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(&l, 0.5),
        p99_ms: percentile(&l, 0.99),
    }
}

fn uuid_ish() -> String {
    format!("{}-{}", std::process::id(), now_ns())
}

/// The outbox: the domain row and the event in one transaction; the relay
/// publishes.
async fn outbox<DB: Backend>(
    store: Store<DB>,
    conn: &Connection,
    exchange: &str,
    events: usize,
    writers: usize,
    rate: Option<f64>,
) -> Figures
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let relay = Relay::new(&store, Publisher::new(conn).exchange(exchange)).start();
    let out = Outbox::new(&store);
    let figures = measure(conn, exchange, events, writers, rate, move |w, seq| {
        let store = store.clone();
        let out = out.clone();
        async move {
            let mut tx = with_row(&store, seq).await;
            let event = Recorded {
                seq,
                committed_ns: now_ns(),
            };
            out.add_keyed(&mut tx, &format!("w{w}"), &event)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    })
    .await;
    relay.shutdown().await;
    figures
}

/// The hand-written dual write: commit the row, then publish and wait for
/// the confirm.
async fn dual_write<DB: Backend>(
    store: Store<DB>,
    conn: &Connection,
    exchange: &str,
    events: usize,
    writers: usize,
    rate: Option<f64>,
) -> Figures
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let publisher = Publisher::new(conn).exchange(exchange);
    measure(conn, exchange, events, writers, rate, move |_, seq| {
        let store = store.clone();
        let publisher = publisher.clone();
        async move {
            let tx = with_row(&store, seq).await;
            tx.commit().await.unwrap();
            let event = Recorded {
                seq,
                committed_ns: now_ns(),
            };
            publisher.publish(&event).await.unwrap();
        }
    })
    .await
}

/// A transaction that has inserted domain row `seq`.
async fn with_row<DB: Backend>(store: &Store<DB>, seq: u64) -> sqlx::Transaction<'static, DB>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query(insert_sql::<DB>())
        .bind(seq as i64)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

fn insert_sql<DB: Backend>() -> &'static str {
    if DB::NAME == "PostgreSQL" {
        "INSERT INTO bench_rows (seq) VALUES ($1)"
    } else {
        "INSERT INTO bench_rows (seq) VALUES (?)"
    }
}

async fn prepare<DB: Backend>(store: &Store<DB>)
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    sqlx::query("DROP TABLE IF EXISTS bench_rows")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("CREATE TABLE bench_rows (seq BIGINT NOT NULL)")
        .execute(store.pool())
        .await
        .unwrap();
}

fn print(store: &str, load: &str, outbox: &Figures, baseline: &Figures) {
    println!(
        "| {store} | {load} | outbox | {:.0} | {:.2} | {:.2} | {:.2}x |",
        outbox.per_s,
        outbox.p50_ms,
        outbox.p99_ms,
        outbox.per_s / baseline.per_s
    );
    println!(
        "| {store} | {load} | dual write (baseline) | {:.0} | {:.2} | {:.2} | 1.00x |",
        baseline.per_s, baseline.p50_ms, baseline.p99_ms
    );
}

/// Both ways on `store`, at full speed and at the steady rate.
async fn compare<DB: Backend>(
    name: &str,
    store: &Store<DB>,
    conn: &Connection,
    exchange: &str,
    events: usize,
    writers: usize,
    rate: f64,
) where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    prepare(store).await;
    let base = dual_write(store.clone(), conn, exchange, events, writers, None).await;
    let out = outbox(store.clone(), conn, exchange, events, writers, None).await;
    print(name, "full speed", &out, &base);
    // The steady load runs for about as long as the full-speed one did,
    // and at least 2 s.
    let steady = ((rate * 2.0) as usize).max(writers) / writers * writers;
    let base = dual_write(store.clone(), conn, exchange, steady, writers, Some(rate)).await;
    let out = outbox(store.clone(), conn, exchange, steady, writers, Some(rate)).await;
    print(name, &format!("{rate:.0}/s"), &out, &base);
}

#[tokio::main]
async fn main() {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let events = env("WARREN_BENCH_EVENTS", 4000);
    let writers = env("WARREN_BENCH_WRITERS", 16).max(1);
    let rate = env("WARREN_BENCH_RATE", 500).max(1) as f64;
    let events = (events / writers).max(1) * writers;
    let url = std::env::var("WARREN_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let conn = Connection::connect(Config::default().url(url).expect("a broker URL"))
        .await
        .expect("connect to the broker");
    let exchange = format!("bench-outbox-{}", uuid_ish());
    println!("{events} events from {writers} writers at full speed; {rate:.0} events/s steady");
    println!("| store | load | way | events/s | p50 ms | p99 ms | vs baseline |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let path = dir.join(format!("bench-outbox-{}.db", std::process::id()));
    let sqlite = Store::<Sqlite>::sqlite(&path.display().to_string())
        .await
        .expect("the SQLite store");
    compare("SQLite", &sqlite, &conn, &exchange, events, writers, rate).await;
    sqlite.pool().close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }

    if let Ok(db) = std::env::var("WARREN_DATABASE_URL") {
        let prefix = format!("bench{}_", std::process::id());
        let pg = Store::<Postgres>::open(&db, StoreOptions::new().table_prefix(&prefix))
            .await
            .expect("the PostgreSQL store");
        compare("PostgreSQL", &pg, &conn, &exchange, events, writers, rate).await;
        for t in ["outbox", "inbox", "migrations"] {
            let _ = sqlx::query(&format!("DROP TABLE IF EXISTS {prefix}{t}"))
                .execute(pg.pool())
                .await;
        }
        let _ = sqlx::query("DROP TABLE IF EXISTS bench_rows")
            .execute(pg.pool())
            .await;
    } else {
        println!("(PostgreSQL skipped: WARREN_DATABASE_URL is not set)");
    }
    conn.close();
}
