//! Queue policies of a subscription: the type of its queues, and the
//! message TTL, length limit and overflow behaviour of `<service>.q`.

use lapin::types::{AMQPValue, FieldTable, LongString};
use std::time::Duration;

/// The type of a subscription's queues ([`Subscription::queue_type`](super::Subscription::queue_type)).
///
/// The delay queues and the dead-letter queue follow the service queue's
/// type: a quorum service queue's failed events wait, and end, in quorum
/// queues too, so that an event survives what its queue survives.
///
/// [`Config::queue_type`](crate::Config::queue_type) sets it for all the
/// durable queues of a process at once: a node's work queue, and the queues
/// of subscriptions that set none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueType {
    /// A classic queue (`x-queue-type: classic`): one node's copy.
    #[default]
    Classic,
    /// A quorum queue (`x-queue-type: quorum`): replicated with Raft,
    /// for events that must survive the loss of a node. Its delay queues
    /// dead-letter at least once (`x-dead-letter-strategy: at-least-once`).
    Quorum,
}

impl std::str::FromStr for QueueType {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, crate::Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "classic" => Ok(Self::Classic),
            "quorum" => Ok(Self::Quorum),
            other => Err(crate::Error::Config(format!(
                "`{other}` is not a queue type; use `classic` or `quorum`"
            ))),
        }
    }
}

impl QueueType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Quorum => "quorum",
        }
    }
}

/// What `<service>.q` does once it holds its
/// [`max_length`](super::Subscription::max_length) messages and another
/// event arrives ([`Subscription::overflow`](super::Subscription::overflow)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overflow {
    /// Drops (or dead-letters, if the queue has a dead-letter exchange) the
    /// oldest event: the queue keeps the newest ones (`x-overflow:
    /// drop-head`, the broker's default).
    #[default]
    DropHead,
    /// Refuses the new event: the publisher's confirm is a nack and
    /// [`Publisher::publish`](super::Publisher::publish) fails with
    /// [`Error::Rejected`](crate::Error::Rejected) (`x-overflow:
    /// reject-publish`).
    RejectPublish,
}

impl Overflow {
    fn as_str(self) -> &'static str {
        match self {
            Self::DropHead => "drop-head",
            Self::RejectPublish => "reject-publish",
        }
    }
}

/// A subscription's queue policies; unset ones are not declared (the
/// broker's defaults, or its operator policies, apply).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Policy {
    pub(crate) queue_type: Option<QueueType>,
    pub(crate) message_ttl: Option<Duration>,
    pub(crate) max_length: Option<u32>,
    pub(crate) overflow: Option<Overflow>,
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// Milliseconds as the broker takes them (at least 0, at most `u32::MAX`).
pub(crate) fn millis(d: Duration) -> AMQPValue {
    AMQPValue::LongLongInt(d.as_millis().min(u128::from(u32::MAX)) as i64)
}

impl Policy {
    /// These policies on a connection with `config`: an unset queue type
    /// is quorum when [`Config::queue_type`](crate::Config::queue_type) is.
    pub(crate) fn under(self, config: &crate::Config) -> Self {
        Self {
            queue_type: self
                .queue_type
                .or((config.queue_type == QueueType::Quorum).then_some(QueueType::Quorum)),
            ..self
        }
    }

    /// Adds the queue type to the arguments of any of the subscription's
    /// queues.
    fn typed(&self, args: &mut FieldTable) {
        if let Some(t) = self.queue_type {
            args.insert("x-queue-type".into(), text(t.as_str()));
        }
    }

    /// The arguments of `<service>.q`.
    pub(crate) fn service_queue(&self) -> FieldTable {
        let mut args = FieldTable::default();
        self.typed(&mut args);
        if let Some(ttl) = self.message_ttl {
            args.insert("x-message-ttl".into(), millis(ttl));
        }
        if let Some(n) = self.max_length {
            args.insert("x-max-length".into(), AMQPValue::LongLongInt(i64::from(n)));
        }
        if let Some(o) = self.overflow {
            args.insert("x-overflow".into(), text(o.as_str()));
        }
        args
    }

    /// The arguments of a delay queue: its TTL, and dead-lettering back to
    /// `<service>.q` (at least once for quorum queues).
    pub(crate) fn delay_queue(&self, delay: Duration, service_queue: &str) -> FieldTable {
        let mut args = FieldTable::default();
        self.typed(&mut args);
        args.insert("x-message-ttl".into(), millis(delay));
        args.insert("x-dead-letter-exchange".into(), text(""));
        args.insert("x-dead-letter-routing-key".into(), text(service_queue));
        if self.queue_type == Some(QueueType::Quorum) {
            // At-least-once dead-lettering needs reject-publish (RabbitMQ
            // 3.10+).
            args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
            args.insert("x-overflow".into(), text("reject-publish"));
        }
        args
    }

    /// The arguments of `<service>.dlq`.
    pub(crate) fn dead_letter_queue(&self) -> FieldTable {
        let mut args = FieldTable::default();
        self.typed(&mut args);
        args
    }
}
