//! tower layers for the caller's side: a timeout the server hears of, and
//! retries of what is safe to retry.
//!
//! Every transport is a `tower::Service<Request>`, so these stack over a
//! [`Client`](crate::Client) (or the HTTP client, the fallback, `Local`)
//! with `tower::ServiceBuilder`, and a generated client takes the stack as
//! its transport:
//!
//! ```no_run
//! use std::time::Duration;
//! use tower::retry::RetryLayer;
//! use tower::ServiceBuilder;
//! use warren::layer::{RetryPolicy, TimeoutLayer};
//! use warren::{Client, Config, Connection};
//!
//! /// Greets people.
//! #[warren::service]
//! pub trait Greeter {
//!     /// Says hello.
//!     async fn hello(&self, name: String) -> String;
//! }
//!
//! # async fn run() -> Result<(), warren::Error> {
//! let conn = Connection::connect(Config::from_env()?).await?;
//! let transport = ServiceBuilder::new()
//!     // Outermost: one deadline for the call, retries included; the
//!     // server is told it, so it stops when the caller does.
//!     .layer(TimeoutLayer::new(Duration::from_secs(2)))
//!     // NoRoute and Unavailable again, with backoff, within the deadline.
//!     .layer(RetryLayer::new(RetryPolicy::default()))
//!     // At most 64 calls in flight from this process.
//!     .concurrency_limit(64)
//!     .service(Client::new(&conn));
//! let greeter = GreeterClient::new(transport);
//! println!("{}", greeter.hello("world".into()).await?);
//! # Ok(())
//! # }
//! ```
//!
//! Why not `tower::timeout::TimeoutLayer`: it stops waiting, but the request
//! already sent carries the transport's default deadline (30 s), so the
//! server goes on working for a caller that has left; and it fails with
//! `tower::BoxError`, which a generated client does not take. This
//! [`TimeoutLayer`] shortens the deadline the request carries, and the
//! transport enforces it on both sides.

mod retry;
mod timeout;

pub use retry::RetryPolicy;
pub use timeout::{Timeout, TimeoutLayer};
