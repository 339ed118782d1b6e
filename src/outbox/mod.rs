//! The transactional outbox and inbox, on SQLite (embedded, the default) or
//! PostgreSQL (feature `outbox`).
//!
//! A service that writes a row and publishes an event can lose the event
//! (a crash between the two) or publish one for a write that rolled back.
//! With the outbox, the event is a row written in the same database
//! transaction as the change ([`Outbox::add`]); a [`Relay`] publishes the
//! committed rows afterwards through a confirmed [`Publisher`](crate::events::Publisher), in commit
//! order per ordering key, and marks them sent. The inbox is the same on
//! the consuming side ([`TxInbox`]): the handler's writes and the eventId
//! commit together, so a redelivered event is skipped even after a crash
//! between handling and ack.
//!
//! - [`Store`]: the database (a `sqlx` pool) and the outbox's tables,
//!   made by migrations shipped in the crate ([`StoreOptions`]: a table
//!   prefix, a PostgreSQL schema).
//! - [`Outbox::add`]: an event into the user's own transaction; the commit
//!   is the user's.
//! - [`Relay`]: the task that publishes; woken at once after a commit
//!   (PostgreSQL `LISTEN/NOTIFY`, an in-process wake-up for SQLite), polling
//!   as the fallback; retrying with backoff while the broker is away
//!   ([`RelayHandle::status`]); several relays on one PostgreSQL database
//!   share the work without publishing a row twice.
//! - [`TxInbox::handler`]: a subscription handler run in a transaction
//!   that records the eventId.
//!
//! `docs/OUTBOX.md` is the guide; `examples/outbox.rs` runs it on SQLite.
//!
//! ```no_run
//! use warren::events::Publisher;
//! use warren::outbox::{sqlx, Outbox, Relay, Store};
//! use warren::{Config, Connection};
//!
//! #[derive(serde::Serialize, serde::Deserialize, warren::Event)]
//! #[event(name = "ticket.created")]
//! struct TicketCreated {
//!     id: i64,
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::sqlite("sqlite:tickets.db").await?;
//! let conn = Connection::connect(Config::from_env()?).await?;
//! let relay = Relay::new(&store, Publisher::new(&conn)).start();
//!
//! let outbox = Outbox::new(&store);
//! let mut tx = store.pool().begin().await?;
//! sqlx::query("INSERT INTO tickets (id, title) VALUES (?, ?)")
//!     .bind(7)
//!     .bind("Leaking tap")
//!     .execute(&mut *tx)
//!     .await?;
//! outbox.add_keyed(&mut tx, "ticket-7", &TicketCreated { id: 7 }).await?;
//! tx.commit().await?; // the relay publishes it now
//! # relay.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod inbox;
mod postgres;
mod publish;
mod relay;
mod sqlite;
mod tables;

pub use inbox::{InboxHandler, TxInbox};
pub use relay::{Relay, RelayHandle, RelayStatus};
/// The `sqlx` warren's stores are built on: use it for your own queries,
/// so that its transaction types are the ones [`Outbox::add`] takes.
pub use sqlx;
pub use sqlx::{Postgres, Sqlite};

use crate::error::Error;
use crate::events::{check_event, Event};
use futures::future::BoxFuture;
use sqlx::{Pool, Transaction};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;
use tables::Tables;
use tokio::sync::Notify;

/// A database an outbox can live in: [`Sqlite`] or [`Postgres`]. Sealed:
/// the statements for each are warren's.
pub trait Backend: backend::Ops {}

impl Backend for Sqlite {}
impl Backend for Postgres {}

/// What each database does in its own SQL; not part of the API.
pub(crate) mod backend {
    #![allow(unreachable_pub)]
    use super::publish::{Published, Publishing};
    use super::tables::Tables;
    use crate::error::Error;
    use futures::future::BoxFuture;
    use sqlx::Pool;
    use std::sync::Arc;
    use tokio::sync::Notify;

    /// An event row as the relay reads it.
    #[derive(Clone, Debug)]
    pub struct Row {
        /// Its place in the outbox: commit order within a key.
        pub id: i64,
        /// The eventId it was given when added.
        pub event_id: String,
        /// The ordering key.
        pub key: String,
        /// The event type.
        pub event_type: String,
        /// The payload's schema version.
        pub version: i64,
        /// The payload, as JSON.
        pub payload: String,
        /// When it was added (ms since the epoch).
        pub created_ms: i64,
        /// Where a one-way request goes; `None` for an event.
        pub address: Option<String>,
        /// The trace it was added in, if any.
        pub traceparent: Option<String>,
    }

