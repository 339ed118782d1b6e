//! The exchange and queues of events, declared on every (re)connection.
//!
//! | thing | name | arguments |
//! | --- | --- | --- |
//! | exchange | `app.events` ([`Config::events_exchange`](crate::Config::events_exchange)) | topic, durable |
//! | service queue | `<service>.q` | durable; bound with the subscription's types and patterns; its policies (`x-queue-type`, `x-message-ttl`, `x-max-length`, `x-overflow`) |
//! | delay queues | `<service>.retry.<delay>` | durable; `x-message-ttl` = delay, dead-lettered to `<service>.q`; the service queue's `x-queue-type` |
//! | dead-letter queue | `<service>.dlq` | durable; the service queue's `x-queue-type` |

use super::policy::Policy;
use crate::amqp::refusal::broker;
use crate::error::Error;
use crate::node::topology::{self, refused};
use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::Channel;
use std::collections::BTreeMap;
use std::time::Duration;

const EXCHANGE_HINT: &str = "events need a durable topic exchange; name another one \
    (WARREN_EVENTS_EXCHANGE, Config::events_exchange), or delete this one";
const QUEUE_HINT: &str = "every instance of a service must subscribe with the same retry \
    delays and queue policies (Subscription::queue_type, message_ttl, max_length, overflow); if the old arguments are no longer wanted, delete the queue (rabbitmqctl \
    delete_queue) while no instance of the service runs";

pub(crate) fn short(what: &str, s: &str) -> Result<ShortString, Error> {
    ShortString::try_new(s).map_err(|e| Error::Config(format!("{what} `{s}`: {e}")))
}

/// Declares the events exchange: durable, topic.
pub(crate) async fn declare_exchange(channel: &Channel, exchange: &str) -> Result<(), Error> {
    topology::declare_exchange(channel, exchange, EXCHANGE_HINT)
        .await
        .map(drop)
}

/// The names and settings of one subscription's queues.
pub(crate) struct Queues<'a> {
    pub(crate) exchange: &'a str,
    pub(crate) service: &'a str,
    pub(crate) bindings: &'a [String],
    pub(crate) delays: &'a [Duration],
    pub(crate) policy: &'a Policy,
}

pub(crate) fn service_queue(service: &str) -> String {
    format!("{service}.q")
}

pub(crate) fn dead_letter_queue(service: &str) -> String {
    format!("{service}.dlq")
}

impl Queues<'_> {
    /// Declares the exchange, the service queue and its bindings, the
    /// delay queues and the dead-letter queue.
    pub(crate) async fn declare(&self, channel: &Channel) -> Result<(), Error> {
        declare_exchange(channel, self.exchange).await?;
        let queue = service_queue(self.service);
        declare_queue(channel, &queue, self.policy.service_queue()).await?;
        for pattern in self.bindings {
            channel
                .queue_bind(
                    short("queue", &queue)?,
                    short("exchange", self.exchange)?,
                    short("binding", pattern)?,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| broker(format!("cannot bind queue `{queue}` to `{pattern}`"), e))?;
        }
        for delay in self.delays {
            let name = super::retry::delay_queue(self.service, *delay);
            declare_queue(channel, &name, self.policy.delay_queue(*delay, &queue)).await?;
        }
        declare_queue(
            channel,
            &dead_letter_queue(self.service),
            self.policy.dead_letter_queue(),
        )
        .await
    }
}

/// Declares a durable queue with `args`.
pub(crate) async fn declare_queue(
    channel: &Channel,
    name: &str,
    args: FieldTable,
) -> Result<(), Error> {
    let shown: BTreeMap<String, String> = args
        .inner()
        .iter()
        .map(|(k, v)| {
            let v = match v {
                AMQPValue::LongLongInt(n) => n.to_string(),
                AMQPValue::LongString(s) => s.to_string(),
                other => format!("{other:?}"),
            };
            (k.to_string(), v)
        })
        .chain([("durable".to_owned(), "true".to_owned())])
        .collect();
    channel
        .queue_declare(
            short("queue", name)?,
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await
        .map(drop)
        .map_err(|e| refused(e, format!("queue `{name}`"), shown, QUEUE_HINT))
}
