//! What `GET /health` answers: who this is, the broker connection, the
//! consumers and the calls running now.

use crate::amqp::ConnectionState;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A node's health, as `GET /health` returns it (JSON). The endpoint
/// answers 200 while the HTTP server runs, whatever the broker state:
/// a node whose broker is down still serves calls over HTTP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// The instance id.
    pub id: String,
    /// The service type.
    #[serde(rename = "type")]
    pub service: String,
    /// The broker connection: `connected`, `blocked`, `reconnecting`,
    /// `down`, `refused`, `closed`, or `none` for a server without one.
    pub broker: String,
    /// Broker consumers feeding the node now (0 while disconnected).
    pub consumers: usize,
    /// Calls being handled now, over either transport.
    pub in_flight: usize,
}

/// Produces the health on request.
pub(crate) type Probe = Arc<dyn Fn() -> Health + Send + Sync>;

/// The short name of a connection state, as [`Health::broker`] shows it.
#[must_use]
pub fn state_name(state: &ConnectionState) -> &'static str {
    state.name()
}