    /// An outbox row as read from `r`.
    pub fn row<R>(r: &R) -> Result<Row, sqlx::Error>
    where
        R: sqlx::Row,
        for<'a> &'a str: sqlx::ColumnIndex<R>,
        i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        Ok(Row {
            id: r.try_get("id")?,
            event_id: r.try_get("event_id")?,
            key: r.try_get("ordering_key")?,
            event_type: r.try_get("event_type")?,
            version: r.try_get("version")?,
            payload: r.try_get("payload")?,
            created_ms: r.try_get("created_ms")?,
            address: r.try_get("address")?,
            traceparent: r.try_get("traceparent")?,
        })
    }

    /// An event row to insert.
    #[derive(Debug)]
    pub struct NewRow {
        /// A fresh eventId.
        pub event_id: String,
        /// The ordering key.
        pub key: String,
        /// The event type.
        pub event_type: String,
        /// The payload's schema version.
        pub version: i64,
        /// The payload, as JSON.
        pub payload: String,
        /// Now (ms since the epoch).
        pub created_ms: i64,
        /// Where a one-way request goes; `None` for an event.
        pub address: Option<String>,
        /// The trace it is added in (`traceparent`), published with it.
        pub traceparent: Option<String>,
    }

    /// The statements that read the same on both databases, written once
    /// and expanded in each `impl Ops`: numbered placeholders (`$1`, which
    /// SQLite takes too) and no casts. (A function generic over the
    /// database would need an sqlx bound for each type bound and each
    /// executor.) `migrate_in` creates or upgrades the tables in the open
    /// transaction on its connection, `id` being the database's type for
    /// an auto-incremented key.
    macro_rules! shared_statements {
        () => {
            fn migrate_in<'a>(
                conn: &'a mut Self::Connection,
                tables: &'a Tables,
                id: &'a str,
            ) -> BoxFuture<'a, Result<(), Error>> {
                boxed(async move {
                    let failed = |e| database("cannot migrate the outbox tables", e);
                    let migrations = tables.migrations();
                    sqlx::query(&format!(
                        "CREATE TABLE IF NOT EXISTS {migrations} (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)"
                    ))
                    .execute(&mut *conn)
                    .await
                    .map_err(failed)?;
                    let found: i64 = sqlx::query_scalar(&format!(
                        "SELECT COALESCE(MAX(version), 0) FROM {migrations}"
                    ))
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(failed)?;
                    if found > SCHEMA_VERSION {
                        return Err(Error::SchemaMismatch {
                            tables: tables.describe(),
                            found,
                            supported: SCHEMA_VERSION,
                        });
                    }
                    for version in found + 1..=SCHEMA_VERSION {
                        for statement in tables.migration(version, id) {
                            sqlx::query(&statement)
                                .execute(&mut *conn)
                                .await
                                .map_err(failed)?;
                        }
                        sqlx::query(&format!(
                            "INSERT INTO {migrations} (version, applied_ms) VALUES ($1, $2)"
                        ))
                        .bind(version)
                        .bind(now_ms())
                        .execute(&mut *conn)
                        .await
                        .map_err(failed)?;
                    }
                    Ok(())
                })
            }

            fn backlog<'a>(
                pool: &'a Pool<Self>,
                tables: &'a Tables,
            ) -> BoxFuture<'a, Result<(i64, Option<i64>), sqlx::Error>> {
                boxed(async move {
                    let sql = format!(
                        "SELECT COUNT(*), MIN(created_ms) FROM {} WHERE sent_ms IS NULL",
                        tables.outbox()
                    );
                    sqlx::query_as(&sql).fetch_one(pool).await
                })
            }

            fn purge<'a>(
                pool: &'a Pool<Self>,
                tables: &'a Tables,
                sent_before: i64,
                handled_before: i64,
            ) -> BoxFuture<'a, Result<u64, sqlx::Error>> {
                boxed(async move {
                    let sent = format!(
                        "DELETE FROM {} WHERE sent_ms IS NOT NULL AND sent_ms <= $1",
                        tables.outbox()
                    );
                    let handled = format!("DELETE FROM {} WHERE handled_ms <= $1", tables.inbox());
                    let a = sqlx::query(&sent).bind(sent_before).execute(pool).await?;
                    let b = sqlx::query(&handled)
                        .bind(handled_before)
                        .execute(pool)
                        .await?;
                    Ok(a.rows_affected() + b.rows_affected())
                })
            }

            fn record<'a>(
                conn: &'a mut Self::Connection,
                tables: &'a Tables,
                service: &'a str,
                event_id: &'a str,
                now_ms: i64,
            ) -> BoxFuture<'a, Result<bool, sqlx::Error>> {
                boxed(async move {
                    // On PostgreSQL, a concurrent delivery of the same event
                    // waits here for the first one's transaction, then finds
                    // the row.
                    let sql = format!(
                        "INSERT INTO {} (service, event_id, handled_ms) VALUES ($1, $2, $3)
                         ON CONFLICT (service, event_id) DO NOTHING",
                        tables.inbox()
                    );
                    let done = sqlx::query(&sql)
                        .bind(service)
                        .bind(event_id)
                        .bind(now_ms)
                        .execute(conn)
                        .await?;
                    Ok(done.rows_affected() == 1)
                })
            }
        };
    }
    pub(in crate::outbox) use shared_statements;

    /// The statements of one database.
    pub trait Ops: sqlx::Database + Sized {
        /// Whether [`Outbox::add`](super::Outbox::add) wakes the relays
        /// of this process (SQLite: no notifications across connections).
        const WAKE_ON_ADD: bool;

        /// A pool on `url`.
        fn connect(url: &str) -> BoxFuture<'_, Result<Pool<Self>, sqlx::Error>>;

        /// Creates or upgrades the tables.
        fn migrate<'a>(
            pool: &'a Pool<Self>,
            tables: &'a Tables,
        ) -> BoxFuture<'a, Result<(), Error>>;

        /// Creates or upgrades the tables in the open transaction on
        /// `conn`, `id` being the type of an auto-incremented key
        /// ([`shared_statements`]).
        fn migrate_in<'a>(
            conn: &'a mut Self::Connection,
            tables: &'a Tables,
            id: &'a str,
        ) -> BoxFuture<'a, Result<(), Error>>;

        /// Inserts `row` in the transaction on `conn` (and, for PostgreSQL,
        /// notifies the relays at commit).
        fn insert<'a>(
            conn: &'a mut Self::Connection,
            tables: &'a Tables,
            row: &'a NewRow,
        ) -> BoxFuture<'a, Result<(), sqlx::Error>>;

        /// Takes pending rows (the oldest per key first, at most `batch`),
        /// publishes them with `publishing` and marks what was published.
        fn round<'a>(
            pool: &'a Pool<Self>,
            tables: &'a Tables,
            batch: i64,
            publishing: &'a Publishing,
        ) -> BoxFuture<'a, Result<Published, sqlx::Error>>;

        /// How many rows wait to be published, and when the oldest of
        /// them was added (ms since the epoch; none when none wait).
        fn backlog<'a>(
            pool: &'a Pool<Self>,
            tables: &'a Tables,
        ) -> BoxFuture<'a, Result<(i64, Option<i64>), sqlx::Error>>;

        /// Deletes rows sent before `sent_before` and inbox rows handled
        /// before `handled_before` (ms since the epoch).
        fn purge<'a>(
            pool: &'a Pool<Self>,
            tables: &'a Tables,
            sent_before: i64,
            handled_before: i64,
        ) -> BoxFuture<'a, Result<u64, sqlx::Error>>;

        /// Records `event_id` as handled by `service` in the transaction on
        /// `conn`: `false` if it was already.
        fn record<'a>(
            conn: &'a mut Self::Connection,
            tables: &'a Tables,
            service: &'a str,
            event_id: &'a str,
            now_ms: i64,
        ) -> BoxFuture<'a, Result<bool, sqlx::Error>>;

        /// Gives up the relay's lease, if the database has one (SQLite).
        fn release<'a>(
            pool: &'a Pool<Self>,
            tables: &'a Tables,
            relay: &'a str,
        ) -> BoxFuture<'a, Result<(), sqlx::Error>>;

        /// A task that wakes the relay on each commit notification, if the
        /// database sends them; it ends when the pool closes.
        fn listen(
            pool: Pool<Self>,
            tables: Tables,
            wake: Arc<Notify>,
        ) -> Option<BoxFuture<'static, ()>>;
    }
}

