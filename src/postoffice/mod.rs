//! The PostOffice: a WebSocket gateway that routes clients (browsers,
//! apps) onto the bus.
//!
//! A client connects to `GET /ws`, authenticates with its first frame,
//! then sends requests as JSON frames; each is routed to a service as a
//! warren call (over the broker, or over HTTP while the broker is down),
//! and the reply comes back on the same connection. Services push frames
//! to one connection, to a user's connections or to every client with a
//! [`Pusher`], whichever PostOffice instance holds them. `GET /services`
//! and the `services` frame list the services that announced themselves.
//! The protocol, its close codes and the defaults of [`Limits`] are in
//! docs/POSTOFFICE.md.
//!
//! A PostOffice is a warren client (the requests it routes) and a warren
//! node (of type `postoffice`, serving the pushes). Serve it with
//! [`PostOffice::serve`] (warren's listener: header-read and idle
//! timeouts, the connection limit of [`Limits`], optional TLS), embed it
//! in an axum application with [`PostOffice::router`], or run the
//! `postoffice` binary.
//!
//! ```no_run
//! use warren::postoffice::{Identity, PostOffice, TokenList};
//! use warren::{Config, Connection};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let conn = Connection::connect(Config::from_env()?).await?;
//! let tokens = TokenList::new().token("s3cret", Identity::user("ann"))?;
//! let office = PostOffice::builder().authenticator(tokens).start(&conn).await?;
//! let app = axum::Router::new().merge(office.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```

mod auth;
mod env;
mod frames;
mod hub;
mod limits;
mod push;
mod session;

pub use auth::{AuthError, Authenticator, Identity, Jwt, TokenList};
pub use env::ENV_HELP;
pub use limits::Limits;
pub use push::{Pusher, DEFAULT_SERVICE, PUSH_METHOD};

use crate::address::{Peer, ServiceId, ServiceType};
use crate::amqp::{Client, Connection};
use crate::context::Context;
use crate::discovery::Peers;
use crate::error::Error;
use crate::http::{FallbackLayer, HttpClient, Token};
use crate::node::Node;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hub::Hub;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tower::Layer;

/// Close code: the connection did not authenticate (no `auth` frame in
/// time, a refused token, or another frame first). Nothing of it was routed.
pub const CLOSE_UNAUTHENTICATED: u16 = 4001;
/// Close code: nothing came from the client (not even a pong) for
/// [`Limits::idle_timeout`].
pub const CLOSE_IDLE: u16 = 4002;
/// Close code: the client did not read its frames and its send queue
/// ([`Limits::send_queue`]) filled.
pub const CLOSE_SLOW_READER: u16 = 4008;

/// Request header: the user of the connection that made the request.
pub const USER_HEADER: &str = "x-postoffice-user";
/// Request header: the client application, when the credential names one.
pub const CLIENT_HEADER: &str = "x-postoffice-client";
/// Request header: the id of the connection, for [`Pusher::to_connection`].
pub const CONNECTION_HEADER: &str = "x-postoffice-connection";

/// Who made a request through a PostOffice, read by the service from the
/// request's headers.
///
/// ```
/// # async fn handler() {
/// if let Some(caller) = warren::postoffice::Caller::current() {
///     println!("{} on connection {}", caller.user, caller.connection);
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Caller {
    /// The authenticated user.
    pub user: String,
    /// The client application, if the credential named one.
    pub client: Option<String>,
    /// The connection the request came on.
    pub connection: String,
}

impl Caller {
    /// The caller of a request served with `context`, if it came through
    /// a PostOffice.
    #[must_use]
    pub fn from_context(context: &Context) -> Option<Self> {
        let h = &context.headers;
        Some(Self {
            user: h.get(USER_HEADER)?.to_owned(),
            client: h.get(CLIENT_HEADER).map(str::to_owned),
            connection: h.get(CONNECTION_HEADER)?.to_owned(),
        })
    }

    /// The caller of the request the current task serves.
    #[must_use]
    pub fn current() -> Option<Self> {
        Self::from_context(&Context::current()?)
    }
}

/// A connection id: `<postoffice-id>/<n>`, so a push to it finds the
/// PostOffice instance holding it.
pub(crate) struct ConnectionId {
    pub(crate) postoffice: ServiceId,
}

impl ConnectionId {
    pub(crate) fn parse(id: &str) -> Option<Self> {
        let (postoffice, n) = id.rsplit_once('/')?;
        n.parse::<u64>().ok()?;
        Some(Self {
            postoffice: ServiceId::new(postoffice).ok()?,
        })
    }
}

/// The read buffer of a connection (bytes).
const READ_BUFFER: usize = 8 * 1024;

/// The transport requests are routed with: the broker, HTTP while it is down.
pub(crate) type Transport = crate::http::Fallback<Client, HttpClient>;

pub(crate) struct Shared {
    pub(crate) id: ServiceId,
    pub(crate) transport: Transport,
    pub(crate) auth: Box<dyn Authenticator>,
    pub(crate) limits: Limits,
    pub(crate) hub: Arc<Hub>,
    peers: Peers,
    connections: Arc<Semaphore>,
    next: AtomicU64,
    /// Set when it starts shutting down: readiness then says it is not
    /// accepting.
    closing: AtomicBool,
    /// Readiness: the broker connection, the push node, and whether it
    /// accepts new clients.
    checks: crate::health::Checks,
}

