//! The AMQP transport: a supervised connection, the caller, the wire mapping.

mod client;
pub(crate) mod confirm;
pub(crate) mod connection;
pub(crate) mod refusal;
mod session;
mod supervisor;
pub(crate) mod wire;

pub use client::Client;
pub use connection::{Connection, ConnectionState};