/// How a [`Store`] names and keeps its tables.
#[derive(Clone, Debug)]
#[must_use]
pub struct StoreOptions {
    prefix: String,
    schema: Option<String>,
    migrate: bool,
    keep_sent: Duration,
    inbox_retention: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            prefix: "warren_".into(),
            schema: None,
            migrate: true,
            keep_sent: Duration::from_secs(3600),
            inbox_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl StoreOptions {
    /// Default options: tables `warren_outbox`, `warren_inbox` and
    /// `warren_migrations`, migrated on start, sent rows kept an hour,
    /// inbox rows a week.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the tables' names start with (default `warren_`; lowercase
    /// letters, digits and `_`): several services can share one database.
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The PostgreSQL schema of the tables (created if missing); by default
    /// the connection's search path decides. Not for SQLite.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Whether opening the store creates or upgrades its tables (default
    /// `true`); with `false`, call [`Store::migrate`] yourself.
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// How long a published row stays in the outbox table (marked sent)
    /// before the relay deletes it (default an hour; zero deletes it at the
    /// next clean-up).
    pub fn keep_sent(mut self, keep: Duration) -> Self {
        self.keep_sent = keep;
        self
    }

    /// How long the inbox remembers a handled eventId (default a week): a
    /// duplicate arriving later than that runs again.
    pub fn inbox_retention(mut self, retention: Duration) -> Self {
        self.inbox_retention = retention;
        self
    }
}

/// The database of an outbox and an inbox: a `sqlx` pool and the names of
/// warren's tables in it. Cheap to clone.
///
/// [`Store::sqlite`] opens (and creates) a database file; no server is
/// needed. [`Store::postgres`] connects to a PostgreSQL server. Either
/// creates or upgrades its tables when opened, unless
/// [`StoreOptions::migrate`] says not to.
pub struct Store<DB: Backend> {
    inner: Arc<Inner<DB>>,
}

struct Inner<DB: Backend> {
    pool: Pool<DB>,
    tables: Tables,
    options: StoreOptions,
    /// Wakes this process's relays ([`backend::Ops::WAKE_ON_ADD`]).
    wake: Arc<Notify>,
}

impl<DB: Backend> Clone for Store<DB> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<DB: Backend> fmt::Debug for Store<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("database", &DB::NAME)
            .field("tables", &self.inner.tables.describe())
            .finish_non_exhaustive()
    }
}

