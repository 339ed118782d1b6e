//! One supervised broker connection, shared by clients and nodes.
//!
//! A background task connects (trying each URL in turn, with exponential
//! backoff and jitter), watches the connection, and on loss starts over.
//! Users of the connection (the [`Client`](crate::Client)'s reply channel,
//! a [`Node`](crate::Node)'s consumers) wait on [`Connection::link`] for each
//! new connection and rebuild their channels and topology on it.

use crate::config::{BrokerUrl, Config};
use crate::error::Error;
use futures::StreamExt;
use lapin::{ConnectionProperties, Event};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

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
        /// Failed attempts so far.
        attempts: u32,
        /// The last error, if an attempt failed.
        last_error: Option<String>,
    },
    /// The configured attempts are used up; still trying, at the longest delay.
    Down {
        /// When the connection was lost.
        since: SystemTime,
        /// The last error.
        last_error: String,
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

    /// Why calls cannot be sent now, for error messages.
    fn reason(&self) -> String {
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
}

struct Shared {
    config: Config,
    state: watch::Sender<ConnectionState>,
    link: watch::Sender<Option<Link>>,
    closed: watch::Sender<bool>,
}

/// A supervised connection to the broker: reconnects by itself and tells
/// its state. Cheap to clone; the last clone dropped closes it.
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
    /// # Errors
    /// [`Error::Config`] for an unusable configuration;
    /// [`Error::Unavailable`] when `config.backoff.max_attempts` attempts
    /// all failed (the connection is closed then).
    pub async fn connect(config: Config) -> Result<Self, Error> {
        let conn = Self::start(config)?;
        let mut state = conn.state();
        loop {
            let now = state.borrow_and_update().clone();
            match now {
                ConnectionState::Connected { .. } => return Ok(conn),
                ConnectionState::Down { last_error, .. } => {
                    conn.close();
                    return Err(Error::Unavailable { reason: last_error });
                }
                ConnectionState::Closed => return Err(Error::Shutdown),
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
        let (state, _) = watch::channel(ConnectionState::Reconnecting {
            since: SystemTime::now(),
            attempts: 0,
            last_error: None,
        });
        let (link, _) = watch::channel(None);
        let (closed, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            config,
            state,
            link,
            closed: closed.clone(),
        });
        tokio::spawn(supervise(shared.clone()));
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

    /// Why there is no usable connection now.
    pub(crate) fn unavailable(&self) -> Error {
        if *self.shared.closed.borrow() {
            return Error::Shutdown;
        }
        Error::Unavailable {
            reason: self.shared.state.borrow().reason(),
        }
    }

    /// The broker's reason for blocking publishers, if it does now.
    pub(crate) fn blocked(&self) -> Option<String> {
        match &*self.shared.state.borrow() {
            ConnectionState::Connected { blocked, .. } => blocked.clone(),
            _ => None,
        }
    }
}

/// Resolves once `closed` turns true (or its sender is gone).
pub(crate) async fn until_closed(closed: &mut watch::Receiver<bool>) {
    let _ = closed.wait_for(|c| *c).await;
}

async fn open(config: &Config, url: &BrokerUrl) -> Result<lapin::Connection, String> {
    let mut uri: lapin::uri::AMQPUri = url.expose().parse()?;
    if uri.query.heartbeat.is_none() {
        uri.query.heartbeat = Some(config.heartbeat.as_secs().clamp(1, 65_535) as u16);
    }
    let name = config
        .connection_name
        .clone()
        .unwrap_or_else(|| "warren".to_owned());
    let props = ConnectionProperties::default().with_connection_name(name.into());
    match tokio::time::timeout(
        config.connect_timeout,
        lapin::Connection::connect_uri(uri, props),
    )
    .await
    {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer from {url} within {:?}",
            config.connect_timeout
        )),
    }
}

