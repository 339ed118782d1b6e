//! warren: RPC and messaging between services over RabbitMQ.
//!
//! Services call each other through a topic exchange; a call carries a
//! correlation id and its reply comes back over direct reply-to, within a
//! deadline. Every transport is a [`tower::Service`] of [`Request`] to
//! [`Response`], so timeouts, retries and concurrency limits are tower layers.
//!
//! # Quickstart
//!
//! In `Cargo.toml` (serde is needed only to derive your own argument and
//! result types):
//!
//! ```toml
//! [dependencies]
//! warren = "0.1"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! A service, a node serving it and a typed client calling it
//! (`examples/quickstart.rs`; it needs a broker: `scripts/broker start`
//! runs a private one and `scripts/broker url` prints its URL):
//!
//! ```no_run
#![doc = include_str!("../examples/quickstart.rs")]
//! ```
//!
//! Every call passes once through the caller's policy,
//! [`layer::Policy`], which each transport is built with: the deadline
//! fixed (the current [`Context`]'s, the request's own, or the default),
//! one `warren.call` span with its outcome, the body limit, and a
//! single-reply call to `every`/`all` refused; the transports below only
//! route and publish.
//!
//! Everything is at the root (`warren::Client`, `warren::Config`, …) but
//! for the modules of one concern: [`layer`] (tower layers for callers),
//! and with the `http` feature `http` (the HTTP transport and the
//! fallback) and `discovery` (the peers it sends to).
//!
//! # Where to start
//!
//! | you want to | use |
//! | --- | --- |
//! | connect to RabbitMQ, with reconnection | [`Connection`], configured by [`Config`] (from code or the environment) |
//! | serve a trait | [`macro@service`] on the trait, then [`Node::serve`] or [`Node::builder`] |
//! | call a service | the generated `…Client` over a [`Client`], or [`Client`] itself with [`Request`]s |
//! | say where a call goes | [`Address`]: one instance, any instance of a type, every instance, all |
//! | test without a broker | [`Local`], the in-process transport |
//! | publish and subscribe to `domain.action` events | [`events`]: [`events::Publisher`], [`events::Subscription`], `#[derive(warren::Event)]` |
//! | keep calling while the broker is down | the `http` module (feature `http`): the HTTP endpoint, client and fallback |
//! | publish events in the same database transaction as your writes, and handle each once | the `outbox` module (feature `outbox`): the transactional outbox, its relay and the inbox, on SQLite or PostgreSQL |
//! | see how full a service's queues are | [`QueueStats`] (passive declares) |
//! | let browsers and apps call services over WebSocket, and push to them | the `postoffice` module (feature `postoffice`): the WebSocket gateway, its authenticators and `Pusher` |
//! | expose metrics and readiness | the `metrics` module (feature `metrics`): `metrics::MetricsServer`, `metrics::registry`; the `health` module |
//!
//! The broker URL is `amqp://user:password@host:port/vhost` (or `amqps://`
//! for TLS); the default vhost `/` is written `%2f`, so the local default
//! is `amqp://guest:guest@127.0.0.1:5672/%2f`. [`Config::from_env`] lists
//! every environment variable it reads.
//!
//! # Features
//! The core (AMQP calls and nodes, `#[warren::service]`, the in-process
//! [`Local`] transport) needs no feature. The rest is opt-in, so a
//! build compiles only what it uses:
//!
//! | feature | what it gives | default |
//! | --- | --- | --- |
//! | `http` | the `http` module: a node's HTTP endpoint, `HttpClient`, the fallback to HTTP while the broker is down, and the announcements peers are learned from | yes |
//! | `tls` | `amqps://` broker URLs, and `https://` peers with `http` (rustls) | yes |
//! | `outbox` | the `outbox` module: the transactional outbox and inbox on SQLite or PostgreSQL (sqlx) | no |
//! | `metrics` | the `metrics` module: Prometheus metrics, `GET /metrics` and the readiness endpoints of the `health` module on a node's HTTP listener and on a `MetricsServer` | yes |
//! | `cli` | the `warren` command line (a binary; nothing in the library) | no |
//! | `postoffice` | the `postoffice` module and binary: the WebSocket gateway (with `http`) | no |
//! | `full` | all of the above | no |
//!
//! `default-features = false` leaves the core alone; the docs on docs.rs
//! name the feature each gated item needs.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod address;
mod amqp;
mod codec;
#[doc(hidden)]
pub mod codegen;
mod config;
mod context;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod discovery;
mod envelope;
mod error;
pub mod events;
mod headers;
#[cfg(any(feature = "http", feature = "metrics"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "http", feature = "metrics"))))]
pub mod health;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod layer;
mod layout;
#[cfg(any(feature = "http", feature = "metrics"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "http", feature = "metrics"))))]
pub mod listen;
mod local;
#[cfg(feature = "http")]
mod management;
mod message;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod node;
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub mod otel;
#[cfg(feature = "outbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "outbox")))]
pub mod outbox;
#[cfg(feature = "postoffice")]
#[cfg_attr(docsrs, doc(cfg(feature = "postoffice")))]
pub mod postoffice;
mod record;
mod redact;
mod serve;
mod stats;
mod status;
mod tracecontext;

pub use address::{check_method, Address, NameError, Peer, ServiceId, ServiceType, MAX_NAME_LEN};
pub use amqp::{Client, Connection, ConnectionState};
pub use codec::{CodecError, ContentType, MAX_DEPTH};
pub use config::{
    Backoff, BrokerUrl, Config, ManagementUrl, TlsFiles, UrlOrder, WhenDisconnected, DEFAULT_URL,
};
pub use context::Context;
pub use error::{Cause, Error};
pub use headers::Headers;
pub use layout::{BindingLayout, ExchangeLayout, Layout, QueueLayout};
pub use local::Local;
#[cfg(feature = "http")]
pub use management::{ManagementError, ManagementStats, QueueDetail, QueueRates};
pub use message::{Delivery, Gather, Request, Response, Transport};
pub use node::{NamedService, Node, NodeBuilder};
pub use redact::RedactSecrets;
pub use serve::{Serve, ServeLayer, PANIC_MESSAGE};
pub use stats::{QueueKind, QueueStat, QueueStats};
pub use status::{Code, Status};
pub use tracecontext::{BadTraceparent, SpanId, TraceContext, TraceId, TRACEPARENT};

#[doc = include_str!("../docs/MACRO.md")]
pub use warren_macros::service;

/// Derives [`events::Event`]: `#[event(name = "domain.action", version = N)]`
/// gives the event type's name (checked at compile time: dot-separated
/// lowercase words) and schema version (default 1). See [`events`].
pub use warren_macros::Event;

pub use events::Event;