impl Store<Sqlite> {
    /// Opens the SQLite database at `url` (`sqlite:app.db`, or a path),
    /// creating the file if missing, in WAL mode, and its tables.
    ///
    /// # Errors
    /// [`Error::Database`] if it cannot be opened; as [`Store::open`].
    pub async fn sqlite(url: &str) -> Result<Self, Error> {
        Self::open(url, StoreOptions::default()).await
    }
}

impl Store<Postgres> {
    /// Connects to the PostgreSQL database at `url`
    /// (`postgres://user@host/db`), and creates its tables.
    ///
    /// # Errors
    /// [`Error::Database`] if it cannot be reached; as [`Store::open`].
    pub async fn postgres(url: &str) -> Result<Self, Error> {
        Self::open(url, StoreOptions::default()).await
    }
}

impl<DB: Backend> Store<DB> {
    /// Opens the database at `url` with `options`.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad table prefix or schema;
    /// [`Error::Database`] if the database cannot be reached or refuses
    /// the migration; [`Error::SchemaMismatch`] if its tables were made by
    /// a newer warren.
    pub async fn open(url: &str, options: StoreOptions) -> Result<Self, Error> {
        let tables = Tables::new(options.schema.clone(), options.prefix.clone())?;
        let pool = DB::connect(url)
            .await
            .map_err(|e| database(format!("cannot open the {} database", DB::NAME), e))?;
        Self::build(pool, tables, options).await
    }

