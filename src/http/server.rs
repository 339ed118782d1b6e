//! The HTTP server: `POST /rpc/<method>` and `GET /health`, answered by the
//! same handler as the broker's deliveries, beside `GET /health/live`,
//! `GET /health/ready` and (feature `metrics`) `GET /metrics`.
//!
//! A request is refused before the handler runs when its token is missing
//! or wrong (401), its body is too large (413), its content type is not
//! MessagePack or JSON (415), or its deadline already passed (504).

use super::health::{Health, Probe};
use super::incoming::{self, Refusal};
use super::wire;
use super::Token;
use crate::address::{Peer, ServiceId, ServiceType};
use crate::envelope::{self, http_status};
use crate::error::Error;
use crate::listen::{ListenConfig, Prepared};
use crate::message::{Request, Response};
use crate::serve::{answer, Handler};
use crate::status::{Code, Status};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use futures::future::OptionFuture;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Service;
use tracing::{warn, Instrument};

/// Serves a handler over HTTP.
///
/// A [`Node`](crate::Node) built with an HTTP listen address runs one of
/// these beside its consumers; it can also run alone.
#[must_use]
pub struct HttpServer {
    shared: Shared,
    checks: crate::health::Checks,
    listen: ListenConfig,
}

#[derive(Clone)]
pub(super) struct Shared {
    pub(super) handler: Handler,
    pub(super) service: ServiceType,
    pub(super) id: ServiceId,
    pub(super) token: Option<Token>,
    pub(super) max_body: usize,
    pub(super) permits: Option<Arc<Semaphore>>,
    pub(super) probe: Option<Probe>,
    pub(super) in_flight: Arc<AtomicUsize>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("service", &self.shared.service)
            .field("id", &self.shared.id)
            .field("token", &self.shared.token)
            .field("max_body", &self.shared.max_body)
            .finish_non_exhaustive()
    }
}

impl HttpServer {
    /// A server answering as instance `id` of `service` with `handler`.
    pub fn new<S>(service: ServiceType, id: ServiceId, handler: S) -> Self
    where
        S: Service<Request, Response = Response, Error = Error> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
    {
        Self::with_handler(service, id, Handler::new(handler))
    }

    pub(crate) fn with_handler(service: ServiceType, id: ServiceId, handler: Handler) -> Self {
        Self {
            shared: Shared {
                handler,
                service,
                id,
                token: None,
                max_body: crate::Config::default().max_body,
                permits: None,
                probe: None,
                in_flight: Arc::new(AtomicUsize::new(0)),
            },
            checks: crate::health::Checks::default(),
            listen: ListenConfig::default(),
        }
    }

    /// Requires this bearer token on `POST /rpc/…` (`None`: no token).
    pub fn token(mut self, token: Option<Token>) -> Self {
        self.shared.token = token;
        self
    }

    /// The largest request body read, in bytes; larger ones get 413.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.shared.max_body = bytes;
        self
    }

    /// Bounds its connections (and serves HTTPS) as `listen` says; the
    /// default is [`ListenConfig::default`].
    pub fn listen(mut self, listen: ListenConfig) -> Self {
        self.listen = listen;
        self
    }

    /// Shares the node's concurrency limit and reports its health.
    pub(crate) fn node(
        mut self,
        permits: Arc<Semaphore>,
        probe: Probe,
        checks: crate::health::Checks,
    ) -> Self {
        self.shared.permits = Some(permits);
        self.shared.probe = Some(probe);
        self.checks = checks;
        self
    }

    /// Serves on `listener` until `shutdown` completes, then lets the calls
    /// being answered finish, with the bounds of its [`ListenConfig`].
    ///
    /// # Errors
    /// An [`std::io::ErrorKind::InvalidInput`] error holding the
    /// [`Error::Config`] if the [`ListenConfig`] cannot work (a zero limit,
    /// an unreadable certificate).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let prepared = self
            .listen
            .prepare("node")
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        self.serve_prepared(prepared, listener, shutdown).await
    }

    /// Serves as [`HttpServer::serve`], with the listener's settings
    /// already checked.
    pub(crate) async fn serve_prepared(
        self,
        prepared: Prepared,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = Router::new()
            .route("/rpc/{*method}", post(rpc))
            .route("/health", get(health))
            .with_state(self.shared)
            .merge(crate::health::routes(self.checks));
        prepared.serve(listener, app, shutdown).await
    }
}

async fn health(axum::extract::State(s): axum::extract::State<Shared>) -> impl IntoResponse {
    let h = match &s.probe {
        Some(probe) => probe(),
        None => Health {
            id: s.id.to_string(),
            service: s.service.to_string(),
            broker: "none".into(),
            consumers: 0,
            in_flight: s.in_flight.load(Ordering::Relaxed),
        },
    };
    let body = serde_json::to_vec(&h).unwrap_or_default();
    ([(header::CONTENT_TYPE, crate::codec::JSON)], body)
}

/// Counts a call in flight for as long as it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(n: &Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Self(n.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn rpc(
    axum::extract::State(s): axum::extract::State<Shared>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let span = tracing::info_span!(
        "warren.http.serve",
        method = tracing::field::Empty,
        transport = "http",
        outcome = tracing::field::Empty,
        duration_us = tracing::field::Empty
    );
    let traceparent = req.headers().get(crate::tracecontext::TRACEPARENT);
    crate::tracecontext::remote_parent(&span, traceparent.and_then(|v| v.to_str().ok()));
    let start = Instant::now();
    let _counted = InFlight::new(&s.in_flight);
    let (resp, misdirected) = async {
        let (resp, misdirected) = match incoming::read(&s, req).await {
            Ok(request) => {
                tracing::Span::current().record("method", request.method.as_str());
                (run(&s, request).await, false)
            }
            Err(Refusal(resp, misdirected)) => (resp, misdirected),
        };
        let span = tracing::Span::current();
        span.record("outcome", resp.status.as_str());
        span.record("duration_us", start.elapsed().as_micros() as u64);
        (resp, misdirected)
    }
    .instrument(span)
    .await;
    reply(&s, resp, misdirected)
}

async fn run(s: &Shared, request: Request) -> Response {
    // Held while the handler runs.
    let permit = OptionFuture::from(s.permits.as_ref().map(|p| p.acquire())).await;
    if let Some(Err(_)) = permit {
        let st = Status::new(Code::Unavailable, "the node is shutting down");
        return Response::error(request.content_type, &st);
    }
    answer(s.handler.clone(), request).await
}

fn reply(s: &Shared, resp: Response, misdirected: bool) -> axum::response::Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(resp.content_type.as_str()),
    );
    let identity = Peer::new(Some(s.service.clone()), Some(s.id.clone()));
    let _ = wire::put(&mut headers, envelope::STATUS, resp.status.as_str());
    let _ = wire::put_peer(&mut headers, &identity);
    for (k, v) in resp.headers.iter().filter(|(k, _)| wire::is_application(k)) {
        if let Err(e) = wire::put(&mut headers, k, v) {
            warn!(error = %e, "reply header left out");
        }
    }
    if resp.status == Code::Unauthenticated {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    let status = if misdirected {
        StatusCode::MISDIRECTED_REQUEST
    } else {
        http_status(&resp.status)
    };
    (status, headers, resp.body).into_response()
}