impl Shared {
    /// A new connection id on this PostOffice.
    pub(crate) fn connection_id(&self) -> String {
        format!("{}/{}", self.id, self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// The services known, of type `service` if given.
    pub(crate) fn services(&self, service: Option<&str>) -> Vec<ServiceInfo> {
        self.peers
            .list()
            .into_iter()
            .filter(|p| service.is_none_or(|s| p.service.as_str() == s))
            .map(|p| ServiceInfo {
                id: p.id.to_string(),
                service: p.service.to_string(),
                http_url: p.url,
                methods: p.methods,
            })
            .collect()
    }
}

/// One service instance, as `GET /services` and the `services` frame list it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ServiceInfo {
    id: String,
    #[serde(rename = "type")]
    service: String,
    http_url: String,
    methods: Vec<String>,
}

/// Counters of a PostOffice since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Connections held now (authenticated).
    pub connections: usize,
    /// Push frames queued to a connection.
    pub pushes_delivered: u64,
    /// Pushes that reached this PostOffice and matched no connection here.
    pub pushes_dropped: u64,
    /// Connections closed because their send queue filled.
    pub slow_readers: u64,
    /// Connections refused: over the limit, or not authenticated.
    pub refused: u64,
}

/// Settings of a PostOffice; start one with [`PostOfficeBuilder::start`].
#[must_use]
pub struct PostOfficeBuilder {
    service: ServiceType,
    id: ServiceId,
    limits: Limits,
    auth: Option<Box<dyn Authenticator>>,
    http_token: Option<Token>,
    #[cfg(feature = "tls")]
    tls: Option<crate::listen::ServerTls>,
    #[cfg(feature = "tls")]
    http_ca: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for PostOfficeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostOfficeBuilder")
            .field("service", &self.service)
            .field("id", &self.id)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A running PostOffice: its node (for pushes) and what its routes share.
/// Dropping it stops the node; [`PostOffice::shutdown`] stops it gracefully.
pub struct PostOffice {
    shared: Arc<Shared>,
    node: Option<Node>,
    #[cfg(feature = "tls")]
    tls: Option<crate::listen::ServerTls>,
}

impl std::fmt::Debug for PostOffice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostOffice")
            .field("id", &self.shared.id)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl PostOffice {
    /// A PostOffice of type [`DEFAULT_SERVICE`] with a random id, the
    /// default [`Limits`], and no authenticator (set one).
    pub fn builder() -> PostOfficeBuilder {
        PostOfficeBuilder {
            service: ServiceType::new(DEFAULT_SERVICE).expect("a valid service type"),
            id: ServiceId::random(),
            limits: Limits::default(),
            auth: None,
            http_token: None,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            http_ca: None,
        }
    }

    /// This PostOffice's instance id (its connection ids start with it).
    #[must_use]
    pub fn id(&self) -> &ServiceId {
        &self.shared.id
    }

    /// `GET /ws` (the WebSocket), `GET /services`, and the probes
    /// `GET /health/live` and `GET /health/ready` ([`crate::health`]), to
    /// serve or to merge into an application's router. It is ready while
    /// its broker connection is up, its push node consumes, and it is
    /// `accepting`: below [`Limits::max_connections`] and not shutting
    /// down.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/ws", get(upgrade))
            .route("/services", get(services))
            .with_state(self.shared.clone())
            .merge(crate::health::probes(self.shared.checks.clone()))
    }

    /// Serves [`PostOffice::router`] on `listener` with warren's listener
    /// ([`crate::listen`]) until `shutdown` completes: connections bounded
    /// by [`Limits::max_connections`] (one more is closed at once),
    /// [`Limits::header_read_timeout`] and, for connections not upgraded,
    /// [`Limits::idle_timeout`]; HTTPS with [`PostOfficeBuilder::tls`].
    /// WebSockets outlive the shutdown; [`PostOffice::shutdown`] then.
    ///
    /// # Errors
    /// [`Error::Config`] if the TLS files cannot be used.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        #[allow(unused_mut)]
        let mut listen = self.shared.limits.listen();
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            listen = listen.tls(tls.clone());
        }
        let prepared = listen.prepare("postoffice")?;
        let shared = self.shared.clone();
        let shutdown = async move {
            shutdown.await;
            shared.closing.store(true, Ordering::Relaxed);
        };
        prepared
            .serve(listener, self.router(), shutdown)
            .await
            .map_err(|e| Error::Config(format!("the PostOffice listener failed: {e}")))
    }

    /// `wss` when it serves TLS ([`PostOfficeBuilder::tls`]), else `ws`.
    #[must_use]
    pub fn scheme(&self) -> &'static str {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return "wss";
        }
        "ws"
    }

    /// The registry of services it answers `services` from.
    #[must_use]
    pub fn peers(&self) -> &Peers {
        &self.shared.peers
    }

    /// Its counters now.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let c = &self.shared.hub.stats;
        Stats {
            connections: self.shared.hub.len(),
            pushes_delivered: c.pushes_delivered.load(Ordering::Relaxed),
            pushes_dropped: c.pushes_dropped.load(Ordering::Relaxed),
            slow_readers: c.slow_readers.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
        }
    }

    /// Stops taking pushes (the node shuts down); the routes stop with
    /// the server serving them.
    pub async fn shutdown(mut self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
    }
}