    /// A store on a pool of your own.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub async fn from_pool(pool: Pool<DB>, options: StoreOptions) -> Result<Self, Error> {
        let tables = Tables::new(options.schema.clone(), options.prefix.clone())?;
        Self::build(pool, tables, options).await
    }

    async fn build(pool: Pool<DB>, tables: Tables, options: StoreOptions) -> Result<Self, Error> {
        let store = Self {
            inner: Arc::new(Inner {
                pool,
                tables,
                options,
                wake: Arc::new(Notify::new()),
            }),
        };
        if store.inner.options.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Creates the tables, or upgrades them to this build's schema; a
    /// no-op when they are current. Safe to run from several processes at
    /// once.
    ///
    /// # Errors
    /// [`Error::Database`]; [`Error::SchemaMismatch`] if the tables were
    /// made by a newer warren.
    pub async fn migrate(&self) -> Result<(), Error> {
        DB::migrate(&self.inner.pool, &self.inner.tables).await
    }

    /// The pool: begin your transactions on it (`store.pool().begin()`).
    #[must_use]
    pub fn pool(&self) -> &Pool<DB> {
        &self.inner.pool
    }

    /// How many events wait in the outbox to be published.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn pending(&self) -> Result<u64, Error> {
        Ok(self.backlog().await?.0)
    }

    /// How many events wait, and how long the oldest of them has waited
    /// (zero when none do).
    pub(crate) async fn backlog(&self) -> Result<(u64, Duration), Error> {
        let (n, oldest) = DB::backlog(&self.inner.pool, &self.inner.tables)
            .await
            .map_err(|e| database("cannot count the pending events", e))?;
        let age = oldest.map_or(0, |t| tables::now_ms().saturating_sub(t).max(0));
        Ok((
            u64::try_from(n).unwrap_or(0),
            Duration::from_millis(u64::try_from(age).unwrap_or(0)),
        ))
    }

    /// Deletes the outbox rows sent longer ago than
    /// [`StoreOptions::keep_sent`] and the inbox rows older than
    /// [`StoreOptions::inbox_retention`]; the relay and the inbox call it
    /// on a schedule. Returns how many rows went.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn purge(&self) -> Result<u64, Error> {
        let now = tables::now_ms();
        let options = &self.inner.options;
        DB::purge(
            &self.inner.pool,
            &self.inner.tables,
            now.saturating_sub(tables::ms(options.keep_sent)),
            now.saturating_sub(tables::ms(options.inbox_retention)),
        )
        .await
        .map_err(|e| database("cannot delete old outbox and inbox rows", e))
    }

    pub(crate) fn tables(&self) -> &Tables {
        &self.inner.tables
    }

    pub(crate) fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    pub(crate) fn wake(&self) -> &Arc<Notify> {
        &self.inner.wake
    }
}

/// Adds events to a [`Store`]'s outbox inside the caller's transactions.
/// Cheap to clone.
pub struct Outbox<DB: Backend> {
    store: Store<DB>,
    _db: PhantomData<fn() -> DB>,
}

impl<DB: Backend> Clone for Outbox<DB> {
    fn clone(&self) -> Self {
        Self::new(&self.store)
    }
}

impl<DB: Backend> fmt::Debug for Outbox<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("store", &self.store)
            .finish()
    }
}

/// The ordering key of events added without one: they are published in
/// commit order among themselves.
pub const DEFAULT_KEY: &str = "";

impl<DB: Backend> Outbox<DB> {
    /// The outbox of `store`.
    #[must_use]
    pub fn new(store: &Store<DB>) -> Self {
        Self {
            store: store.clone(),
            _db: PhantomData,
        }
    }

    /// Adds `event` to the outbox in `tx`, under the [`DEFAULT_KEY`]: it
    /// is published once `tx` commits, and never if it rolls back. Returns
    /// its eventId.
    ///
    /// # Errors
    /// As [`Outbox::add_keyed`].
    pub async fn add<E: Event>(
        &self,
        tx: &mut Transaction<'_, DB>,
        event: &E,
    ) -> Result<String, Error> {
        self.add_keyed(tx, DEFAULT_KEY, event).await
    }

