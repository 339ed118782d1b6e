//! Liveness and readiness, as `GET /health/live` and `GET /health/ready`
//! answer them: on a node's HTTP listener (feature `http`) and on a
//! `metrics::MetricsServer` (feature `metrics`), so a node without the HTTP
//! fallback can be probed too.
//!
//! - `/health/live`: 200 `{"status":"live"}` while the process serves
//!   HTTP at all. Restart the process when it does not answer.
//! - `/health/ready`: 200 when every watched connection is connected and
//!   not blocked by the broker, and every watched node has its consumers
//!   (its instance and work queues); 503 otherwise. The body is a
//!   [`Readiness`] saying why. Send no traffic while it is 503. A
//!   PostOffice's router answers them too, and is ready only while it is
//!   `accepting` new clients: below its connection limit and not shutting
//!   down.
//!
//! The older `GET /health` of a node's HTTP listener stays as it was
//! (`http::Health`, always 200).

use crate::amqp::{Connection, ConnectionState};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// Broker consumers a node runs when all is well: its instance queue and
/// its type's work queue.
pub const NODE_CONSUMERS: usize = 2;

/// The body of `GET /health/ready` (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Readiness {
    /// `ready` or `not_ready`; the status code says the same (200 or 503).
    pub status: String,
    /// Whether the process should get traffic.
    pub ready: bool,
    /// The state of each watched broker connection (`connected`,
    /// `blocked`, `reconnecting`, `down`, `refused`, `closed`).
    pub broker: Vec<String>,
    /// Broker consumers the watched nodes run now.
    pub consumers: usize,
    /// Broker consumers they run when all is well.
    pub expected_consumers: usize,
    /// Whether it takes new clients, for a process that holds them (a
    /// PostOffice: not at its connection limit, not shutting down); absent
    /// for others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepting: Option<bool>,
    /// Why it is not ready (empty when it is).
    pub reasons: Vec<String>,
}

/// The body of `GET /health/live` (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Liveness {
    /// Always `live`.
    pub status: String,
}

/// Whether a process takes new clients: `Err(why)` when not.
pub(crate) type Gate = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What readiness is made of: connections, nodes, and gates.
#[derive(Clone, Default)]
pub(crate) struct Checks {
    connections: Vec<watch::Receiver<ConnectionState>>,
    nodes: Vec<(String, Arc<AtomicUsize>)>,
    gates: Vec<Gate>,
}

impl std::fmt::Debug for Checks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checks")
            .field("connections", &self.connections.len())
            .field("nodes", &self.nodes)
            .field("gates", &self.gates.len())
            .finish()
    }
}

impl Checks {
    /// Ready only while `conn` is connected and not blocked.
    pub(crate) fn connection(mut self, conn: &Connection) -> Self {
        self.connections.push(conn.state());
        self
    }

    /// Ready only while a node of `service` runs all its consumers.
    pub(crate) fn node(mut self, service: String, consumers: Arc<AtomicUsize>) -> Self {
        self.nodes.push((service, consumers));
        self
    }

    /// Ready only while `gate` lets new clients in; the readiness then
    /// says whether it is `accepting`.
    #[cfg_attr(not(feature = "postoffice"), allow(dead_code))]
    pub(crate) fn gate(mut self, gate: Gate) -> Self {
        self.gates.push(gate);
        self
    }

    /// Readiness now.
    pub(crate) fn readiness(&self) -> Readiness {
        let mut reasons = Vec::new();
        let mut broker = Vec::new();
        for c in &self.connections {
            let state = c.borrow();
            broker.push(state.name().to_owned());
            if !state.is_connected() {
                reasons.push(format!("broker: {}", state.reason()));
            }
        }
        let mut consumers = 0;
        for (service, n) in &self.nodes {
            let n = n.load(Ordering::Relaxed);
            consumers += n;
            if n < NODE_CONSUMERS {
                reasons.push(format!(
                    "node `{service}`: {n} of its {NODE_CONSUMERS} consumers running"
                ));
            }
        }
        let mut accepting = None;
        for gate in &self.gates {
            let open = match gate() {
                Ok(()) => true,
                Err(why) => {
                    reasons.push(why);
                    false
                }
            };
            accepting = Some(accepting.unwrap_or(true) && open);
        }
        let ready = reasons.is_empty();
        Readiness {
            status: if ready { "ready" } else { "not_ready" }.into(),
            ready,
            broker,
            consumers,
            expected_consumers: NODE_CONSUMERS * self.nodes.len(),
            accepting,
            reasons,
        }
    }
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> axum::response::Response {
    let body = serde_json::to_vec(body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, crate::codec::JSON)], body).into_response()
}

/// `GET /health/live`, `GET /health/ready`, and with the `metrics` feature
/// `GET /metrics` (which starts recording).
pub(crate) fn routes(checks: Checks) -> Router {
    let router = probes(checks);
    #[cfg(feature = "metrics")]
    let router = {
        crate::metrics::enable();
        router.route(
            "/metrics",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
                    crate::metrics::encode(),
                )
            }),
        )
    };
    router
}

/// `GET /health/live` and `GET /health/ready`.
pub(crate) fn probes(checks: Checks) -> Router {
    let checks = Arc::new(checks);
    Router::new()
        .route(
            "/health/live",
            get(|| async {
                json(
                    StatusCode::OK,
                    &Liveness {
                        status: "live".into(),
                    },
                )
            }),
        )
        .route(
            "/health/ready",
            get(move || {
                let r = checks.readiness();
                async move {
                    let code = if r.ready {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    json(code, &r)
                }
            }),
        )
}
