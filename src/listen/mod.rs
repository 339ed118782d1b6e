//! How warren's HTTP listeners hold their connections: one accept loop
//! serves a node's HTTP endpoint, a `MetricsServer` and a PostOffice,
//! with the same bounds on every connection.
//!
//! - **Header-read timeout** (default 10 s): a connection has this long to
//!   send the headers of a request, counted from the accept (the TLS
//!   handshake included) or from the first byte of a later request. One
//!   that has not is closed.
//! - **Idle timeout** (default 60 s): a keep-alive connection with no
//!   request in flight and nothing sent for this long is closed. A
//!   connection upgraded to a WebSocket is exempt: the PostOffice pings
//!   and closes its own idle clients.
//! - **Maximum connections** (default 1,024): one more is accepted and
//!   closed at once (`docs/DECISIONS.md` says why not a 503); the refusal
//!   is counted (`warren_http_connections_refused_total`, feature
//!   `metrics`) and logged, at most once every 10 s per listener.
//! - **TLS** (feature `tls`, [`ServerTls`]): certificate chain and key, and
//!   optionally a CA that client certificates must be signed by (mutual
//!   TLS).
//!
//! The limits are checked when a listener starts: a zero timeout or limit,
//! or an unreadable certificate, is an [`Error::Config`] then.

use crate::error::Error;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;
use tracing::{debug, warn};

#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tls")]
pub use tls::ServerTls;

