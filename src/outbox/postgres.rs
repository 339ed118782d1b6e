//! The outbox's statements on PostgreSQL. Several relays may share one
//! database: each round locks the oldest pending row of each key it takes
//! (`FOR UPDATE SKIP LOCKED`), so another relay skips that key until the
//! round commits; the key's later rows follow the locked one in the same
//! round. A commit notifies the relays (`pg_notify`, delivered at commit).

use super::backend::{row, shared_statements, NewRow, Ops};
use super::publish::{Published, Publishing};
use super::tables::{now_ms, Tables, SCHEMA_VERSION};
use super::{boxed, database};
use crate::error::Error;
use futures::future::BoxFuture;
use sqlx::postgres::{PgConnection, PgListener, PgPoolOptions};
use sqlx::{Pool, Postgres};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{debug, warn};

/// The pause before listening again after the listening connection failed.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

impl Ops for Postgres {
    const WAKE_ON_ADD: bool = false;

    fn connect(url: &str) -> BoxFuture<'_, Result<Pool<Self>, sqlx::Error>> {
        boxed(async move {
            PgPoolOptions::new()
                .max_connections(10)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
        })
    }

    fn migrate<'a>(pool: &'a Pool<Self>, tables: &'a Tables) -> BoxFuture<'a, Result<(), Error>> {
        boxed(async move {
            let failed = |e| database("cannot migrate the outbox tables", e);
            let mut tx = pool.begin().await.map_err(failed)?;
            // One migration at a time per set of tables, across processes.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(tables.describe())
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
            if let Some(schema) = &tables.schema {
                sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                    .execute(&mut *tx)
                    .await
                    .map_err(failed)?;
            }
            Self::migrate_in(
                &mut tx,
                tables,
                "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
            )
            .await?;
            tx.commit().await.map_err(failed)
        })
    }

    fn insert<'a>(
        conn: &'a mut PgConnection,
        tables: &'a Tables,
        row: &'a NewRow,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        boxed(async move {
            // The notification is sent when the transaction commits, and
            // never if it rolls back.
            let sql = format!(
                "WITH added AS (
                    INSERT INTO {} (event_id, ordering_key, event_type, version, payload, created_ms, address, traceparent)
                    VALUES ($1, $2, $3, $4, $5, $6, $8, $9) RETURNING id)
                 SELECT pg_notify($7, '') FROM added",
                tables.outbox()
            );
            sqlx::query(&sql)
                .bind(&row.event_id)
                .bind(&row.key)
                .bind(&row.event_type)
                .bind(row.version)
                .bind(&row.payload)
                .bind(row.created_ms)
                .bind(tables.channel())
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
            let outbox = tables.outbox();
            let mut tx = pool.begin().await?;
            // The oldest pending row of each key, locked (a key whose
            // oldest row another relay holds is skipped), and the rows
            // after it in its key: nobody else takes those while the
            // first is locked. One statement, one round trip.
            let rows = sqlx::query(&format!(
                "WITH heads AS (
                    SELECT id, ordering_key FROM {outbox}
                    WHERE sent_ms IS NULL
                      AND id IN (SELECT MIN(id) FROM {outbox} WHERE sent_ms IS NULL GROUP BY ordering_key)
                    ORDER BY id LIMIT $1
                    FOR UPDATE SKIP LOCKED)
                 SELECT o.id, o.event_id, o.ordering_key, o.event_type, o.version, o.payload, o.created_ms, o.address, o.traceparent
                 FROM {outbox} o
                 JOIN heads h ON o.ordering_key = h.ordering_key AND o.id >= h.id
                 WHERE o.sent_ms IS NULL
                 ORDER BY o.id LIMIT $1"
            ))
            .bind(batch)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                tx.rollback().await?;
                return Ok(Published::default());
            }
            let rows = rows.iter().map(row).collect::<Result<Vec<_>, _>>()?;
            let published = publishing.publish(rows).await;
            if !published.sent.is_empty() {
                sqlx::query(&format!(
                    "UPDATE {outbox} SET sent_ms = $1 WHERE id = ANY($2)"
                ))
                .bind(now_ms())
                .bind(&published.sent)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(published)
        })
    }

    shared_statements!();

    fn release<'a>(
        _: &'a Pool<Self>,
        _: &'a Tables,
        _: &'a str,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        boxed(async { Ok(()) })
    }

    fn listen(
        pool: Pool<Self>,
        tables: Tables,
        wake: Arc<Notify>,
    ) -> Option<BoxFuture<'static, ()>> {
        Some(boxed(async move {
            let channel = tables.channel();
            while !pool.is_closed() {
                if let Err(e) = listen_once(&pool, &channel, &wake).await {
                    if pool.is_closed() {
                        break;
                    }
                    warn!(error = %e, "the outbox's LISTEN connection failed; polling until it is back");
                }
                tokio::time::sleep(LISTEN_RETRY).await;
            }
            debug!("the outbox's listener stopped");
        }))
    }
}

/// Listens on `channel` and wakes the relay on each notification, until
/// the connection fails.
async fn listen_once(
    pool: &Pool<Postgres>,
    channel: &str,
    wake: &Notify,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    // Whatever committed while nobody listened.
    wake.notify_one();
    loop {
        listener.recv().await?;
        wake.notify_one();
    }
}
