//! tower layers for the caller's side: the policy every transport applies,
//! a timeout the server hears of, and retries of what is safe to retry.
//!
//! # The policy, in one place
//!
//! Each call passes once through [`Policy`], the layer every transport is
//! built with (from its configuration: [`Config`](crate::Config) for a
//! [`Client`](crate::Client), the builder of `Local` and `HttpClient`).
//! It is one `Service` and one future per call; its steps, each in a file
//! of its own, outermost first:
//!
//! | step | file | what it does |
//! | --- | --- | --- |
//! | trace | `layer/trace.rs` | a `warren.call` (or `warren.gather`) span, its `outcome` and `duration_us` |
//! | deadline | `layer/deadline.rs` | the deadline fixed once: the current [`Context`](crate::Context)'s, the request's own, or the default; a `deadline_exceeded` reply at the deadline becomes [`Error::Timeout`](crate::Error::Timeout) |
//! | validate | `layer/validate.rs` | a body over the limit ([`Error::BodyTooLarge`](crate::Error::BodyTooLarge)) and a single-reply call to `every`/`all` ([`Error::MulticastCall`](crate::Error::MulticastCall)) refused before anything is sent |
//!
//! The transports below only route and publish. A transport under another
//! (the fallback's AMQP and HTTP transports) leaves the policy to the outer
//! one, so it applies once per call.
//!
//! # Layers of your own
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

//! tower's own layers fail with `tower::BoxError`; `map_err(Error::from)`
//! on top of them turns that back into a [`warren::Error`](crate::Error)
//! (tower's `Elapsed` is [`Error::Timeout`](crate::Error::Timeout), its
//! `Overloaded` [`Error::Overloaded`](crate::Error::Overloaded), a boxed
//! `warren::Error` itself), so a generated client takes the stack:
//!
//! ```no_run
//! # #[warren::service]
//! # pub trait Greeter {
//! #     async fn hello(&self, name: String) -> String;
//! # }
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use warren::{Client, Config, Connection, Error};
//!
//! # async fn run() -> Result<(), Error> {
//! let conn = Connection::connect(Config::from_env()?).await?;
//! let transport = ServiceBuilder::new()
//!     // tower::BoxError back to warren::Error, outermost.
//!     .map_err(Error::from)
//!     // Refuse at once (Error::Overloaded) rather than queue...
//!     .load_shed()
//!     // ...past 64 calls in flight.
//!     .concurrency_limit(64)
//!     // Error::Timeout; the server keeps the request's own deadline.
//!     .timeout(Duration::from_secs(2))
//!     .service(Client::new(&conn));
//! let greeter = GreeterClient::new(transport);
//! println!("{}", greeter.hello("world".into()).await?);
//! # Ok(())
//! # }
//! ```

mod deadline;
mod policy;
mod retry;
mod timeout;
mod trace;
mod validate;

pub use policy::{Policy, PolicyFuture, PolicyLayer};
pub use retry::RetryPolicy;
pub use timeout::{Timeout, TimeoutLayer};
pub(crate) use validate::single_reply;