/// Connects and reconnects until closed.
async fn supervise(shared: Arc<Shared>) {
    let config = &shared.config;
    let mut closed = shared.closed.subscribe();
    let mut generation = 0u64;
    let mut attempts = 0u32;
    let mut since = SystemTime::now();
    let mut next_url = 0usize;
    let mut last_error = None::<String>;
    'outer: loop {
        if *closed.borrow() {
            break;
        }
        // One round: every URL once, starting from the last that worked.
        let mut connected = None;
        for i in 0..config.urls.len() {
            let idx = (next_url + i) % config.urls.len();
            let url = &config.urls[idx];
            match open(config, url).await {
                Ok(conn) => {
                    next_url = idx;
                    connected = Some(conn);
                    break;
                }
                Err(e) => {
                    debug!(%url, error = %e, "connection attempt failed");
                    last_error = Some(format!("{url}: {e}"));
                }
            }
        }
        let Some(conn) = connected else {
            attempts += 1;
            let err = last_error.clone().unwrap_or_default();
            let given_up = config.backoff.max_attempts.is_some_and(|m| attempts >= m);
            if given_up {
                let was_down = matches!(&*shared.state.borrow(), ConnectionState::Down { .. });
                if !was_down {
                    error!(error = %err, attempts, "cannot reach the broker; still trying");
                }
                shared.state.send_replace(ConnectionState::Down {
                    since,
                    last_error: err,
                });
            } else {
                shared.state.send_replace(ConnectionState::Reconnecting {
                    since,
                    attempts,
                    last_error: Some(err),
                });
            }
            let delay = if given_up {
                config.backoff.max
            } else {
                config.backoff.delay(attempts - 1)
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => continue,
                () = until_closed(&mut closed) => break 'outer,
            }
        };

        generation += 1;
        let conn = Arc::new(conn);
        let mut events = conn.events_listener();
        info!(url = %config.urls[next_url], generation, "connected to the broker");
        attempts = 0;
        shared.state.send_replace(ConnectionState::Connected {
            since: SystemTime::now(),
            blocked: None,
        });
        shared.link.send_replace(Some(Link {
            conn: conn.clone(),
            generation,
        }));

        // Watch the connection: lapin reports most losses as events; the
        // status poll catches the rest (a close that raised no event).
        let mut poll = tokio::time::interval(Duration::from_millis(250));
        let lost = loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Event::ConnectionBlocked(reason)) => {
                        warn!(%reason, "the broker blocked publishing");
                        shared.state.send_modify(|s| {
                            if let ConnectionState::Connected { blocked, .. } = s {
                                *blocked = Some(reason);
                            }
                        });
                    }
                    Some(Event::ConnectionUnblocked) => {
                        info!("the broker unblocked publishing");
                        shared.state.send_modify(|s| {
                            if let ConnectionState::Connected { blocked, .. } = s {
                                *blocked = None;
                            }
                        });
                    }
                    Some(Event::Error(e)) if !conn.status().connected() => break e.to_string(),
                    Some(_) => {}
                    None => break "the connection's event stream ended".to_owned(),
                },
                _ = poll.tick() => {
                    if !conn.status().connected() {
                        break "the connection is no longer open".to_owned();
                    }
                }
                () = until_closed(&mut closed) => {
                    shared.link.send_replace(None);
                    let _ = conn.close(200, "closing".into()).await;
                    break 'outer;
                }
            }
        };
        warn!(error = %lost, generation, "lost the broker connection; reconnecting");
        shared.link.send_replace(None);
        since = SystemTime::now();
        last_error = Some(lost.clone());
        shared.state.send_replace(ConnectionState::Reconnecting {
            since,
            attempts: 0,
            last_error: Some(lost),
        });
        // Make sure lapin's side is torn down too (a stalled socket).
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.close(320, "lost".into())).await;
    }
    shared.link.send_replace(None);
    shared.state.send_replace(ConnectionState::Closed);
    info!("broker connection closed");
}
