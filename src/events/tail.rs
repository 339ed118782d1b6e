//! Watching events as they are published, without a durable queue: a
//! temporary queue of the broker's naming, exclusive to this connection
//! and deleted with it (the `warren events tail` command line).

use super::publisher::link;
use super::topology::{declare_exchange, short};
use crate::amqp::refusal::broker;
use crate::amqp::temporary_consumer;
use crate::error::Error;
use crate::Connection;
use futures::StreamExt;
use lapin::Channel;

/// Events as they are published, matching some patterns: see
/// [`Tail::start`]. Nothing is acknowledged and nothing is kept: a tail
/// sees what is published while it runs, and takes nothing from the
/// services' queues.
pub struct Tail {
    consumer: lapin::Consumer,
    channel: Channel,
    conn: Connection,
}

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tail").finish_non_exhaustive()
    }
}

/// One event a [`Tail`] saw.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Tailed {
    /// The routing key (the event type, unless published otherwise).
    pub routing_key: String,
    /// The `type` property, if set.
    pub event_type: Option<String>,
    /// The eventId (the `message_id` property), if set.
    pub event_id: Option<String>,
    /// The content type, if set.
    pub content_type: Option<String>,
    /// The body as published (the envelope); empty when it was dropped.
    pub body: Vec<u8>,
    /// The size of a body over the connection's
    /// [`max_body`](crate::Config::max_body), dropped as it arrived: the
    /// event is seen, its body is not kept (`body` is then empty).
    pub dropped: Option<u64>,
}

impl Tailed {
    /// The body as JSON: parsed when it is JSON, decoded when it is
    /// MessagePack; `None` when it is neither.
    #[must_use]
    pub fn json(&self) -> Option<serde_json::Value> {
        match self.content_type.as_deref() {
            Some(ct) if ct.contains("msgpack") => rmp_serde::from_slice(&self.body).ok(),
            _ => serde_json::from_slice(&self.body).ok(),
        }
    }
}

impl Tail {
    /// Binds a temporary queue to the events exchange with each of
    /// `patterns` (`order.*`, `#`, an exact type) and starts consuming.
    ///
    /// # Errors
    /// [`Error::Unavailable`] without a connection, [`Error::Broker`] if
    /// the broker refuses the queue or a binding.
    pub async fn start<I, S>(conn: &Connection, patterns: I) -> Result<Tail, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let link = link(conn).await?;
        let channel = link
            .conn
            .create_channel()
            .await
            .map_err(|e| broker("cannot open a channel", e))?;
        let exchange = &conn.config().events_exchange;
        declare_exchange(&channel, exchange).await?;
        let keys = patterns
            .into_iter()
            .map(|p| short("pattern", p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let consumer = temporary_consumer(&channel, &short("exchange", exchange)?, keys)
            .await
            .map_err(|e| broker("cannot watch the events exchange (a temporary queue)", e))?;
        Ok(Tail {
            consumer,
            channel,
            conn: conn.clone(),
        })
    }

    /// The next event; `None` once the channel or connection is gone.
    pub async fn next(&mut self) -> Option<Tailed> {
        let d = self.consumer.next().await?.ok()?;
        let p = &d.properties;
        let text = |s: &Option<lapin::types::ShortString>| s.as_ref().map(|s| s.to_string());
        let dropped = self
            .conn
            .oversized(self.channel.id(), d.delivery_tag, &d.data);
        Some(Tailed {
            routing_key: d.routing_key.to_string(),
            event_type: text(p.kind()),
            event_id: text(p.message_id()),
            content_type: text(p.content_type()),
            body: d.data,
            dropped,
        })
    }

    /// Stops the tail; the broker deletes its queue.
    pub async fn close(self) {
        let _ = self.channel.close(200, "tail closed".into()).await;
    }
}
