//! The transactional outbox and inbox against a real broker, a real SQLite
//! file and a real PostgreSQL (`WARREN_DATABASE_URL`; `scripts/test`
//! starts one with `scripts/postgres`): a rolled-back event is never
//! published; committed ones are published once, in order per key; events
//! committed while the broker is down arrive once it is back; events
//! committed by a process killed before its relay ran are published by the
//! next relay; a relay killed between publishing and marking sent leaves
//! its events to the next, deduplicated by the inbox; two relays on one
//! PostgreSQL database publish each event once, in order per key; the inbox
//! skips an event published again.
//!
//! The killed process is this test binary run again as a child, running
//! only the ignored test `child_commits`. The broker-outage test runs its
//! own broker node, so the shared one is never disturbed.
mod support;

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::broker::PrivateBroker;
use tower::service_fn;
use warren::events::{Delivery, Publisher, Subscriber, Subscription};
use warren::outbox::{
    sqlx, Backend, Outbox, Postgres, Relay, Sqlite, Store, StoreOptions, TxInbox,
};
use warren::{Address, Connection, Error, Request, Response};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, warren::Event)]
#[event(name = "ticket.changed", version = 1)]
struct TicketChanged {
    ticket: String,
    seq: u32,
}

/// What a subscriber received: each event's (ticket, seq) and eventId, in
/// arrival order.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, u32, String)>>>);

