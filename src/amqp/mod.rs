//! The AMQP transport: a supervised connection, the caller, the wire mapping.

pub(crate) mod bodies;
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

/// A server-named, exclusive, auto-deleted queue bound to `exchange` with
/// each of `keys`, consumed without acks: a watcher's view of an exchange
/// (announcements, `events::Tail`) that goes away with its channel.
pub(crate) async fn temporary_consumer(
    channel: &lapin::Channel,
    exchange: &lapin::types::ShortString,
    keys: impl IntoIterator<Item = lapin::types::ShortString>,
) -> Result<lapin::Consumer, lapin::Error> {
    use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    for key in keys {
        channel
            .queue_bind(
                queue.name().clone(),
                exchange.clone(),
                key,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

pub use client::Client;
pub use connection::{Connection, ConnectionState};
