//! The outbox's statements on SQLite: one writer at a time, so one relay
//! per database file (the process that owns it) takes the oldest pending
//! rows without locking them.

use super::backend::{row, shared_statements, NewRow, Ops};
use super::publish::{Published, Publishing};
use super::tables::{now_ms, Tables, SCHEMA_VERSION};
use super::{boxed, database};
use crate::error::Error;
use futures::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Pool, Sqlite};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

impl Ops for Sqlite {
    const WAKE_ON_ADD: bool = true;

    fn connect(url: &str) -> BoxFuture<'_, Result<Pool<Self>, sqlx::Error>> {
        boxed(async move {
            let url = if url.starts_with("sqlite:") {
                url.to_owned()
            } else {
                format!("sqlite://{url}")
            };
            let options = SqliteConnectOptions::from_str(&url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(BUSY_TIMEOUT);
            SqlitePoolOptions::new()
                .max_connections(8)
                .connect_with(options)
                .await
        })
    }

    fn migrate<'a>(pool: &'a Pool<Self>, tables: &'a Tables) -> BoxFuture<'a, Result<(), Error>> {
        boxed(async move {
            if tables.schema.is_some() {
                return Err(Error::Config(
                    "StoreOptions::schema is for PostgreSQL; on SQLite use a table prefix".into(),
                ));
            }
            let failed = |e| database("cannot migrate the outbox tables", e);
            let mut conn = pool.acquire().await.map_err(failed)?;
            // IMMEDIATE: the write lock from the start, so that two
            // processes migrating at once take turns.
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut *conn)
                .await
                .map_err(failed)?;
            let result =
                Self::migrate_in(&mut conn, tables, "INTEGER PRIMARY KEY AUTOINCREMENT").await;
            let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
            let ended = sqlx::query(end).execute(&mut *conn).await;
            result?;
            ended.map(drop).map_err(failed)
        })
    }

    fn insert<'a>(
        conn: &'a mut SqliteConnection,
        tables: &'a Tables,
        row: &'a NewRow,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        boxed(async move {
            let sql = format!(
                "INSERT INTO {} (event_id, ordering_key, event_type, version, payload, created_ms, address, traceparent)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                tables.outbox()
            );
            sqlx::query(&sql)
                .bind(&row.event_id)
                .bind(&row.key)
                .bind(&row.event_type)
                .bind(row.version)
                .bind(&row.payload)
                .bind(row.created_ms)
                .bind(&row.address)
                .bind(&row.traceparent)
                .execute(conn)
                .await
                .map(drop)
        })
    }

    fn round<'a>(
        pool: &'a Pool<Self>,
        tables: &'a Tables,
        batch: i64,
        publishing: &'a Publishing,
    ) -> BoxFuture<'a, Result<Published, sqlx::Error>> {
        boxed(async move {
            if !lease(pool, tables, &publishing.relay).await? {
                return Ok(Published::default());
            }
            let sql = format!(
                "SELECT id, event_id, ordering_key, event_type, version, payload, created_ms, address, traceparent
                 FROM {} WHERE sent_ms IS NULL ORDER BY id LIMIT ?",
                tables.outbox()
            );
            let rows = sqlx::query(&sql).bind(batch).fetch_all(pool).await?;
            let rows = rows.iter().map(row).collect::<Result<Vec<_>, _>>()?;
            if rows.is_empty() {
                return Ok(Published::default());
            }
            let published = publishing.publish(rows).await;
            if !published.sent.is_empty() {
                let ids = serde_json::to_string(&published.sent).unwrap_or_default();
                let sql = format!(
                    "UPDATE {} SET sent_ms = ? WHERE id IN (SELECT value FROM json_each(?))",
                    tables.outbox()
                );
                sqlx::query(&sql)
                    .bind(now_ms())
                    .bind(ids)
                    .execute(pool)
                    .await?;
            }
            Ok(published)
        })
    }

    shared_statements!();

    fn release<'a>(
        pool: &'a Pool<Self>,
        tables: &'a Tables,
        relay: &'a str,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        boxed(async move {
            let sql = format!("DELETE FROM {} WHERE owner = ?", tables.lease());
            sqlx::query(&sql).bind(relay).execute(pool).await.map(drop)
        })
    }

    fn listen(_: Pool<Self>, _: Tables, _: Arc<Notify>) -> Option<BoxFuture<'static, ()>> {
        None
    }
}

/// How long a relay's lease on a SQLite file lasts unless renewed; each
/// round renews it. Longer than a round can take (a one-way request waits
/// for its confirm up to the default deadline).
const LEASE: i64 = 60_000;

/// Takes or renews the lease that lets one relay at a time publish from
/// the file: `true` if `relay` holds it now. Another relay takes over when
/// the holder gives it up (shutdown) or stops renewing it ([`LEASE`]).
async fn lease(pool: &Pool<Sqlite>, tables: &Tables, relay: &str) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let sql = format!(
        "INSERT INTO {} (name, owner, expires_ms) VALUES ('relay', ?1, ?2)
         ON CONFLICT (name) DO UPDATE SET owner = ?1, expires_ms = ?2
         WHERE owner = ?1 OR expires_ms < ?3",
        tables.lease()
    );
    let done = sqlx::query(&sql)
        .bind(relay)
        .bind(now + LEASE)
        .bind(now)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}