impl PostOfficeBuilder {
    /// The service type of the PostOffice nodes (default `postoffice`);
    /// pushers name it with [`Pusher::service`].
    pub fn service(mut self, service: ServiceType) -> Self {
        self.service = service;
        self
    }

    /// The instance id (default: random).
    pub fn id(mut self, id: ServiceId) -> Self {
        self.id = id;
        self
    }

    /// Serves HTTPS (`wss://`) under [`PostOffice::serve`] with `tls`.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::listen::ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Trusts the CAs in the PEM file `ca` when it calls services over
    /// HTTPS (the fallback), besides the platform's.
    #[cfg(feature = "tls")]
    pub fn http_tls_ca(mut self, ca: impl Into<std::path::PathBuf>) -> Self {
        self.http_ca = Some(ca.into());
        self
    }

    /// The limits (default: [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Who may connect, and as whom.
    pub fn authenticator(mut self, auth: impl Authenticator) -> Self {
        self.auth = Some(Box::new(auth));
        self
    }

    /// The bearer token of the services' HTTP endpoints, for the HTTP
    /// fallback while the broker is down.
    pub fn http_token(mut self, token: Option<Token>) -> Self {
        self.http_token = token;
        self
    }

    /// Starts the node that takes pushes and learns the services from
    /// their announcements on `conn`; then serve [`PostOffice::router`].
    ///
    /// # Errors
    /// [`Error::Config`] without an authenticator; as
    /// [`NodeBuilder::serve`](crate::NodeBuilder::serve) otherwise.
    pub async fn start(self, conn: &Connection) -> Result<PostOffice, Error> {
        let auth = self.auth.ok_or_else(|| {
            Error::Config("a PostOffice needs an authenticator (a token list or JWT)".into())
        })?;
        self.limits.check()?;
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            // A bad file fails here, at start, rather than at serve.
            tls.acceptor()?;
        }
        let peers = Peers::new();
        peers.learn_from(conn);
        #[allow(unused_mut)]
        let mut http = HttpClient::new(peers.clone())?
            .token(self.http_token)
            .default_timeout(self.limits.default_timeout);
        #[cfg(feature = "tls")]
        if let Some(ca) = &self.http_ca {
            http = http.tls_ca(ca)?;
        }
        let identity = Peer::new(Some(self.service.clone()), Some(self.id.clone()));
        let transport = FallbackLayer::new(conn, http).layer(Client::with_identity(conn, identity));
        let hub = Arc::new(Hub::default());
        let pushes = hub.clone();
        let handler =
            tower::service_fn(move |request| std::future::ready(push::deliver(&pushes, &request)));
        let node = Node::builder(self.service)
            .id(self.id.clone())
            .serve(conn, handler)
            .await?;
        let shared = Arc::new_cyclic(|weak: &std::sync::Weak<Shared>| {
            let weak = weak.clone();
            let max = self.limits.max_connections;
            let accepting = move || {
                let Some(shared) = weak.upgrade() else {
                    return Err("postoffice: stopped".to_owned());
                };
                if shared.closing.load(Ordering::Relaxed) {
                    Err("postoffice: shutting down".to_owned())
                } else if shared.connections.available_permits() == 0 {
                    Err(format!("postoffice: at its connection limit ({max})"))
                } else {
                    Ok(())
                }
            };
            Shared {
                id: self.id,
                transport,
                auth,
                connections: Arc::new(Semaphore::new(max)),
                limits: self.limits,
                hub,
                peers,
                next: AtomicU64::new(1),
                closing: AtomicBool::new(false),
                checks: crate::health::Checks::default()
                    .connection(conn)
                    .node(node.service().to_string(), node.consumers.clone())
                    .gate(Arc::new(accepting)),
            }
        });
        Ok(PostOffice {
            shared,
            node: Some(node),
            #[cfg(feature = "tls")]
            tls: self.tls,
        })
    }
}

async fn upgrade(
    State(shared): State<Arc<Shared>>,
    upgrade: WebSocketUpgrade,
) -> axum::response::Response {
    let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
        shared.hub.stats.refused.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::SERVICE_UNAVAILABLE, "connection limit reached").into_response();
    };
    let hard = shared.limits.hard_frame_limit();
    // tungstenite reserves 128 KiB to read into by default: most of an
    // idle connection's memory. Frames larger than this still arrive, the
    // buffer grows for them.
    upgrade
        .read_buffer_size(READ_BUFFER)
        .max_message_size(hard)
        .max_frame_size(hard)
        .on_upgrade(move |socket| session::run(shared, socket, permit))
}

async fn services(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    axum::Json(shared.services(None))
}
