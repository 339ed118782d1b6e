//! warren: RPC and messaging between services over RabbitMQ.
//!
//! Services call each other through a topic exchange; a call carries a
//! correlation id and its reply comes back over direct reply-to, within a
//! deadline. Every transport is a [`tower::Service`] of [`Request`] to
//! [`Response`], so timeouts, retries and concurrency limits are tower layers.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod address;
pub mod codec;
#[doc(hidden)]
pub mod codegen;
pub mod config;
pub mod context;
pub mod error;
pub mod headers;
pub mod local;
pub mod message;
pub mod status;

pub use address::{Address, Peer, ServiceId, ServiceType};
pub use codec::ContentType;
pub use config::Config;
pub use context::Context;
pub use error::Error;
pub use headers::Headers;
pub use message::{Gather, Request, Response};
pub use status::{Code, Status};
