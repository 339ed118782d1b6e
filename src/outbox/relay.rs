//! The relay: the task that publishes what the outbox holds.

use super::publish::Publishing;
use super::{database, Backend, Store};
use crate::config::Backoff;
use crate::error::Error;
use crate::events::Publisher;
use std::fmt;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

/// The first re-check after a wake-up that found nothing yet (SQLite: the
/// wake-up comes from `add`, before the commit); it doubles up to the
/// polling interval.
const EAGER: Duration = Duration::from_millis(1);

/// Publishes the events committed to a [`Store`]'s outbox through a
/// [`Publisher`] (persistent, confirmed), and marks them sent.
///
/// - Each round takes up to [`batch`](Relay::batch) pending rows, the
///   oldest first, and publishes each ordering key's rows in order on one
///   channel, [`pipeline`](Relay::pipeline) of them before it awaits their
///   confirms, up to [`concurrency`](Relay::concurrency) keys at once.
/// - It is woken at once after a commit (PostgreSQL `LISTEN/NOTIFY`; on
///   SQLite by [`Outbox::add`](super::Outbox::add) in this process) and
///   polls every [`poll`](Relay::poll) (1 s) as the fallback.
/// - While the broker or the database fails, the events wait in the
///   database and the relay tries again with [`backoff`](Relay::backoff)
///   (100 ms doubling to 5 s); [`RelayHandle::status`] shows it.
/// - A row published but not yet marked when the process dies is
///   published again, with the same eventId, by the next relay: at least
///   once (consumers dedupe by eventId, as [`TxInbox`](super::TxInbox)
///   does).
/// - Several relays on one PostgreSQL database share the rows: a key's
///   oldest pending row is locked by one relay at a time, so no row is
///   published twice while they run and each key stays in order. On a
///   SQLite file one relay publishes at a time (a lease it renews each
///   round); the others wait, and one takes over when it shuts down or
///   has not renewed the lease for 60 s.
#[must_use]
pub struct Relay<DB: Backend> {
    store: Store<DB>,
    publisher: Publisher,
    poll: Duration,
    batch: usize,
    concurrency: usize,
    pipeline: usize,
    backoff: Backoff,
}

impl<DB: Backend> fmt::Debug for Relay<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("store", &self.store)
            .field("poll", &self.poll)
            .field("batch", &self.batch)
            .field("concurrency", &self.concurrency)
            .field("pipeline", &self.pipeline)
            .finish_non_exhaustive()
    }
}

impl<DB: Backend> Relay<DB> {
    /// A relay publishing `store`'s events with `publisher` (its exchange
    /// and content type).
    pub fn new(store: &Store<DB>, publisher: Publisher) -> Self {
        Self {
            store: store.clone(),
            publisher,
            poll: Duration::from_secs(1),
            batch: 256,
            concurrency: 16,
            pipeline: 32,
            backoff: Backoff::default()
                .initial(Duration::from_millis(100))
                .max(Duration::from_secs(5))
                .max_attempts(None),
        }
    }