impl Received {
    fn all(&self) -> Vec<(String, u32, String)> {
        self.0.lock().unwrap().clone()
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    async fn until(&self, what: &str, within: Duration, done: impl Fn(usize) -> bool) {
        let start = Instant::now();
        while !done(self.len()) {
            assert!(
                start.elapsed() < within,
                "{what}: still waiting; received {:?}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Checks that every (ticket, seq) of `expected` arrived exactly once,
    /// and each ticket's in order.
    fn assert_once_in_order(&self, expected: &BTreeMap<String, u32>) {
        let all = self.all();
        let mut last: HashMap<&str, u32> = HashMap::new();
        for (ticket, seq, _) in &all {
            let prev = last.insert(ticket, *seq);
            assert_eq!(
                prev.map_or(1, |p| p + 1),
                *seq,
                "ticket {ticket}: {seq} after {prev:?}; all: {all:?}"
            );
        }
        let counted: BTreeMap<String, u32> =
            last.into_iter().map(|(t, s)| (t.to_owned(), s)).collect();
        assert_eq!(&counted, expected, "the last seq of each ticket");
        let total: u32 = expected.values().sum();
        assert_eq!(all.len(), total as usize, "each event once: {all:?}");
    }
}

/// A subscriber of `ticket.changed` on `conn` recording into `received`,
/// one handler at a time, so that it records the queue's order.
async fn subscribe(conn: &Connection, service: &str, received: &Received) -> Subscriber {
    let received = received.clone();
    Subscription::new(service)
        .concurrency(1)
        .on(service_fn(move |d: Delivery<TicketChanged>| {
            received
                .0
                .lock()
                .unwrap()
                .push((d.payload.ticket, d.payload.seq, d.meta.id));
            async { Ok::<_, Error>(()) }
        }))
        .start(conn)
        .await
        .expect("the subscription starts")
}

/// A SQLite database file of the test's own.
fn sqlite_url(name: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("outbox");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.db", support::unique(name)));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    format!("sqlite:{}", path.display())
}

/// The PostgreSQL server of the tests. Not set is a failure, not a skip:
/// `scripts/test` always provides one.
fn database_url() -> String {
    std::env::var("WARREN_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "WARREN_DATABASE_URL is not set: these tests need PostgreSQL. Run scripts/test, \
             or `scripts/postgres start` and export WARREN_DATABASE_URL=$(scripts/postgres url)"
        )
    })
}

/// Table names no other test uses.
fn prefix() -> String {
    support::unique("t").replace('-', "_") + "_"
}

async fn postgres_store() -> Store<Postgres> {
    Store::open(&database_url(), StoreOptions::new().table_prefix(prefix()))
        .await
        .expect("the PostgreSQL store opens")
}

/// Commits `seqs` of `ticket` in one transaction each.
async fn commit<DB: Backend>(store: &Store<DB>, ticket: &str, seqs: std::ops::RangeInclusive<u32>) {
    let outbox = Outbox::new(store);
    for seq in seqs {
        let mut tx = store.pool().begin().await.unwrap();
        outbox
            .add_keyed(
                &mut tx,
                ticket,
                &TicketChanged {
                    ticket: ticket.into(),
                    seq,
                },
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
}

/// Commits `n` events of `ticket` (seq 1..=n), `per_tx` to a transaction.
async fn commit_batches<DB: Backend>(store: &Store<DB>, ticket: &str, n: u32, per_tx: u32) {
    let outbox = Outbox::new(store);
    let mut seq = 1;
    while seq <= n {
        let mut tx = store.pool().begin().await.unwrap();
        for _ in 0..per_tx.min(n - seq + 1) {
            let event = TicketChanged {
                ticket: ticket.into(),
                seq,
            };
            outbox.add_keyed(&mut tx, ticket, &event).await.unwrap();
            seq += 1;
        }
        tx.commit().await.unwrap();
    }
}

/// A broker node of the test's own (to stop and start), and a connection
/// to it that reconnects within a second of its return.
async fn own_broker() -> (PrivateBroker, Connection) {
    let broker = PrivateBroker::new();
    broker.start().await;
    let cfg = support::recovering_config(&broker.url())
        .events_exchange(support::unique("events"))
        .default_timeout(Duration::from_secs(2));
    let conn = support::connect(cfg).await;
    (broker, conn)
}

/// Events of each of the four keys committed while the broker is down.
const PER_KEY_DOWN: u32 = 2_500;

/// Runs `child_commits` on the SQLite file `url` (5 events; uncommitted
/// when `uncommitted` names the line it prints then) and kills it with
/// SIGKILL once it said so: no clean shutdown, nothing flushed after.
async fn kill_child_after(url: &str, uncommitted: Option<&str>) {
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args(["--ignored", "--exact", "child_commits", "--nocapture"])
        .env("OUTBOX_CHILD_DB", url)
        .env("OUTBOX_CHILD_EVENTS", "5")
        .stdout(Stdio::piped())
        .stdin(Stdio::null());
    if uncommitted.is_some() {
        child.env("OUTBOX_CHILD_UNCOMMITTED", "1");
    }
    let mut child = child.spawn().expect("run the child");
    let stdout = child.stdout.take().unwrap();
    let line = uncommitted.unwrap_or("committed").to_owned();
    let said = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l == line)
    });
    let said = tokio::time::timeout(Duration::from_secs(30), said)
        .await
        .expect("the child gets there within 30 s")
        .unwrap();
    assert!(said, "the child ended before it got there");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A rolled-back event is never published; committed ones once each, in
/// order per key.
async fn rolled_back_never_committed_once<DB: Backend>(store: &Store<DB>) {
    let exchange = support::unique("events");
    let conn = support::connect(support::config().events_exchange(&exchange)).await;
    let received = Received::default();
    let sub = subscribe(&conn, &support::unique("tickets"), &received).await;
    let relay = Relay::new(store, Publisher::new(&conn)).start();
    let outbox = Outbox::new(store);

    let mut tx = store.pool().begin().await.unwrap();
    let ghost = TicketChanged {
        ticket: "ghost".into(),
        seq: 1,
    };
    outbox.add_keyed(&mut tx, "ghost", &ghost).await.unwrap();
    tx.rollback().await.unwrap();

    // Two keys interleaved, several events per transaction for one of them.
    let mut tx = store.pool().begin().await.unwrap();
    for seq in 1..=3 {
        let e = TicketChanged {
            ticket: "a".into(),
            seq,
        };
        outbox.add_keyed(&mut tx, "a", &e).await.unwrap();
    }
    tx.commit().await.unwrap();
    commit(store, "b", 1..=5).await;
    commit(store, "a", 4..=6).await;

    received
        .until("the committed events", Duration::from_secs(30), |n| n >= 11)
        .await;
    let mut status = relay.watch();
    tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| s.published >= 11),
    )
    .await
    .expect("the relay marks what it published")
    .unwrap();
    // Settle: anything published twice, or the rolled-back event, would
    // arrive by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    received.assert_once_in_order(&BTreeMap::from([("a".into(), 6), ("b".into(), 5)]));
    assert_eq!(store.pending().await.unwrap(), 0);
    assert_eq!(relay.status().published, 11);
    relay.shutdown().await;
    sub.shutdown().await;
}

#[tokio::test]
async fn sqlite_rolled_back_events_are_never_published_committed_ones_once_in_order() {
    let store = Store::<Sqlite>::sqlite(&sqlite_url("order")).await.unwrap();
    rolled_back_never_committed_once(&store).await;
}

#[tokio::test]
async fn postgres_rolled_back_events_are_never_published_committed_ones_once_in_order() {
    rolled_back_never_committed_once(&postgres_store().await).await;
}

