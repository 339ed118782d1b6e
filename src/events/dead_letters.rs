//! The dead-letter queue `<service>.dlq`: count, peek, replay, purge.

use super::publisher::link;
use super::retry;
use super::topology::{dead_letter_queue, declare_queue, service_queue, short};
use crate::amqp::confirm::Confirm;
use crate::amqp::refusal::broker;
use crate::error::Error;
use crate::Connection;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Channel;

/// One event in a dead-letter queue, as [`DeadLetters::peek`] shows it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The eventId (the `message_id` property), if it has one.
    pub event_id: Option<String>,
    /// The event type (the `type` property), if it has one.
    pub event_type: Option<String>,
    /// Why it was dead-lettered (`x-warren-reason`).
    pub reason: Option<String>,
    /// How many attempts failed (`x-warren-attempts`).
    pub attempts: u32,
    /// When the first attempt failed (RFC 3339).
    pub first_failure: Option<String>,
    /// When the last attempt failed (RFC 3339).
    pub last_failure: Option<String>,
    /// The routing key it was published with.
    pub routing_key: Option<String>,
    /// Its content type.
    pub content_type: Option<String>,
    /// The body, as published.
    pub body: Vec<u8>,
}

/// The dead-letter queue of one service, as API calls.
#[derive(Clone, Debug)]
pub struct DeadLetters {
    conn: Connection,
    service: String,
}

impl DeadLetters {
    /// The dead-letter queue of `service` (`<service>.dlq`).
    #[must_use]
    pub fn new(conn: &Connection, service: impl Into<String>) -> Self {
        Self {
            conn: conn.clone(),
            service: service.into(),
        }
    }

    /// A channel, with the dead-letter queue there: the one that exists,
    /// whatever its type and arguments (a subscription declared it), or
    /// else a new classic one; and how many events it holds.
    async fn channel(&self) -> Result<(Channel, String, u32), Error> {
        let link = link(&self.conn).await?;
        let open = || async {
            link.conn
                .create_channel()
                .await
                .map_err(|e| broker("cannot open a channel", e))
        };
        let queue = dead_letter_queue(&self.service);
        let channel = open().await?;
        let existing = channel
            .queue_declare(
                short("queue", &queue)?,
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        if let Ok(q) = existing {
            return Ok((channel, queue, q.message_count()));
        }
        // The broker closed the channel (404): declare on a new one.
        let channel = open().await?;
        declare_queue(&channel, &queue, FieldTable::default()).await?;
        Ok((channel, queue, 0))
    }

    /// How many events it holds.
    ///
    /// # Errors
    /// [`Error::Unavailable`] without a connection; [`Error::Broker`].
    pub async fn count(&self) -> Result<u32, Error> {
        let (channel, _, count) = self.channel().await?;
        let _ = channel.close(200, "done".into()).await;
        Ok(count)
    }

    /// The first `max` events, left in the queue.
    ///
    /// # Errors
    /// As [`DeadLetters::count`].
    pub async fn peek(&self, max: usize) -> Result<Vec<DeadLetter>, Error> {
        let (channel, queue, _) = self.channel().await?;
        let mut out = Vec::new();
        while out.len() < max {
            let got = channel
                .basic_get(short("queue", &queue)?, BasicGetOptions { no_ack: false })
                .await
                .map_err(|e| broker(format!("cannot read `{queue}`"), e))?;
            let Some(got) = got else { break };
            out.push(dead_letter(&got.delivery));
        }
        // Closing the channel hands the unacked events back, in place.
        let _ = channel.close(200, "peeked".into()).await;
        Ok(out)
    }

    /// Moves up to `max` events back to this service's queue `<service>.q`
    /// (not to the exchange: other services do not see them again), their
    /// failure history cleared, so they get a full set of attempts. Returns
    /// how many moved.
    ///
    /// # Errors
    /// As [`DeadLetters::count`]; events moved before an error stay moved.
    pub async fn replay(&self, max: usize) -> Result<usize, Error> {
        let (channel, queue, _) = self.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| broker("cannot turn on publisher confirms", e))?;
        let target = short("queue", &service_queue(&self.service))?;
        let mut moved = 0;
        while moved < max {
            let got = channel
                .basic_get(short("queue", &queue)?, BasicGetOptions { no_ack: false })
                .await
                .map_err(|e| broker(format!("cannot read `{queue}`"), e))?;
            let Some(got) = got else { break };
            let d = got.delivery;
            let mut props = d.properties.clone();
            if let Some(headers) = props.headers().clone() {
                let kept: FieldTable = headers
                    .inner()
                    .iter()
                    .filter(|(k, _)| {
                        ![
                            retry::ATTEMPTS,
                            retry::REASON,
                            retry::FIRST_FAILURE,
                            retry::LAST_FAILURE,
                        ]
                        .contains(&k.as_str())
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<std::collections::BTreeMap<_, _>>()
                    .into();
                props = props.with_headers(kept);
            }
            let confirm = channel
                .basic_publish(
                    "".into(),
                    target.clone(),
                    BasicPublishOptions::default(),
                    &d.data,
                    props,
                )
                .await
                .map_err(|e| broker("cannot replay an event", e))?;
            Confirm::new(confirm).routed().await?;
            channel
                .basic_ack(d.delivery_tag, BasicAckOptions::default())
                .await
                .map_err(|e| broker("cannot ack a replayed event", e))?;
            moved += 1;
        }
        let _ = channel.close(200, "replayed".into()).await;
        Ok(moved)
    }

    /// Deletes every event in it; returns how many.
    ///
    /// # Errors
    /// As [`DeadLetters::count`].
    pub async fn purge(&self) -> Result<u32, Error> {
        let (channel, queue, _) = self.channel().await?;
        let n = channel
            .queue_purge(short("queue", &queue)?, QueuePurgeOptions::default())
            .await
            .map_err(|e| broker(format!("cannot purge `{queue}`"), e))?;
        let _ = channel.close(200, "purged".into()).await;
        Ok(n)
    }
}

fn dead_letter(d: &lapin::message::Delivery) -> DeadLetter {
    let headers = d.properties.headers().clone().unwrap_or_default();
    let text = |name: &str| match headers.inner().get(name) {
        Some(AMQPValue::LongString(s)) => Some(s.to_string()),
        _ => None,
    };
    let attempts = match headers.inner().get(retry::ATTEMPTS) {
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(*n).unwrap_or(0),
        _ => 0,
    };
    DeadLetter {
        event_id: d.properties.message_id().as_ref().map(ToString::to_string),
        event_type: d.properties.kind().as_ref().map(ToString::to_string),
        reason: text(retry::REASON),
        attempts,
        first_failure: text(retry::FIRST_FAILURE),
        last_failure: text(retry::LAST_FAILURE),
        routing_key: text(retry::ROUTING_KEY).or_else(|| Some(d.routing_key.to_string())),
        content_type: d
            .properties
            .content_type()
            .as_ref()
            .map(ToString::to_string),
        body: d.data.clone(),
    }
}