    /// How often it looks for events without being woken (default 1 s).
    pub fn poll(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(1));
        self
    }

    /// How many rows a round takes at most (default 256).
    pub fn batch(mut self, rows: usize) -> Self {
        self.batch = rows.max(1);
        self
    }

    /// How many ordering keys it publishes at once (default 16).
    pub fn concurrency(mut self, keys: usize) -> Self {
        self.concurrency = keys.max(1);
        self
    }

    /// How many events of one ordering key it publishes before it waits
    /// for their confirms (default 32). They go out in order on one
    /// channel, which the broker keeps; if the broker refuses one (a full
    /// queue that rejects publishes), the later ones already taken arrive
    /// before its next attempt. `1` waits for each confirm before the next
    /// publish, which keeps a key's order even then, at a fraction of the
    /// rate.
    pub fn pipeline(mut self, events: usize) -> Self {
        self.pipeline = events.max(1);
        self
    }

    /// The delays between failed rounds (default 100 ms doubling to 5 s,
    /// with jitter, never giving up).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Starts the relay task.
    pub fn start(self) -> RelayHandle<DB> {
        let (status, watch) = watch::channel(RelayStatus::default());
        let (stop, stopped) = watch::channel(false);
        let store = self.store.clone();
        let task = tokio::spawn(self.run(status, stopped));
        RelayHandle {
            store,
            status: watch,
            stop,
            task: Some(task),
        }
    }

    async fn run(self, status: watch::Sender<RelayStatus>, mut stop: watch::Receiver<bool>) {
        let store = &self.store;
        let listener = DB::listen(
            store.pool().clone(),
            store.tables().clone(),
            store.wake().clone(),
        )
        .map(tokio::spawn);
        let publishing = Publishing::new(self.publisher.clone(), self.concurrency, self.pipeline);
        let batch = i64::try_from(self.batch).unwrap_or(i64::MAX);
        let purge_every =
            (store.options().keep_sent / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
        // The first clean-up comes after the first interval: what waits
        // is published first.
        let mut next_purge = Instant::now() + purge_every;
        let mut failures = 0u32;
        let mut eager: Option<Duration> = None;
        #[cfg(feature = "metrics")]
        let mut next_backlog = Instant::now();
        while !*stop.borrow() {
            if Instant::now() >= next_purge {
                match store.purge().await {
                    Ok(n) => debug!(rows = n, "outbox clean-up"),
                    Err(e) => warn!(error = %e, "outbox clean-up failed"),
                }
                next_purge = Instant::now() + purge_every;
            }
            // A round runs to its end, even when asked to stop: what it
            // published is then marked.
            let mut published = 0;
            let round = DB::round(store.pool(), store.tables(), batch, &publishing)
                .await
                .map_err(|e| database("an outbox round failed", e))
                .and_then(|p| {
                    let sent = p.sent.len() as u64;
                    status.send_modify(|s| {
                        s.published += sent;
                        if sent > 0 {
                            s.last_published_at = Some(SystemTime::now());
                        }
                    });
                    published = sent;
                    p.error.map_or(Ok(sent), Err)
                });
            #[cfg(feature = "metrics")]
            {
                count_round(store, published, round.is_err());
                if Instant::now() >= next_backlog {
                    record_backlog(store).await;
                    next_backlog = Instant::now() + BACKLOG_EVERY;
                }
            }
            let wait = match round {
                Ok(sent) => {
                    if failures > 0 {
                        debug!("the outbox relay publishes again");
                    }
                    failures = 0;
                    status.send_modify(|s| s.failures = 0);
                    if sent > 0 {
                        eager = None;
                        continue;
                    }
                    match eager {
                        Some(d) if d < self.poll => {
                            eager = Some(d * 2);
                            d
                        }
                        _ => {
                            eager = None;
                            self.poll
                        }
                    }
                }
                Err(e) => {
                    let delay = self.backoff.delay(failures);
                    failures = failures.saturating_add(1);
                    warn!(error = %e, failures, ?delay, "the outbox relay could not publish; the events wait in the database");
                    status.send_modify(|s| {
                        s.failures = failures;
                        s.last_error = Some(e.to_string());
                        s.last_error_at = Some(SystemTime::now());
                    });
                    // No wake-up shortens a backoff.
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                    continue;
                }
            };
            tokio::select! {
                () = store.wake().notified() => eager = Some(EAGER),
                () = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        if let Some(listener) = listener {
            listener.abort();
        }
        if let Err(e) = DB::release(store.pool(), store.tables(), &publishing.relay).await {
            debug!(error = %e, "the outbox relay could not give up its lease");
        }
    }
}

/// How often a relay reads its backlog into the outbox gauges while metrics
/// are recorded: a busy relay runs rounds back to back, and the gauges need
/// not cost each of them a query.
#[cfg(feature = "metrics")]
const BACKLOG_EVERY: Duration = Duration::from_secs(1);

/// Counts what a round published or that it failed, while metrics are
/// recorded.
#[cfg(feature = "metrics")]
fn count_round<DB: Backend>(store: &Store<DB>, published: u64, failed: bool) {
    let Some(m) = crate::metrics::get() else {
        return;
    };
    let counts = m.outbox.get(&store.tables().outbox());
    counts.published.add(published);
    if failed {
        counts.failed_rounds.inc();
    }
}

/// Reads the backlog into the outbox gauges (`warren_outbox_pending`,
/// `warren_outbox_relay_lag_seconds`) while metrics are recorded: one
/// `COUNT`/`MIN` over the unsent rows' index.
#[cfg(feature = "metrics")]
async fn record_backlog<DB: Backend>(store: &Store<DB>) {
    let Some(m) = crate::metrics::get() else {
        return;
    };
    let counts = m.outbox.get(&store.tables().outbox());
    match store.backlog().await {
        Ok((pending, age)) => {
            counts
                .pending
                .set(i64::try_from(pending).unwrap_or(i64::MAX));
            counts
                .lag_ms
                .set(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
        }
        Err(e) => debug!(error = %e, "cannot read the outbox backlog for the gauges"),
    }
}

/// What a relay has done, from [`RelayHandle::status`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayStatus {
    /// Events published (and marked sent) since it started.
    pub published: u64,
    /// When it last published one.
    pub last_published_at: Option<SystemTime>,
    /// Rounds that failed in a row (0 while it publishes): the broker or
    /// the database is away, and the events wait.
    pub failures: u32,
    /// The last failure, kept after it passed.
    pub last_error: Option<String>,
    /// When the last failure happened.
    pub last_error_at: Option<SystemTime>,
}

/// A running [`Relay`]. [`RelayHandle::shutdown`] stops it after the round
/// in progress; dropping it stops it too, without waiting.
pub struct RelayHandle<DB: Backend> {
    store: Store<DB>,
    status: watch::Receiver<RelayStatus>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl<DB: Backend> fmt::Debug for RelayHandle<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayHandle")
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl<DB: Backend> RelayHandle<DB> {
    /// What it has done so far.
    #[must_use]
    pub fn status(&self) -> RelayStatus {
        self.status.borrow().clone()
    }

    /// Its status as it changes.
    #[must_use]
    pub fn watch(&self) -> watch::Receiver<RelayStatus> {
        self.status.clone()
    }

    /// How many events wait in the outbox ([`Store::pending`]).
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn pending(&self) -> Result<u64, Error> {
        self.store.pending().await
    }

    /// Stops it once the round in progress has ended (and marked what it
    /// published).
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl<DB: Backend> Drop for RelayHandle<DB> {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}