    /// Adds `event` to the outbox in `tx` with the ordering key `key` (such
    /// as the aggregate's id): events of one key are published in the
    /// order their transactions committed (and, within one transaction, in
    /// the order added). Returns its eventId, which it keeps however many
    /// times it is published.
    ///
    /// # Errors
    /// [`Error::Codec`] if `event` does not encode (refused before the
    /// commit); [`Error::Database`] if the insert fails (the transaction
    /// is then to be rolled back).
    pub async fn add_keyed<E: Event>(
        &self,
        tx: &mut Transaction<'_, DB>,
        key: &str,
        event: &E,
    ) -> Result<String, Error> {
        self.add_as(tx, key, E::NAME, E::VERSION, event).await
    }

    /// Adds `payload` as version `version` of `event_type`, without an
    /// [`Event`] type.
    ///
    /// # Errors
    /// As [`Outbox::add_keyed`]; [`Error::InvalidRequest`] for a type that
    /// is not `domain.action` or a version 0.
    pub async fn add_as<P: serde::Serialize + ?Sized>(
        &self,
        tx: &mut Transaction<'_, DB>,
        key: &str,
        event_type: &str,
        version: u32,
        payload: &P,
    ) -> Result<String, Error> {
        check_event(event_type, version)?;
        let row = json_row(key, event_type, i64::from(version), payload, None)?;
        self.insert(tx, row, "cannot add the event to the outbox")
            .await
    }

    /// Adds a one-way request to the outbox in `tx`, with the ordering key
    /// `key`: once `tx` commits, the relay sends `method` with `body` (as
    /// JSON) to `address` as [`Delivery::OneWay`](crate::Delivery::OneWay)
    /// does (persistent, confirmed), in commit order with the key's events
    /// and other requests, and never if `tx` rolls back. Returns its
    /// message id, which it keeps however many times it is sent (the
    /// server sees it as [`Request::message_id`](crate::Request::message_id)).
    ///
    /// A request no queue takes ([`Error::NoRoute`]: the service has never
    /// started) is not dropped: it waits, and the key behind it, until a
    /// queue is there; [`RelayHandle::status`] shows the error.
    ///
    /// # Errors
    /// [`Error::Name`] for a bad method name; [`Error::Codec`] if `body` does not encode (refused before the
    /// commit); [`Error::Database`] if the insert fails.
    pub async fn send<B: serde::Serialize + ?Sized>(
        &self,
        tx: &mut Transaction<'_, DB>,
        key: &str,
        address: &crate::Address,
        method: &str,
        body: &B,
    ) -> Result<String, Error> {
        crate::address::check_method(method)?;
        let row = json_row(key, method, 1, body, Some(address.to_string()))?;
        self.insert(tx, row, "cannot add the request to the outbox")
            .await
    }

    async fn insert(
        &self,
        tx: &mut Transaction<'_, DB>,
        row: backend::NewRow,
        context: &str,
    ) -> Result<String, Error> {
        DB::insert(&mut **tx, self.store.tables(), &row)
            .await
            .map_err(|e| database(context, e))?;
        if DB::WAKE_ON_ADD {
            self.store.wake().notify_one();
        }
        Ok(row.event_id)
    }
}

/// A new row with a fresh id, its body encoded as JSON: an event
/// (`address` none) or a one-way request to `address`.
fn json_row<B: serde::Serialize + ?Sized>(
    key: &str,
    name: &str,
    version: i64,
    body: &B,
    address: Option<String>,
) -> Result<backend::NewRow, Error> {
    let payload = serde_json::to_string(body).map_err(|e| {
        Error::Codec(crate::codec::CodecError::Encode {
            content_type: crate::ContentType::Json,
            message: e.to_string(),
        })
    })?;
    Ok(backend::NewRow {
        event_id: uuid::Uuid::new_v4().to_string(),
        key: key.to_owned(),
        event_type: name.to_owned(),
        version,
        payload,
        created_ms: tables::now_ms(),
        address,
        traceparent: crate::tracecontext::outgoing(),
    })
}

/// A database error with what was being done.
pub(crate) fn database(context: impl Into<String>, e: sqlx::Error) -> Error {
    Error::Database {
        context: context.into(),
        source: Some(Arc::new(e)),
    }
}

/// Boxes a future, for the statements of each database.
pub(crate) fn boxed<'a, T>(
    f: impl std::future::Future<Output = T> + Send + 'a,
) -> BoxFuture<'a, T> {
    Box::pin(f)
}
