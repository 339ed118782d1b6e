//! One supervised broker connection, shared by clients and nodes.
//!
//! A background task (`supervisor.rs`) connects (trying each URL in turn,
//! with exponential backoff and jitter), watches the connection, and on
//! loss starts over.
//! Users of the connection (the [`Client`](crate::Client)'s reply channel,
//! a [`Node`](crate::Node)'s consumers) wait on [`Connection::link`] for each
//! new connection and rebuild their channels and topology on it.

use crate::config::Config;
use crate::error::Error;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;
use tokio::sync::watch;

/// Where the broker connection stands.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Connected; `blocked` holds the broker's reason while it has blocked
    /// publishing (a memory or disk alarm).
    Connected {
        /// When the connection came up.
        since: SystemTime,
        /// The broker's reason for blocking publishers, if it does.
        blocked: Option<String>,
    },
    /// Not connected, trying again.
    Reconnecting {
        /// When the connection was lost (or the first attempt started).
        since: SystemTime,
        /// Failed rounds so far (a round tries every URL once).
        attempts: u32,
        /// The last error, if an attempt failed.
        last_error: Option<String>,
    },
    /// [`Backoff::max_attempts`](crate::config::Backoff::max_attempts)
    /// rounds failed (only when it is set); still trying, every
    /// `Backoff::max`.
    Down {
        /// When the connection was lost.
        since: SystemTime,
        /// The last error.
        last_error: String,
    },
    /// The broker refused the first connection for a reason retrying
    /// cannot fix (a wrong user name or password, an unknown vhost, TLS
    /// spoken to a plain port); the connection is closed. `reason` names
    /// the setting to fix; calls fail with the typed error
    /// ([`Error::AuthenticationRefused`], [`Error::VhostNotFound`],
    /// [`Error::Tls`]).
    Refused {
        /// What the broker said, and what to fix.
        reason: String,
    },
    /// [`Connection::close`] was called.
    Closed,
}

impl ConnectionState {
    /// Whether calls can be sent now.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        matches!(self, Self::Connected { blocked: None, .. })
    }

    /// Its short name: `connected`, `blocked`, `reconnecting`, `down`,
    /// `refused` or `closed`.
    #[cfg_attr(not(any(feature = "http", feature = "metrics")), allow(dead_code))]
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Connected { blocked: None, .. } => "connected",
            Self::Connected { .. } => "blocked",
            Self::Reconnecting { .. } => "reconnecting",
            Self::Down { .. } => "down",
            Self::Refused { .. } => "refused",
            Self::Closed => "closed",
        }
    }

    /// Why calls cannot be sent now, for error messages.
    pub(crate) fn reason(&self) -> String {
        match self {
            Self::Connected { blocked: None, .. } => "connected".into(),
            Self::Connected {
                blocked: Some(r), ..
            } => format!("the broker blocked publishing: {r}"),
            Self::Reconnecting {
                last_error: Some(e),
                ..
            } => format!("reconnecting; last error: {e}"),
            Self::Reconnecting { .. } => "connecting".into(),
            Self::Down { last_error, .. } => format!("broker down: {last_error}"),
            Self::Refused { reason } => reason.clone(),
            Self::Closed => "the connection was closed".into(),
        }
    }
}

/// A live lapin connection with its generation number; a new one comes
/// after every reconnect.
#[derive(Clone)]
pub(crate) struct Link {
    pub(crate) conn: Arc<lapin::Connection>,
    pub(crate) generation: u64,
    /// When this connection came up.
    pub(crate) connected_at: std::time::Instant,
}

impl Link {
    /// Until when this connection is settling ([`Config::settle`]): set
    /// only on a reconnection, while the nodes may still be coming back.
    pub(crate) fn settling_until(&self, settle: std::time::Duration) -> Option<std::time::Instant> {
        (self.generation > 1 && !settle.is_zero()).then(|| self.connected_at + settle)
    }
}

/// What a connection's handles and its supervisor share.
pub(super) struct Shared {
    pub(super) config: Config,
    pub(super) state: watch::Sender<ConnectionState>,
    pub(super) link: watch::Sender<Option<Link>>,
    pub(super) closed: watch::Sender<bool>,
    /// Why the broker refused the first connection for good, if it did.
    pub(super) refused: OnceLock<Error>,
    /// The deliveries whose bodies were over `config.max_body` and were
    /// dropped on arrival (see `bodies.rs`).
    pub(super) oversized: Arc<super::bodies::Oversized>,
}