/// How a listener bounds its connections (module docs). Set from code
/// with the builder methods, or from the environment with
/// [`ListenConfig::with_env_from`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub struct ListenConfig {
    /// The time a client has to send a request's headers (default 10 s).
    pub header_read_timeout: Duration,
    /// A connection with nothing in flight is closed after this (default
    /// 60 s).
    pub idle_timeout: Duration,
    /// Connections held at once; more are refused (default 1,024).
    pub max_connections: usize,
    /// Serves HTTPS with these files (default: plain HTTP).
    #[cfg(feature = "tls")]
    pub tls: Option<ServerTls>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl ListenConfig {
    /// Sets the header-read timeout.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Sets the idle timeout.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets the most connections held at once.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Serves HTTPS with `tls`.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Applies `<prefix>HEADER_TIMEOUT_MS`, `<prefix>IDLE_TIMEOUT_MS`,
    /// `<prefix>MAX_CONNECTIONS` and (feature `tls`) `<prefix>TLS_CERT`,
    /// `<prefix>TLS_KEY` and `<prefix>TLS_CLIENT_CA` where `lookup` has
    /// them: with the prefix `WARREN_HTTP_`, the variables of a node's
    /// endpoint.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable: not a whole number, zero,
    /// or a certificate without its key (or the reverse).
    pub fn with_env_from(
        mut self,
        prefix: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let var = |name: &str| {
            let var = format!("{prefix}{name}");
            let value = lookup(&var).filter(|v| !v.trim().is_empty());
            (var, value)
        };
        let positive = |name: &str| -> Result<Option<u64>, Error> {
            let (var, value) = var(name);
            value.map(|v| positive(&var, &v)).transpose()
        };
        if let Some(ms) = positive("HEADER_TIMEOUT_MS")? {
            self.header_read_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = positive("IDLE_TIMEOUT_MS")? {
            self.idle_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = positive("MAX_CONNECTIONS")? {
            self.max_connections = usize::try_from(n).unwrap_or(usize::MAX);
        }
        #[cfg(feature = "tls")]
        {
            let (cert_var, cert) = var("TLS_CERT");
            let (key_var, key) = var("TLS_KEY");
            let (_, client_ca) = var("TLS_CLIENT_CA");
            match (cert, key) {
                (Some(cert), Some(key)) => {
                    let mut tls = ServerTls::new(cert.trim(), key.trim());
                    if let Some(ca) = client_ca {
                        tls = tls.client_ca(ca.trim());
                    }
                    tls.setting = format!("{prefix}TLS_*");
                    self.tls = Some(tls);
                }
                (None, None) => {}
                _ => {
                    return Err(Error::Config(format!(
                        "set both {cert_var} and {key_var} to serve HTTPS, or neither"
                    )))
                }
            }
        }
        Ok(self)
    }

    /// Checks the values (none may be zero) and reads the TLS files.
    pub(crate) fn prepare(&self, listener: &'static str) -> Result<Prepared, Error> {
        for (what, zero) in [
            ("header-read timeout", self.header_read_timeout.is_zero()),
            ("idle timeout", self.idle_timeout.is_zero()),
            ("connection limit", self.max_connections == 0),
        ] {
            if zero {
                return Err(Error::Config(format!(
                    "the {listener} HTTP listener's {what} is zero; it must be positive"
                )));
            }
        }
        let max = self.max_connections.min(Semaphore::MAX_PERMITS);
        Ok(Prepared {
            name: listener,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            max,
            permits: Arc::new(Semaphore::new(max)),
            #[cfg(feature = "tls")]
            tls: self.tls.as_ref().map(ServerTls::acceptor).transpose()?,
        })
    }
}

/// A positive whole number, or an error naming `var`.
pub(crate) fn positive(var: &str, value: &str) -> Result<u64, Error> {
    match value.trim().parse::<u64>() {
        Ok(0) => Err(Error::Config(format!(
            "{var} is 0; it must be a positive whole number"
        ))),
        Ok(n) => Ok(n),
        Err(_) => Err(Error::Config(format!(
            "{var} must be a positive whole number, not `{value}`"
        ))),
    }
}

/// A listener's settings, checked, with its TLS acceptor: ready to serve.
pub(crate) struct Prepared {
    name: &'static str,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    max: usize,
    permits: Arc<Semaphore>,
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("name", &self.name)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// `https` with TLS, else `http`: the scheme of the URL to announce.
    #[cfg(feature = "http")]
    pub(crate) fn scheme(&self) -> &'static str {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return "https";
        }
        "http"
    }

    /// Serves `app` on `listener` until `shutdown` completes; then stops
    /// accepting, closes the connections as their calls end, and returns
    /// once none is left (upgraded ones live on).
    ///
    /// # Errors
    /// None yet: accept errors are logged and retried.
    pub(crate) async fn serve(
        self,
        listener: TcpListener,
        app: Router,
        shutdown: impl Future<Output = ()> + Send,
    ) -> io::Result<()> {
        #[cfg(feature = "metrics")]
        crate::metrics::watched().listener(self.name, &self.permits, self.max);
        let this = Arc::new(self);
        let mut http = http1::Builder::new();
        // The header-read timeout is ours (below): hyper's restarts while
        // a keep-alive connection waits, which would make it the idle
        // timeout too.
        http.timer(TokioTimer::new()).header_read_timeout(None);
        let http = Arc::new(http);
        let (stop, stopping) = watch::channel(false);
        let (done, mut all_done) = mpsc::channel::<()>(1);
        let mut refusals = Refusals::default();
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, most likely: wait, rather
                    // than spin on the error.
                    warn!(listener = this.name, error = %e, "cannot accept connections");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            let Ok(permit) = this.permits.clone().try_acquire_owned() else {
                drop(stream);
                refusals.count(&this);
                continue;
            };
            let (this, http, app, stopping, done) = (
                this.clone(),
                http.clone(),
                app.clone(),
                stopping.clone(),
                done.clone(),
            );
            tokio::spawn(async move {
                this.connection(stream, permit, &http, app, stopping).await;
                drop(done);
            });
        }
        drop(listener);
        stop.send_replace(true);
        drop(done);
        let _ = all_done.recv().await;
        Ok(())
    }

    async fn connection(
        &self,
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
        http: &http1::Builder,
        app: Router,
        stopping: watch::Receiver<bool>,
    ) {
        let state = Arc::new(ConnState::new());
        let io = Watched {
            io: stream,
            state: state.clone(),
            _permit: permit,
        };
        #[cfg(feature = "tls")]
        if let Some(acceptor) = &self.tls {
            let handshake = tokio::time::timeout(self.header_read_timeout, acceptor.accept(io));
            match handshake.await {
                Ok(Ok(tls)) => self.http(tls, state, http, app, stopping).await,
                Ok(Err(e)) => debug!(listener = self.name, error = %e, "TLS handshake failed"),
                Err(_) => {
                    debug!(listener = self.name, "TLS handshake timed out");
                    self.record_timeout(Expired::Header);
                }
            }
            return;
        }
        self.http(io, state, http, app, stopping).await;
    }

    async fn http<IO>(
        &self,
        io: IO,
        state: Arc<ConnState>,
        http: &http1::Builder,
        app: Router,
        mut stopping: watch::Receiver<bool>,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let app = Service {
            app,
            state: state.clone(),
        };
        let conn = http.serve_connection(TokioIo::new(io), app).with_upgrades();
        tokio::pin!(conn);
        let mut stop_seen = false;
        loop {
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        debug!(listener = self.name, error = %e, "HTTP connection ended");
                    }
                    return;
                }
                why = state.expiry(self.header_read_timeout, self.idle_timeout) => {
                    debug!(listener = self.name, ?why, "HTTP connection closed");
                    self.record_timeout(why);
                    return;
                }
                _ = stopping.wait_for(|s| *s), if !stop_seen => {
                    stop_seen = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }

    fn record_timeout(&self, why: Expired) {
        #[cfg(feature = "metrics")]
        if let Some(m) = crate::metrics::get() {
            m.listeners.with(self.name, |l| match why {
                Expired::Header => l.header_timeouts.inc(),
                Expired::Idle => l.idle_timeouts.inc(),
            });
        }
        #[cfg(not(feature = "metrics"))]
        let _ = why;
    }
}

