//! HTTP beside AMQP: a node's HTTP endpoint, the HTTP transport, and the
//! fallback that sends over HTTP while the broker is down (degraded mode).
//!
//! - Server: a [`Node`](crate::Node) built with
//!   [`NodeBuilder::http`](crate::NodeBuilder::http) serves `POST
//!   /rpc/<method>` and `GET /health` with the same handler as its queues,
//!   and announces its URL on the broker. [`HttpServer`] runs one alone.
//! - Client: [`HttpClient`] sends to the peers in a
//!   [`Peers`](crate::discovery::Peers) registry (configured, and learned
//!   from announcements with
//!   [`Peers::learn_from`](crate::discovery::Peers::learn_from)).
//! - [`FallbackLayer`] wraps the AMQP [`Client`](crate::Client) in a
//!   [`Fallback`] that picks the transport for each call.
//!
//! `docs/FALLBACK.md` describes the whole of degraded mode.

mod auth;
mod client;
mod config;
mod fallback;
pub(crate) mod health;
mod incoming;
mod outgoing;
mod server;
mod wire;

pub use crate::envelope::{code_of, http_status};
pub use client::HttpClient;
pub use config::{HttpConfig, PeerUrl, Token};
pub use fallback::{Fallback, FallbackLayer};
pub use health::{state_name, Health};
pub use server::HttpServer;
