//! The queues and bindings a node declares, on every (re)connection.
//!
//! | thing | name | notes |
//! | --- | --- | --- |
//! | exchange | `stage7` (configurable) | topic, durable |
//! | instance queue | `<type>-<id>` | bound to `message.<id>`, `message.<type>`, `message.all`; expires when unused |
//! | work queue | `<type>` | shared by every instance of the type; expires when unused |

use crate::address::{ServiceId, ServiceType};
use crate::amqp::refusal::{broker, mismatch};
use crate::error::Error;
use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::Channel;
use std::collections::BTreeMap;
use std::time::Duration;

const QUEUE_HINT: &str = "every instance of a type must use the same queue_expires and \
    dead_letter_exchange (NodeBuilder); if the old arguments are no longer wanted, delete \
    the queue (rabbitmqctl delete_queue) while no instance of the type runs";
const EXCHANGE_HINT: &str = "warren needs a durable topic exchange; use another exchange \
    (WARREN_EXCHANGE, Config::exchange), or delete this one";

/// Names and settings of one node's topology.
#[derive(Clone, Debug)]
pub(crate) struct Topology {
    pub(crate) exchange: String,
    pub(crate) service: ServiceType,
    pub(crate) id: ServiceId,
    /// How long an unused queue lives on (instance and work queue).
    pub(crate) queue_expires: Duration,
    /// Where rejected messages go, if anywhere.
    pub(crate) dead_letter_exchange: Option<String>,
}

impl Topology {
    pub(crate) fn instance_queue(&self) -> String {
        format!("{}-{}", self.service, self.id)
    }

    pub(crate) fn work_queue(&self) -> String {
        self.service.to_string()
    }

    fn queue_args(&self) -> FieldTable {
        let mut args = FieldTable::default();
        let ms = self.queue_expires.as_millis().clamp(1, i64::MAX as u128) as i64;
        args.insert("x-expires".into(), AMQPValue::LongLongInt(ms));
        if let Some(dlx) = &self.dead_letter_exchange {
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(dlx.as_str().into()),
            );
        }
        args
    }

    /// The queues' arguments as a [`Error::TopologyMismatch`] shows them.
    fn queue_arguments(&self) -> BTreeMap<String, String> {
        let mut shown: BTreeMap<String, String> = self
            .queue_args()
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
            .collect();
        shown.insert("durable".into(), "true".into());
        shown
    }

    /// Declares the exchange, both queues and the instance queue's bindings.
    ///
    /// # Errors
    /// [`Error::TopologyMismatch`] if a queue or the exchange exists with
    /// other arguments; [`Error::Broker`] if the broker refuses otherwise.
    pub(crate) async fn declare(&self, channel: &Channel) -> Result<(), Error> {
        let exchange = declare_exchange(channel, &self.exchange, EXCHANGE_HINT).await?;
        let queue_refused = |e, queue: &str| {
            refused(
                e,
                format!("queue `{queue}`"),
                self.queue_arguments(),
                QUEUE_HINT,
            )
        };
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let instance = self.instance_queue();
        channel
            .queue_declare(instance.as_str().into(), durable, self.queue_args())
            .await
            .map_err(|e| queue_refused(e, &instance))?;
        for key in [
            format!("message.{}", self.id),
            format!("message.{}", self.service),
            "message.all".to_owned(),
        ] {
            channel
                .queue_bind(
                    instance.as_str().into(),
                    exchange.clone(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| broker(format!("cannot bind queue `{instance}` to `{key}`"), e))?;
        }
        let work = self.work_queue();
        channel
            .queue_declare(work.as_str().into(), durable, self.queue_args())
            .await
            .map_err(|e| queue_refused(e, &work))?;
        Ok(())
    }
}

/// A refused declaration of `entity`: [`Error::TopologyMismatch`] if it
/// exists with other arguments, else [`Error::Broker`].
/// Declares the durable topic exchange `name`: its name checked, a
/// mismatch with an existing one a [`Error::TopologyMismatch`] with `hint`.
/// Returns the name as the broker takes it.
pub(crate) async fn declare_exchange(
    channel: &Channel,
    name: &str,
    hint: &str,
) -> Result<ShortString, Error> {
    let exchange =
        ShortString::try_new(name).map_err(|e| Error::Config(format!("exchange `{name}`: {e}")))?;
    crate::amqp::declare_exchange(channel, exchange.clone())
        .await
        .map_err(|e| {
            refused(
                e,
                format!("exchange `{name}`"),
                BTreeMap::from([
                    ("type".to_owned(), "topic".to_owned()),
                    ("durable".to_owned(), "true".to_owned()),
                ]),
                hint,
            )
        })?;
    Ok(exchange)
}

pub(crate) fn refused(
    e: lapin::Error,
    entity: String,
    declared: BTreeMap<String, String>,
    hint: &str,
) -> Error {
    match mismatch(&e) {
        Some(m) => Error::TopologyMismatch {
            entity,
            declared,
            existing: BTreeMap::from([(m.argument, m.existing)]),
            hint: hint.to_owned(),
        },
        None => broker(format!("cannot declare {entity}"), e),
    }
}
