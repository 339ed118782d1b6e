//! The AMQP transport: a supervised connection, the caller, the wire mapping.

mod client;
pub(crate) mod confirm;
pub(crate) mod connection;
pub(crate) mod refusal;
mod session;
mod supervisor;
pub(crate) mod wire;

/// Declares `name` as warren declares every exchange it uses: a durable
/// topic exchange.
pub(crate) async fn declare_exchange(
    channel: &lapin::Channel,
    name: lapin::types::ShortString,
) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            name,
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..lapin::options::ExchangeDeclareOptions::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
}

pub use client::Client;
pub use connection::{Connection, ConnectionState};
