//! Run with: `scripts/broker start && WARREN_AMQP_URL=$(scripts/broker url) WARREN_BROKER=scripts/broker cargo run --features outbox --example outbox`
//!
//! The tickets service creates a ticket row and its `ticket.created` event
//! in one SQLite transaction (`target/outbox-example.db`); the relay
//! publishes the events; the `search` service handles each in a
//! transaction of its own that also records the eventId (the inbox). With
//! `WARREN_BROKER` set (the path of `scripts/broker`), the broker is stopped
//! halfway: the tickets are still created at once, their events wait in the
//! database, and arrive once the broker is back.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use warren::events::{Delivery, Publisher, Subscription};
use warren::outbox::{sqlx, Outbox, Relay, Sqlite, Store, TxInbox};
use warren::{Config, Connection};

#[derive(Debug, Serialize, Deserialize, warren::Event)]
#[event(name = "ticket.created", version = 1)]
struct TicketCreated {
    id: i64,
    title: String,
}

/// Creates ticket `id`: its row and its event commit together.
async fn create_ticket(
    store: &Store<Sqlite>,
    outbox: &Outbox<Sqlite>,
    id: i64,
    title: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut tx = store.pool().begin().await?;
    sqlx::query("INSERT INTO tickets (id, title) VALUES (?, ?)")
        .bind(id)
        .bind(title)
        .execute(&mut *tx)
        .await?;
    let event = TicketCreated {
        id,
        title: title.into(),
    };
    outbox
        .add_keyed(&mut tx, &format!("ticket-{id}"), &event)
        .await?;
    tx.commit().await?;
    println!("tickets: created ticket {id}");
    Ok(())
}

/// Stops (`stop`) or starts the broker of `scripts/broker`, if the
/// example was given it.
fn broker(what: &str) -> bool {
    let Ok(script) = std::env::var("WARREN_BROKER") else {
        return false;
    };
    let status = std::process::Command::new(script)
        .arg(what)
        // With it set, the script manages nothing.
        .env_remove("WARREN_AMQP_URL")
        .stdout(std::process::Stdio::null())
        .status();
    status.is_ok_and(|s| s.success())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/outbox-example.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let store = Store::<Sqlite>::sqlite(&path.display().to_string()).await?;
    sqlx::query("CREATE TABLE tickets (id INTEGER PRIMARY KEY, title TEXT NOT NULL)")
        .execute(store.pool())
        .await?;
    sqlx::query("CREATE TABLE search_index (ticket INTEGER NOT NULL, title TEXT NOT NULL)")
        .execute(store.pool())
        .await?;

    let conn =
        Connection::connect(Config::from_env()?.default_timeout(Duration::from_secs(2))).await?;
    let handled = Arc::new(AtomicU32::new(0));
    let inbox = TxInbox::new(&store, "search");
    let search = Subscription::new("search")
        .on(inbox.handler({
            let handled = handled.clone();
            move |mut tx: sqlx::Transaction<'static, Sqlite>, d: Delivery<TicketCreated>| {
                let handled = handled.clone();
                async move {
                    sqlx::query("INSERT INTO search_index (ticket, title) VALUES (?, ?)")
                        .bind(d.payload.id)
                        .bind(&d.payload.title)
                        .execute(&mut *tx)
                        .await?;
                    handled.fetch_add(1, Ordering::Relaxed);
                    println!("search: indexed ticket {} ({})", d.payload.id, d.meta.id);
                    Ok::<_, sqlx::Error>(tx)
                }
            }
        }))
        .start(&conn)
        .await?;
    let relay = Relay::new(&store, Publisher::new(&conn)).start();
    let outbox = Outbox::new(&store);

    for id in 1..=5 {
        create_ticket(&store, &outbox, id, "Leaking tap").await?;
    }
    let stopped = broker("stop");
    if stopped {
        println!("-- the broker is stopped");
    }
    for id in 6..=10 {
        create_ticket(&store, &outbox, id, "Broken window").await?;
    }
    if stopped {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let status = relay.status();
        println!(
            "-- {} events wait in the outbox; the relay's last error: {}",
            relay.pending().await?,
            status.last_error.as_deref().unwrap_or("none")
        );
        broker("start");
        println!("-- the broker is back");
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while handled.load(Ordering::Relaxed) < 10 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let indexed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM search_index")
        .fetch_one(store.pool())
        .await?;
    println!(
        "{indexed} tickets indexed, {} events published, {} pending",
        relay.status().published,
        relay.pending().await?
    );
    relay.shutdown().await;
    search.shutdown().await;
    conn.close();
    Ok(())
}