/// Accept errors that concern one connection only (the next accept may
/// well succeed).
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Refused connections, counted and logged at most once every
/// [`Refusals::EVERY`].
#[derive(Default)]
struct Refusals {
    last_warned: Option<Instant>,
    unlogged: u64,
}

impl Refusals {
    const EVERY: Duration = Duration::from_secs(10);

    fn count(&mut self, listener: &Prepared) {
        #[cfg(feature = "metrics")]
        if let Some(m) = crate::metrics::get() {
            m.listeners.with(listener.name, |l| l.refused.inc());
        }
        self.unlogged += 1;
        let now = Instant::now();
        if self
            .last_warned
            .is_none_or(|at| now.duration_since(at) >= Self::EVERY)
        {
            warn!(
                listener = listener.name,
                refused = self.unlogged,
                max_connections = listener.max,
                "HTTP connections refused: the listener holds its maximum"
            );
            self.last_warned = Some(now);
            self.unlogged = 0;
        }
    }
}

/// Why a connection was closed by its timers.
#[derive(Clone, Copy, Debug)]
enum Expired {
    /// A request's headers (or the TLS handshake) did not come in time.
    Header,
    /// Nothing in flight and nothing sent for the idle timeout.
    Idle,
}

/// What one connection is doing, for its timers. Updated by its reads and
/// its service, read by its timer; all in the connection's task.
struct ConnState {
    start: Instant,
    in_flight: AtomicUsize,
    /// Since when (milliseconds after `start`) the connection has been
    /// reading a request's head (`reading`) or idle.
    since: AtomicU64,
    reading: AtomicBool,
    /// Wakes the timer when the phase changes (its deadline with it).
    changed: tokio::sync::Notify,
}

impl ConnState {
    /// A new connection is reading its first request's head (or its TLS
    /// handshake) from the start.
    fn new() -> Self {
        Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            since: AtomicU64::new(0),
            reading: AtomicBool::new(true),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Bytes came: with nothing in flight, a request's head begins.
    fn read_some(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && !self.reading.swap(true, Ordering::Relaxed)
        {
            self.since.store(self.now(), Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.reading.store(false, Ordering::Relaxed);
        self.changed.notify_one();
    }

    fn request_ended(&self) {
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.since.store(self.now(), Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    /// When the current phase ends the connection, and why; `None` while a
    /// request is in flight.
    fn deadline(&self, header: Duration, idle: Duration) -> Option<(Instant, Expired)> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let since = self.start + Duration::from_millis(self.since.load(Ordering::Relaxed));
        Some(if self.reading.load(Ordering::Relaxed) {
            (since + header, Expired::Header)
        } else {
            (since + idle, Expired::Idle)
        })
    }

    /// Completes when the connection is to be closed: its phase outlasted
    /// its timeout.
    async fn expiry(&self, header: Duration, idle: Duration) -> Expired {
        loop {
            let at = match self.deadline(header, idle) {
                Some((at, why)) if at <= Instant::now() => return why,
                Some((at, _)) => at,
                // Look again later: a request in flight is not timed here.
                None => Instant::now() + header.min(idle),
            };
            // A change of phase (a notification stored while nobody
            // waited included) makes the deadline be computed again.
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = self.changed.notified() => {}
            }
        }
    }
}

/// Counts one request in flight on a connection while it lives.
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn start(state: &Arc<ConnState>) -> Self {
        state.request_started();
        Self(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// The router as one connection's hyper service.
#[derive(Clone)]
struct Service {
    app: Router,
    state: Arc<ConnState>,
}

type Request = hyper::Request<hyper::body::Incoming>;

impl hyper::service::Service<Request> for Service {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn call(&self, request: Request) -> Answer {
        Answer {
            flight: InFlight::start(&self.state),
            inner: self.app.clone().oneshot(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// The router's answer to one request, counted in flight until ready.
    struct Answer {
        #[pin]
        inner: tower::util::Oneshot<Router, Request>,
        flight: InFlight,
    }
}

impl Future for Answer {
    type Output = Result<axum::response::Response, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

pin_project_lite::pin_project! {
    /// A connection's socket, noting its reads for the timers and holding
    /// its place under the connection limit for as long as it lives (an
    /// upgraded connection keeps it).
    struct Watched {
        #[pin]
        io: TcpStream,
        state: Arc<ConnState>,
        _permit: OwnedSemaphorePermit,
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let read = this.io.poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.read_some();
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}
