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
use crate::layout::{BindingLayout, ExchangeLayout, Layout, QueueLayout};
use crate::node::topology::{self, refused};
use crate::stats::QueueKind;
use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::Channel;
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
    /// The exchange, queues and bindings [`Queues::declare`] declares.
    pub(crate) fn layout(&self) -> Layout {
        let queue = service_queue(self.service);
        let shown = |name: String, kind, args: &FieldTable| QueueLayout {
            name,
            kind,
            durable: true,
            arguments: topology::Topology::arguments(args),
        };
        let mut queues = vec![shown(
            queue.clone(),
            QueueKind::Events,
            &self.policy.service_queue(),
        )];
        for delay in self.delays {
            let name = super::retry::delay_queue(self.service, *delay);
            queues.push(shown(
                name,
                QueueKind::Retry,
                &self.policy.delay_queue(*delay, &queue),
            ));
        }
        queues.push(shown(
            dead_letter_queue(self.service),
            QueueKind::DeadLetter,
            &self.policy.dead_letter_queue(),
        ));
        Layout {
            exchanges: vec![ExchangeLayout {
                name: self.exchange.to_owned(),
                role: "events",
            }],
            queues,
            bindings: self
                .bindings
                .iter()
                .map(|key| BindingLayout {
                    exchange: self.exchange.to_owned(),
                    queue: queue.clone(),
                    key: key.clone(),
                })
                .collect(),
        }
    }

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
    let mut shown = topology::Topology::arguments(&args);
    shown.insert("durable".to_owned(), "true".to_owned());
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
