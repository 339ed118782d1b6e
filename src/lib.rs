//! warren: RPC and messaging between services over RabbitMQ.
//!
//! Services call each other through a topic exchange; a call carries a
//! correlation id and its reply comes back over direct reply-to, within a
//! deadline. Every transport is a [`tower::Service`] of [`Request`] to
//! [`Response`], so timeouts, retries and concurrency limits are tower layers.
//!
//! # Features
//! The core (AMQP calls and nodes, `#[warren::service]`, the in-process
//! [`local::Local`] transport) needs no feature. The rest is opt-in, so a
//! build compiles only what it uses:
//!
//! | feature | what it gives | default |
//! | --- | --- | --- |
//! | `http` | the `http` module: a node's HTTP endpoint, `HttpClient`, the fallback to HTTP while the broker is down, and the announcements peers are learned from | yes |
//! | `tls` | `amqps://` broker URLs, and `https://` peers with `http` (rustls) | yes |
//! | `full` | all of the above | no |
//!
//! `default-features = false` leaves the core alone; the docs on docs.rs
//! name the feature each gated item needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod address;
pub mod amqp;
pub mod codec;
#[doc(hidden)]
pub mod codegen;
pub mod config;
pub mod context;
pub mod error;
pub mod headers;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod local;
pub mod message;
pub mod node;
pub mod status;

pub use address::{Address, Peer, ServiceId, ServiceType};
pub use amqp::{Client, Connection, ConnectionState};
pub use codec::ContentType;
pub use config::Config;
pub use context::Context;
pub use error::Error;
pub use headers::Headers;
pub use message::{Gather, Request, Response};
pub use node::{NamedService, Node, NodeBuilder};
pub use status::{Code, Status};

/// Derives a typed client and a server adapter from a trait.
///
/// Put it on a trait whose methods are `async fn`s taking `&self`, with
/// owned argument and result types that implement serde's `Serialize` and
/// `Deserialize`. From `trait Calculator` it generates:
///
/// | item | what it is |
/// | --- | --- |
/// | `Calculator` | the trait, rewritten so that its futures are `Send`, with the supertraits `Send + Sync + 'static`; implement it with `async fn`s as usual |
/// | `CalculatorClient<T>` | a typed client over any transport `T: tower::Service<Request, Response = Response, Error = Error> + Clone`: one method per trait method, builder methods `with_address`, `with_timeout`, `with_header`, `with_content_type`, and `gather` |
/// | `CalculatorGather<T>` | the same methods sent to many instances (`T` a `tower::Service<Gather>`), each returning one `(Peer, Result<R, Error>)` per instance that answered |
/// | `CalculatorServer<S>` | a `tower::Service<Request>` serving any `S: Calculator` |
///
/// The client and server types also have `SERVICE` (the service type, the
/// default address) and `METHODS` (the method names on the wire).
///
/// # Results and errors
/// A client method returns `Result<R, Error>`, where `R` is the declared
/// return type and an [`Error`] is a transport failure ([`Error::NoRoute`],
/// [`Error::Timeout`], …) or a failure status from the server
/// ([`Error::Remote`]). A method declared `-> Result<T, E>` returns
/// `Result<Result<T, E>, Error>`: `Ok(Err(e))` is the handler's own error,
/// sent as a status with code [`Code::Application`] and `e` as its details
/// (so `E` also needs `Display`). A handler that panics gives a status
/// with code [`Code::Internal`], and the server goes on serving.
///
/// # Options
/// - `#[warren::service(name = "calc")]`: the service type; by default the
///   trait's name in snake case (`UserProfile` → `user_profile`).
/// - `#[warren(rename = "Calculator.sum")]` on a method: its full name on the
///   wire, instead of `<Trait>.<method>`.
/// - `#[warren(idempotent)]`: the request is marked safe to run twice, so a
///   transport may retry it elsewhere.
/// - `#[warren(oneway)]`: the method returns nothing; its call returns once
///   the server accepted it.
///
/// # On the wire
/// `Calculator.add(1, 2)` is a request for the method `Calculator.add`
/// whose body is the map of arguments by name, `{"a":1,"b":2}` in JSON (a
/// method without arguments sends `{}`); the reply's body is the result
/// itself, `3`. Peers in other languages can call and serve the same way.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use warren::{local::Local, Error};
///
/// #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// pub enum MathError {
///     DivideByZero,
/// }
///
/// impl std::fmt::Display for MathError {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("division by zero")
///     }
/// }
///
/// /// Arithmetic, remotely.
/// #[warren::service]
/// pub trait Calculator {
///     /// The sum of `a` and `b`.
///     async fn add(&self, a: i64, b: i64) -> i64;
///     /// `a / b`, or an error the caller can match on.
///     #[warren(idempotent)]
///     async fn divide(&self, a: f64, b: f64) -> Result<f64, MathError>;
/// }
///
/// struct Calc;
///
/// impl Calculator for Calc {
///     async fn add(&self, a: i64, b: i64) -> i64 {
///         a + b
///     }
///     async fn divide(&self, a: f64, b: f64) -> Result<f64, MathError> {
///         if b == 0.0 {
///             return Err(MathError::DivideByZero);
///         }
///         Ok(a / b)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// // The in-process transport stands in for RabbitMQ here.
/// let mut local = Local::new();
/// local.serve(
///     "calculator".parse()?,
///     "calc-1".parse()?,
///     CalculatorServer::new(Calc),
/// );
///
/// let calc = CalculatorClient::new(local).with_timeout(Duration::from_secs(5));
/// assert_eq!(calc.add(1, 2).await?, 3);
/// assert_eq!(calc.divide(1.0, 0.0).await?, Err(MathError::DivideByZero));
/// # Ok(())
/// # }
/// ```
pub use warren_macros::service;