/// A supervised connection to the broker: reconnects by itself and tells
/// its state. Cheap to clone; the last clone dropped closes it.
///
/// ```no_run
/// use warren::{Config, Connection, ConnectionState};
///
/// # async fn run() -> Result<(), warren::Error> {
/// // RABBITMQ_URL (or WARREN_AMQP_URL), the deadline, the backoff, ...
/// let conn = Connection::connect(Config::from_env()?).await?;
///
/// // Watch it: every reconnect and loss shows here (and in the logs).
/// let mut state = conn.state();
/// tokio::spawn(async move {
///     while state.changed().await.is_ok() {
///         if let ConnectionState::Reconnecting { attempts, .. } = &*state.borrow() {
///             eprintln!("broker lost, attempt {attempts}");
///         }
///     }
/// });
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
    _guard: Arc<CloseOnDrop>,
}

struct CloseOnDrop(watch::Sender<bool>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("urls", &self.shared.config.urls)
            .field("state", &*self.shared.state.borrow())
            .finish()
    }
}

impl Connection {
    /// Connects, waiting for the first connection to succeed.
    ///
    /// Failures that retrying cannot fix end it at once, with an error
    /// that names the setting to fix; failures that may pass (the broker
    /// not there yet, a reset, a timeout) are retried with backoff.
    ///
    /// # Errors
    /// [`Error::Config`] for an unusable configuration;
    /// [`Error::AuthenticationRefused`], [`Error::VhostNotFound`] or
    /// [`Error::Tls`] at once when the broker refuses for good;
    /// [`Error::Unavailable`] when `config.backoff.max_attempts` attempts
    /// all failed (the connection is closed then).
    pub async fn connect(config: Config) -> Result<Self, Error> {
        let conn = Self::start(config)?;
        let mut state = conn.state();
        loop {
            match state.borrow_and_update().clone() {
                ConnectionState::Connected { .. } => return Ok(conn),
                ConnectionState::Down { last_error, .. } => {
                    conn.close();
                    return Err(Error::Unavailable { reason: last_error });
                }
                ConnectionState::Refused { .. } | ConnectionState::Closed => {
                    return Err(conn.unavailable())
                }
                ConnectionState::Reconnecting { .. } => {}
            }
            if state.changed().await.is_err() {
                return Err(Error::Shutdown);
            }
        }
    }

    /// Starts connecting in the background and returns at once; calls wait
    /// for the connection (or fail fast, by configuration).
    ///
    /// # Errors
    /// [`Error::Config`] for an unusable configuration.
    pub fn start(config: Config) -> Result<Self, Error> {
        config.validate()?;
        let state = watch::Sender::new(ConnectionState::Reconnecting {
            since: SystemTime::now(),
            attempts: 0,
            last_error: None,
        });
        crate::record::connection(&state);
        let closed = watch::Sender::new(false);
        let shared = Arc::new(Shared {
            config,
            state,
            link: watch::Sender::new(None),
            closed: closed.clone(),
            refused: OnceLock::new(),
            oversized: Arc::default(),
        });
        tokio::spawn(super::supervisor::supervise(shared.clone()));
        Ok(Self {
            shared,
            _guard: Arc::new(CloseOnDrop(closed)),
        })
    }

    /// The current state, and changes to it.
    #[must_use]
    pub fn state(&self) -> watch::Receiver<ConnectionState> {
        self.shared.state.subscribe()
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The announced size of delivery `tag` on `channel` if its body was
    /// over [`Config::max_body`] and dropped on arrival (such a delivery
    /// comes with an empty `body`); forgets it.
    pub(crate) fn oversized(&self, channel: u16, tag: u64, body: &[u8]) -> Option<u64> {
        body.is_empty()
            .then(|| self.shared.oversized.take(channel, tag))
            .flatten()
    }

    /// Closes the connection; clients and nodes on it stop.
    pub fn close(&self) {
        self.shared.closed.send_replace(true);
    }

    /// Whether [`Connection::close`] was called.
    pub(crate) fn closed(&self) -> watch::Receiver<bool> {
        self.shared.closed.subscribe()
    }

    /// The live connection, and changes to it.
    pub(crate) fn link(&self) -> watch::Receiver<Option<Link>> {
        self.shared.link.subscribe()
    }

    /// Why there is no usable connection now: the broker's refusal if it
    /// refused for good, [`Error::Shutdown`] once closed.
    pub(crate) fn unavailable(&self) -> Error {
        if let Some(refused) = self.shared.refused.get() {
            return refused.clone();
        }
        if *self.shared.closed.borrow() {
            return Error::Shutdown;
        }
        Error::Unavailable {
            reason: self.shared.state.borrow().reason(),
        }
    }

    /// The broker's reason for blocking publishers, if it does now.
    pub(crate) fn blocked(&self) -> Option<String> {
        blocked(&self.shared.state.borrow())
    }

    /// Resolves with the broker's reason once it blocks publishing on this
    /// connection (at once if it does now); never, if it does not.
    pub(crate) async fn until_blocked(&self) -> String {
        let mut state = self.shared.state.subscribe();
        let changed = state.wait_for(|s| blocked(s).is_some()).await;
        match changed.ok().and_then(|s| blocked(&s)) {
            Some(reason) => reason,
            None => std::future::pending().await,
        }
    }
}

fn blocked(state: &ConnectionState) -> Option<String> {
    match state {
        ConnectionState::Connected { blocked, .. } => blocked.clone(),
        _ => None,
    }
}

/// Resolves once `closed` turns true (or its sender is gone); also any
/// other stop flag.
pub(crate) async fn until_closed(closed: &mut watch::Receiver<bool>) {
    let _ = closed.wait_for(|c| *c).await;
}

/// How long to wait before building again on a connection that is still
/// up, so that a refusal repeated by the broker does not spin.
const REBUILD_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);