/// A request as the server saw it: method, body, message id.
type Got = (String, serde_json::Value, Option<String>);

/// One-way requests in the outbox: sent once the transaction commits,
/// with the message id `send` returned, in commit order per key; a
/// rolled-back one never.
async fn one_way_requests_are_sent_after_commit<DB: Backend>(store: &Store<DB>) {
    let conn = support::connect(support::config()).await;
    let service = support::service_type("mailer");
    let got: Arc<Mutex<Vec<Got>>> = Arc::default();
    let node = warren::Node::builder(service.clone())
        .concurrency(1)
        .serve(
            &conn,
            service_fn({
                let got = got.clone();
                move |req: Request| {
                    let body = serde_json::from_slice(&req.body).unwrap();
                    got.lock()
                        .unwrap()
                        .push((req.method.clone(), body, req.message_id.clone()));
                    async move { Ok::<_, Error>(Response::ok(req.content_type, Vec::new())) }
                }
            }),
        )
        .await
        .unwrap();
    let relay = Relay::new(store, Publisher::new(&conn)).start();
    let outbox = Outbox::new(store);
    let to = Address::any(service.as_str()).unwrap();

    let mut tx = store.pool().begin().await.unwrap();
    outbox
        .send(
            &mut tx,
            "m",
            &to,
            "Mailer.send",
            &serde_json::json!({"n": 99}),
        )
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let mut ids = Vec::new();
    for n in 1..=3 {
        let mut tx = store.pool().begin().await.unwrap();
        let id = outbox
            .send(
                &mut tx,
                "m",
                &to,
                "Mailer.send",
                &serde_json::json!({"n": n}),
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();
        ids.push(id);
    }
    // A bad method name is refused before the commit.
    let mut tx = store.pool().begin().await.unwrap();
    let bad = outbox
        .send(&mut tx, "m", &to, "bad method", &serde_json::json!({}))
        .await;
    assert!(matches!(bad, Err(Error::Name(_))), "{bad:?}");
    tx.rollback().await.unwrap();

    tokio::time::timeout(Duration::from_secs(30), async {
        while got.lock().unwrap().len() < 3 || store.pending().await.unwrap() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the requests arrive");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = got.lock().unwrap().clone();
    let expected: Vec<_> = (1..=3)
        .zip(&ids)
        .map(|(n, id)| {
            (
                "Mailer.send".to_owned(),
                serde_json::json!({ "n": n }),
                Some(id.clone()),
            )
        })
        .collect();
    assert_eq!(got, expected, "each committed request once, in order");
    relay.shutdown().await;
    node.shutdown().await;
}

#[tokio::test]
async fn sqlite_one_way_requests_are_sent_after_commit() {
    let store = Store::<Sqlite>::sqlite(&sqlite_url("sends")).await.unwrap();
    one_way_requests_are_sent_after_commit(&store).await;
}

#[tokio::test]
async fn postgres_one_way_requests_are_sent_after_commit() {
    one_way_requests_are_sent_after_commit(&postgres_store().await).await;
}

/// A database made by the first schema, holding an event added then, is
/// upgraded when a store opens it, and its event is published.
async fn an_old_schema_is_upgraded_and_its_events_published<DB: Backend>(
    store: &Store<DB>,
    reopen: impl std::future::Future<Output = Store<DB>>,
    prefix: &str,
) where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    // Back to schema 1: migration 2's columns and table gone, its record
    // too, and an event row as schema 1 wrote it.
    for sql in [
        format!("ALTER TABLE {prefix}outbox DROP COLUMN address"),
        format!("ALTER TABLE {prefix}outbox DROP COLUMN traceparent"),
        format!("DROP TABLE {prefix}lease"),
        format!("DELETE FROM {prefix}migrations WHERE version = 2"),
        format!(
            "INSERT INTO {prefix}outbox (event_id, ordering_key, event_type, version, payload, created_ms) \
             VALUES ('old-1', 'old', 'ticket.changed', 1, '{{\"ticket\":\"old\",\"seq\":1}}', 0)"
        ),
    ] {
        sqlx::query(&sql).execute(store.pool()).await.unwrap();
    }
    let store = reopen.await;
    let exchange = support::unique("events");
    let conn = support::connect(support::config().events_exchange(&exchange)).await;
    let received = Received::default();
    let sub = subscribe(&conn, &support::unique("tickets"), &received).await;
    let relay = Relay::new(&store, Publisher::new(&conn)).start();
    commit(&store, "new", 1..=1).await;
    received
        .until("the old and the new event", Duration::from_secs(30), |n| {
            n >= 2
        })
        .await;
    received.assert_once_in_order(&BTreeMap::from([("old".into(), 1), ("new".into(), 1)]));
    assert_eq!(received.all()[0].2, "old-1", "the old row's eventId");
    relay.shutdown().await;
    sub.shutdown().await;
}

#[tokio::test]
async fn sqlite_an_old_schema_is_upgraded_and_its_events_published() {
    let url = sqlite_url("upgrade");
    let store = Store::<Sqlite>::sqlite(&url).await.unwrap();
    let reopen = async { Store::<Sqlite>::sqlite(&url).await.unwrap() };
    an_old_schema_is_upgraded_and_its_events_published(&store, reopen, "warren_").await;
}

#[tokio::test]
async fn postgres_an_old_schema_is_upgraded_and_its_events_published() {
    let (p, db) = (prefix(), database_url());
    let open = || Store::<Postgres>::open(&db, StoreOptions::new().table_prefix(&p));
    let store = open().await.unwrap();
    let reopen = async { open().await.unwrap() };
    an_old_schema_is_upgraded_and_its_events_published(&store, reopen, &p).await;
}

#[tokio::test]
async fn a_newer_schema_is_refused_with_a_typed_error() {
    let url = sqlite_url("schema");
    let store = Store::<Sqlite>::sqlite(&url).await.unwrap();
    sqlx::query("INSERT INTO warren_migrations (version, applied_ms) VALUES (99, 0)")
        .execute(store.pool())
        .await
        .unwrap();
    match Store::<Sqlite>::sqlite(&url).await {
        Err(Error::SchemaMismatch { found: 99, .. }) => {}
        other => panic!("expected SchemaMismatch, got {other:?}"),
    }
    let bad = Store::<Sqlite>::open(&url, StoreOptions::new().table_prefix("Bad-Prefix")).await;
    assert!(matches!(bad, Err(Error::Config(_))), "{bad:?}");
}

#[tokio::test]
async fn an_unreachable_database_is_a_typed_error() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let err = Store::<Postgres>::postgres(&url).await.unwrap_err();
    assert!(matches!(err, Error::Database { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_committed_while_the_broker_is_down_arrive_once_it_is_back() {
    let (broker, conn) = own_broker().await;
    let received = Received::default();
    let sub = subscribe(&conn, &support::unique("tickets"), &received).await;
    let store = Store::<Sqlite>::sqlite(&sqlite_url("outage"))
        .await
        .unwrap();
    let relay = Relay::new(&store, Publisher::new(&conn))
        .backoff(
            warren::Backoff::default()
                .initial(Duration::from_millis(50))
                .max(Duration::from_millis(500))
                .max_attempts(None),
        )
        .start();

    broker.stop();
    // Each commit returns at once: the event waits in the database.
    let keys = ["a", "b", "c", "d"];
    for key in keys {
        commit_batches(&store, key, PER_KEY_DOWN, 50).await;
    }
    let total = PER_KEY_DOWN as usize * keys.len();
    assert_eq!(store.pending().await.unwrap(), total as u64);
    let mut status = relay.watch();
    tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| s.failures > 0 && s.last_error.is_some()),
    )
    .await
    .expect("the relay reports that it cannot publish")
    .unwrap();
    assert_eq!(
        relay.pending().await.unwrap(),
        total as u64,
        "nothing published while down"
    );

    broker.start().await;
    received
        .until(
            "the events after the restart",
            Duration::from_secs(120),
            |n| n >= total,
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    received.assert_once_in_order(&keys.map(|k| (k.into(), PER_KEY_DOWN)).into());
    assert_eq!(relay.pending().await.unwrap(), 0);
    assert_eq!(relay.status().failures, 0);
    relay.shutdown().await;
    sub.shutdown().await;
    drop(broker);
}

/// The child process of
/// [`events_committed_by_a_killed_process_are_published_by_the_next_relay`]:
/// commits `OUTBOX_CHILD_EVENTS` events to `OUTBOX_CHILD_DB` (no relay),
/// says `committed`, and waits to be killed.
#[tokio::test]
#[ignore = "run as a child process by another test"]
async fn child_commits() {
    let Ok(url) = std::env::var("OUTBOX_CHILD_DB") else {
        return;
    };
    let n: u32 = std::env::var("OUTBOX_CHILD_EVENTS")
        .unwrap()
        .parse()
        .unwrap();
    let store = Store::<Sqlite>::sqlite(&url).await.unwrap();
    if std::env::var_os("OUTBOX_CHILD_UNCOMMITTED").is_some() {
        // Added, never committed: the process dies first.
        let outbox = Outbox::new(&store);
        let mut tx = store.pool().begin().await.unwrap();
        for seq in 1..=n {
            let event = TicketChanged {
                ticket: "u".into(),
                seq,
            };
            outbox.add_keyed(&mut tx, "u", &event).await.unwrap();
        }
        println!("added");
        std::future::pending::<()>().await;
    }
    commit(&store, "k", 1..=n).await;
    println!("committed");
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn events_committed_by_a_killed_process_are_published_by_the_next_relay() {
    let url = sqlite_url("killed");
    // Killed before its commit: its events never existed.
    kill_child_after(&url, Some("added")).await;
    // Killed after its commit, before any relay ran.
    kill_child_after(&url, None).await;

    let exchange = support::unique("events");
    let conn = support::connect(support::config().events_exchange(&exchange)).await;
    let received = Received::default();
    let sub = subscribe(&conn, &support::unique("tickets"), &received).await;
    let store = Store::<Sqlite>::sqlite(&url).await.unwrap();
    assert_eq!(store.pending().await.unwrap(), 5);
    let relay = Relay::new(&store, Publisher::new(&conn)).start();
    received
        .until(
            "the killed process's events",
            Duration::from_secs(30),
            |n| n >= 5,
        )
        .await;
    received.assert_once_in_order(&BTreeMap::from([("k".into(), 5)]));
    relay.shutdown().await;
    sub.shutdown().await;
}

/// Runs a relay for the PostgreSQL outbox `OUTBOX_CHILD_PREFIX` on the
/// events exchange `OUTBOX_CHILD_EXCHANGE`, until killed.
#[tokio::test]
#[ignore = "run as a child process by another test"]
async fn child_relays() {
    let (Ok(prefix), Ok(exchange)) = (
        std::env::var("OUTBOX_CHILD_PREFIX"),
        std::env::var("OUTBOX_CHILD_EXCHANGE"),
    ) else {
        return;
    };
    let store = Store::<Postgres>::open(
        &database_url(),
        StoreOptions::new().table_prefix(prefix).migrate(false),
    )
    .await
    .unwrap();
    let conn = support::connect(support::config().events_exchange(&exchange)).await;
    let _relay = Relay::new(&store, Publisher::new(&conn)).start();
    println!("relaying");
    std::future::pending::<()>().await;
}

/// A relay process killed after the broker confirmed its events and before
/// it marked them sent: the next relay publishes them again, with the same
/// eventIds, and the inbox runs the handler once for each.
///
/// The test holds a `SHARE` lock on the outbox table: the child relay can
/// lock and read the rows and publish them, but its `UPDATE` marking them
/// sent waits for the lock; the test kills it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_between_publishing_and_marking_sent_publishes_again_deduplicated() {
    let p = prefix();
    let store = Store::<Postgres>::open(&database_url(), StoreOptions::new().table_prefix(&p))
        .await
        .unwrap();
    let exchange = support::unique("events");
    let conn = support::connect(support::config().events_exchange(&exchange)).await;
    let (sub, handled) = inbox_subscriber(&store, &conn, &format!("{p}handled")).await;
    let seen = Received::default();
    let raw = subscribe(&conn, &support::unique("raw"), &seen).await;
    commit(&store, "k", 1..=5).await;

    let mut lock = store.pool().begin().await.unwrap();
    sqlx::query(&format!("LOCK TABLE {p}outbox IN SHARE MODE"))
        .execute(&mut *lock)
        .await
        .unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_relays", "--nocapture"])
        .env("OUTBOX_CHILD_PREFIX", &p)
        .env("OUTBOX_CHILD_EXCHANGE", &exchange)
        .stdout(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .expect("run the child");
    // Published and confirmed: the subscriber has them.
    seen.until("the child's events", Duration::from_secs(60), |n| n >= 5)
        .await;
    // Not marked: the child's UPDATE waits for the test's lock.
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_locks WHERE NOT granted AND relation = $1::regclass",
            )
            .bind(format!("{p}outbox"))
            .fetch_one(store.pool())
            .await
            .unwrap();
            if waiting > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the child marks the rows sent only after the lock");
    assert_eq!(store.pending().await.unwrap(), 5, "none marked sent");
    child.kill().unwrap();
    child.wait().unwrap();
    lock.rollback().await.unwrap();
    // The killed relay's transaction ends with its connection: the rows
    // are still pending.
    let pending = async {
        while store.pending().await.unwrap() != 5 || locked(&store, &p).await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .expect("the killed relay's rows are pending and free");

    let relay = Relay::new(&store, Publisher::new(&conn)).start();
    seen.until("published again", Duration::from_secs(30), |n| n >= 10)
        .await;
    tokio::time::timeout(Duration::from_secs(30), async {
        while store.pending().await.unwrap() != 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the second relay marks them sent");
    // Each eventId arrived twice; the inbox ran the handler once for each.
    let all = seen.all();
    let ids: BTreeMap<&str, usize> = all.iter().fold(BTreeMap::new(), |mut m, (_, _, id)| {
        *m.entry(id.as_str()).or_default() += 1;
        m
    });
    assert_eq!(ids.len(), 5, "{all:?}");
    assert!(ids.values().all(|&n| n == 2), "each event twice: {all:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    handled.assert_once_in_order(&BTreeMap::from([("k".into(), 5)]));
    let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {p}handled"))
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 5, "the handler's writes committed once per event");
    relay.shutdown().await;
    sub.shutdown().await;
    raw.shutdown().await;
}

/// Two relays on one SQLite file: one publishes at a time (the lease), so
/// each event once and in order; when it shuts down the other takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_one_sqlite_file_take_turns() {
    let store = Store::<Sqlite>::sqlite(&sqlite_url("turns")).await.unwrap();
    let exchange = support::unique("events");
    let conn = support::connect(support::config().events_exchange(&exchange)).await;
    let received = Received::default();
    let sub = subscribe(&conn, &support::unique("tickets"), &received).await;
    let relays = [
        Relay::new(&store, Publisher::new(&conn)).start(),
        Relay::new(&store, Publisher::new(&conn)).start(),
    ];
    let writers: Vec<_> = ["a", "b", "c", "d"]
        .into_iter()
        .map(|key| {
            let store = store.clone();
            tokio::spawn(async move { commit(&store, key, 1..=25).await })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    received
        .until("the first half", Duration::from_secs(30), |n| n >= 100)
        .await;
    let published = relays.each_ref().map(|r| r.status().published);
    assert!(
        published.contains(&0) && published.contains(&100),
        "one relay published them all: {published:?}"
    );
    let [first, second] = relays;
    let (active, standby) = if published[0] == 100 {
        (first, second)
    } else {
        (second, first)
    };
    active.shutdown().await;
    for key in ["a", "b", "c", "d"] {
        commit(&store, key, 26..=50).await;
    }
    received
        .until("the second half", Duration::from_secs(30), |n| n >= 200)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    received.assert_once_in_order(&["a", "b", "c", "d"].map(|k| (k.into(), 50)).into());
    assert_eq!(standby.status().published, 100, "the other took over");
    standby.shutdown().await;
    sub.shutdown().await;
}

/// Whether a backend still holds a lock on the outbox table.
async fn locked(store: &Store<Postgres>, prefix: &str) -> bool {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_locks WHERE relation = $1::regclass AND pid <> pg_backend_pid()",
    )
    .bind(format!("{prefix}outbox"))
    .fetch_one(store.pool())
    .await
    .unwrap();
    n > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_relays_on_one_postgres_database_publish_each_event_once_in_order() {
    let exchange = support::unique("events");
    let conn = support::connect(support::config().events_exchange(&exchange)).await;
    let received = Received::default();
    let sub = subscribe(&conn, &support::unique("tickets"), &received).await;
    let options = StoreOptions::new().table_prefix(prefix());
    // Two stores (two pools), as two processes would have.
    let one = Store::<Postgres>::open(&database_url(), options.clone())
        .await
        .unwrap();
    let two = Store::<Postgres>::open(&database_url(), options)
        .await
        .unwrap();
    let relays = [
        Relay::new(&one, Publisher::new(&conn)).batch(16).start(),
        Relay::new(&two, Publisher::new(&conn)).batch(16).start(),
    ];
    let tickets: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
    // Writers on both stores while the relays run.
    let mut writers = Vec::new();
    for (i, ticket) in tickets.iter().enumerate() {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        let ticket = ticket.clone();
        writers.push(tokio::spawn(async move {
            commit(&store, &ticket, 1..=50).await;
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    received
        .until("400 events", Duration::from_secs(60), |n| n >= 400)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let expected: BTreeMap<String, u32> = tickets.iter().map(|t| (t.clone(), 50)).collect();
    received.assert_once_in_order(&expected);
    let published: u64 = relays.iter().map(|r| r.status().published).sum();
    assert_eq!(
        published, 400,
        "the relays together published each row once"
    );
    for relay in relays {
        relay.shutdown().await;
    }
    sub.shutdown().await;
}

/// A subscriber of `ticket.changed` running its handler through a
/// [`TxInbox`] on `store`, one at a time: each run inserts a row into
/// `table` (created here) in the inbox's transaction, and is recorded in
/// the `Received`, in arrival order.
async fn inbox_subscriber<DB: Backend>(
    store: &Store<DB>,
    conn: &Connection,
    table: &str,
) -> (Subscriber, Received)
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let service = support::unique("search");
    sqlx::query(&format!("CREATE TABLE {table} (n BIGINT)"))
        .execute(store.pool())
        .await
        .unwrap();
    let insert: Arc<str> = format!("INSERT INTO {table} (n) VALUES (1)").into();
    let handled = Received::default();
    let inbox = TxInbox::new(store, &service);
    let sub = Subscription::new(&service)
        .concurrency(1)
        .on(inbox.handler({
            let handled = handled.clone();
            move |mut tx: sqlx::Transaction<'static, DB>, d: Delivery<TicketChanged>| {
                let handled = handled.clone();
                let insert = insert.clone();
                async move {
                    sqlx::query(&insert).execute(&mut *tx).await?;
                    handled
                        .0
                        .lock()
                        .unwrap()
                        .push((d.payload.ticket, d.payload.seq, d.meta.id));
                    Ok::<_, sqlx::Error>(tx)
                }
            }
        }))
        .start(conn)
        .await
        .unwrap();
    (sub, handled)
}

/// The inbox on `store` (tables prefixed `prefix`): an event published
/// again with the same eventId (as after a crash between publishing and
/// marking it sent) runs the handler, and its writes, once.
async fn the_inbox_skips_an_event_published_again<DB: Backend>(store: &Store<DB>, prefix: &str)
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    i64: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let exchange = support::unique("events");
    let conn = support::connect(support::config().events_exchange(&exchange)).await;
    let table = format!("{prefix}handled");
    let (sub, handled) = inbox_subscriber(store, &conn, &table).await;
    let relay = Relay::new(store, Publisher::new(&conn)).start();
    commit(store, "x", 1..=1).await;
    handled
        .until("the first delivery", Duration::from_secs(30), |n| n >= 1)
        .await;
    let mut status = relay.watch();
    tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| s.published >= 1),
    )
    .await
    .expect("published")
    .unwrap();
    // As if the relay died after the confirm, before marking the row sent:
    // the next round publishes it again, with the same eventId.
    sqlx::query(&format!("UPDATE {prefix}outbox SET sent_ms = NULL"))
        .execute(store.pool())
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| s.published >= 2),
    )
    .await
    .expect("published again")
    .unwrap();
    // The duplicate is acked without running the handler.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(handled.len(), 1, "{:?}", handled.all());
    let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1, "the handler's writes committed once");
    relay.shutdown().await;
    sub.shutdown().await;
}

#[tokio::test]
async fn sqlite_inbox_skips_an_event_published_again() {
    let store = Store::<Sqlite>::sqlite(&sqlite_url("inbox")).await.unwrap();
    the_inbox_skips_an_event_published_again(&store, "warren_").await;
}

#[tokio::test]
async fn postgres_inbox_skips_an_event_published_again() {
    let p = prefix();
    let store = Store::<Postgres>::open(&database_url(), StoreOptions::new().table_prefix(&p))
        .await
        .unwrap();
    the_inbox_skips_an_event_published_again(&store, &p).await;
}

/// `Store::purge` deletes the outbox rows sent longer ago than
/// `keep_sent` and the inbox rows older than `inbox_retention`, and
/// nothing else: not a row still to publish, not a row younger than its
/// retention.
async fn purge_keeps_what_is_young_or_unsent<DB: Backend>(url: &str)
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    i64: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let p = prefix();
    let options = StoreOptions::new().table_prefix(&p);
    let store = Store::<DB>::open(url, options.clone()).await.unwrap();
    let exchange = support::unique("events");
    let conn = support::connect(support::config().events_exchange(&exchange)).await;
    let (sub, handled) = inbox_subscriber(&store, &conn, &format!("{p}handled")).await;
    let relay = Relay::new(&store, Publisher::new(&conn)).start();
    commit(&store, "p", 1..=3).await;
    handled
        .until("the events", Duration::from_secs(30), |n| n >= 3)
        .await;
    let mut status = relay.watch();
    tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| s.published >= 3),
    )
    .await
    .expect("published")
    .unwrap();
    relay.shutdown().await;
    sub.shutdown().await;
    commit(&store, "p", 4..=4).await;
    let count = |table: &str| {
        let sql = format!("SELECT COUNT(*) FROM {p}{table}");
        let pool = store.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>(&sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!((count("outbox").await, count("inbox").await), (4, 3));

    // The defaults keep sent rows an hour and inbox rows a week.
    assert_eq!(store.purge().await.unwrap(), 0);
    assert_eq!((count("outbox").await, count("inbox").await), (4, 3));

    let zero = options
        .keep_sent(Duration::ZERO)
        .inbox_retention(Duration::ZERO);
    let eager = Store::<DB>::open(url, zero).await.unwrap();
    assert_eq!(eager.purge().await.unwrap(), 6, "3 sent rows, 3 inbox rows");
    assert_eq!((count("outbox").await, count("inbox").await), (1, 0));
    assert_eq!(eager.pending().await.unwrap(), 1, "the unsent row stays");
}

#[tokio::test]
async fn sqlite_purge_keeps_what_is_young_or_unsent() {
    purge_keeps_what_is_young_or_unsent::<Sqlite>(&sqlite_url("purge")).await;
}

#[tokio::test]
async fn postgres_purge_keeps_what_is_young_or_unsent() {
    purge_keeps_what_is_young_or_unsent::<Postgres>(&database_url()).await;
}

/// The outbox gauges and counters of `table`, from the process's registry
/// (the same text `GET /metrics` serves): pending, lag in seconds,
/// published, failed rounds.
#[cfg(feature = "metrics")]
fn outbox_metrics(table: &str) -> [f64; 4] {
    let s = support::metrics::parse(&warren::metrics::encode());
    let l = [("table", table)];
    [
        "warren_outbox_pending",
        "warren_outbox_relay_lag_seconds",
        "warren_outbox_published_total",
        "warren_outbox_failed_rounds_total",
    ]
    .map(|name| support::metrics::value(&s, name, &l))
}

/// Polls the metrics of `table` until `done` holds (at most 30 s).
#[cfg(feature = "metrics")]
async fn until_metrics(table: &str, what: &str, done: impl Fn([f64; 4]) -> bool) -> [f64; 4] {
    let start = Instant::now();
    loop {
        let now = outbox_metrics(table);
        if done(now) {
            return now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: not within 30 s; last {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(feature = "metrics")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_gauges_rise_while_the_broker_is_down_and_fall_to_0_after() {
    warren::metrics::enable();
    let (broker, conn) = own_broker().await;
    let (sp, pp) = (prefix(), prefix());
    let sqlite =
        Store::<Sqlite>::open(&sqlite_url("gauges"), StoreOptions::new().table_prefix(&sp))
            .await
            .unwrap();
    let postgres = Store::<Postgres>::open(&database_url(), StoreOptions::new().table_prefix(&pp))
        .await
        .unwrap();
    let backoff = warren::Backoff::default()
        .initial(Duration::from_millis(20))
        .max(Duration::from_millis(100))
        .max_attempts(None);
    let poll = Duration::from_millis(50);
    let relays = (
        Relay::new(&sqlite, Publisher::new(&conn))
            .poll(poll)
            .backoff(backoff.clone())
            .start(),
        Relay::new(&postgres, Publisher::new(&conn))
            .poll(poll)
            .backoff(backoff)
            .start(),
    );
    let tables = [format!("{sp}outbox"), format!("{pp}outbox")];

    broker.stop();
    commit(&sqlite, "g", 1..=5).await;
    commit(&postgres, "g", 1..=7).await;
    for (table, n) in tables.iter().zip([5.0, 7.0]) {
        let seen = until_metrics(table, "the backlog seen by the failing relay", |m| {
            m[0] == n && m[1] > 0.0 && m[3] >= 1.0
        })
        .await;
        assert_eq!(seen[2], 0.0, "{table}: nothing published yet");
    }
    // The lag grows with the oldest row's age.
    let before = outbox_metrics(&tables[1])[1];
    tokio::time::sleep(Duration::from_millis(300)).await;
    until_metrics(&tables[1], "a growing lag", |m| m[1] >= before + 0.2).await;

    broker.start().await;
    for (table, n) in tables.iter().zip([5.0, 7.0]) {
        until_metrics(table, "the backlog published", |m| {
            m[0] == 0.0 && m[1] == 0.0 && m[2] == n
        })
        .await;
    }
    relays.0.shutdown().await;
    relays.1.shutdown().await;
    drop(broker);
}