/// The one reconnection loop of everything that lives on a connection (a
/// client's session, a node's consumers, announcements and their
/// listener):
///
/// ```ignore
/// let mut links = Links::new(&conn);
/// while let Some(link) = links.next(stop).await {
///     // build channels on `link`, work until they are lost; `continue`
///     // builds again, `break` stops for good
/// }
/// ```
///
/// [`Links::next`] waits for a live connection: the same one again, after
/// a pause, when it is still up (only the channels died, or building
/// failed), else the next one.
pub(crate) struct Links {
    links: watch::Receiver<Option<Link>>,
    closed: watch::Receiver<bool>,
    /// The connection built on last.
    last: Option<Link>,
}

impl Links {
    pub(crate) fn new(conn: &Connection) -> Self {
        Self {
            links: conn.link(),
            closed: conn.closed(),
            last: None,
        }
    }

    /// The connection to build on next; `None` once the connection is
    /// closed or `stop` resolves first.
    pub(crate) async fn next(
        &mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Option<Link> {
        tokio::pin!(stop);
        let mut lost = None;
        if let Some(last) = self.last.take() {
            if last.conn.status().connected() {
                tokio::select! {
                    () = tokio::time::sleep(REBUILD_PAUSE) => {}
                    () = until_closed(&mut self.closed) => return None,
                    () = &mut stop => return None,
                }
            } else {
                lost = Some(last.generation);
            }
        }
        let link = tokio::select! {
            l = self.links.wait_for(|l| l.as_ref().is_some_and(|l| Some(l.generation) != lost)) => {
                l.ok().and_then(|l| l.clone())?
            }
            () = until_closed(&mut self.closed) => return None,
            () = &mut stop => return None,
        };
        self.last = Some(link.clone());
        Some(link)
    }
}

/// Told once how setting up on the first connection went; `None` after.
pub(crate) type Ready = Option<tokio::sync::oneshot::Sender<Result<(), Error>>>;

/// How a consumer's time on one connection ended.
pub(crate) enum Finish {
    /// It was told to stop: it is done.
    Stopped,
    /// The connection or its channel went: it consumes on the next one.
    Lost,
}

/// Whether a consumer (a node's, a subscription's) whose time on one
/// connection ended with `consumed` goes on to the next [`Link`]: not once
/// stopped; failing to set up on the first connection is told to `ready`
/// and ends it (the start-up fails); on a later connection it is logged and
/// set up again.
pub(crate) fn consume_again(
    consumed: Result<Finish, Error>,
    ready: &mut Ready,
    what: &str,
) -> bool {
    match consumed {
        Ok(Finish::Stopped) => false,
        Ok(Finish::Lost) => true,
        Err(e) => match ready.take() {
            Some(ready) => {
                let _ = ready.send(Err(e));
                false
            }
            None => {
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "cannot set up {what}; retrying"
                );
                true
            }
        },
    }
}

/// The deliveries of `consumer`, each with `tag`, then `None` once it ends:
/// merged with others, it tells which one ended while the rest may go on.
pub(crate) fn tagged<T: Clone>(
    consumer: lapin::Consumer,
    tag: T,
) -> impl futures::Stream<Item = Option<(T, lapin::Result<lapin::message::Delivery>)>> {
    use futures::StreamExt;
    consumer
        .map(move |d| Some((tag.clone(), d)))
        .chain(futures::stream::once(std::future::ready(None)))
}

/// Stops `what` consuming (cancels `tags`), waits up to `grace` for running
/// handlers (all `concurrency` of `permits` back), then closes the channel,
/// which hands every delivery not yet started back to its queue.
pub(crate) async fn drain(
    what: &str,
    channel: &lapin::Channel,
    tags: &[lapin::types::ShortString],
    permits: &tokio::sync::Semaphore,
    concurrency: usize,
    grace: std::time::Duration,
) {
    for tag in tags {
        let _ = channel
            .basic_cancel(tag.clone(), lapin::options::BasicCancelOptions::default())
            .await;
    }
    let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "{what}: handlers still running at the end of the grace period"
        );
    }
    let _ = channel.close(200, "consumer stopped".into()).await;
}
