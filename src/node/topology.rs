//! The queues and bindings a node declares, on every (re)connection.
//!
//! | thing | name | notes |
//! | --- | --- | --- |
//! | exchange | `stage7` (configurable) | topic, durable |
//! | instance queue | `<type>-<id>` | bound to `message.<id>`, `message.<type>`, `message.all`; expires when unused; transient with quorum work queues |
//! | work queue | `<type>` | shared by every instance of the type; expires when unused; of [`Config::queue_type`](crate::Config::queue_type) |

use crate::address::{ServiceId, ServiceType};
use crate::amqp::refusal::{broker, mismatch};
use crate::error::Error;
use crate::events::QueueType;
use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::Channel;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::layout::{BindingLayout, QueueLayout};
use crate::stats::QueueKind;

/// How long an unused instance or work queue lives on, unless the node
/// says otherwise ([`NodeBuilder::queue_expires`](crate::NodeBuilder::queue_expires)).
pub(crate) const DEFAULT_QUEUE_EXPIRES: Duration = Duration::from_secs(300);

const QUEUE_HINT: &str = "every instance of a type must use the same queue_expires and \
    dead_letter_exchange (NodeBuilder) and queue type (Config::queue_type, WARREN_QUEUE_TYPE); if the old arguments are no longer wanted, delete \
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
    /// The work queue's type; with quorum, the instance queue is transient,
    /// so that it can be declared again on another node when its own is lost.
    pub(crate) queue_type: QueueType,
}

impl Topology {
    /// A node's topology with [`NodeBuilder`](crate::NodeBuilder)'s
    /// defaults.
    pub(crate) fn defaults(config: &crate::Config, service: &ServiceType, id: ServiceId) -> Self {
        Self {
            exchange: config.exchange.clone(),
            service: service.clone(),
            id,
            queue_expires: DEFAULT_QUEUE_EXPIRES,
            dead_letter_exchange: None,
            queue_type: config.queue_type,
        }
    }

    /// The keys the instance queue is bound with.
    fn instance_keys(&self) -> [String; 3] {
        [
            format!("message.{}", self.id),
            format!("message.{}", self.service),
            "message.all".to_owned(),
        ]
    }

    /// The instance queue and its bindings, as [`Layout`] shows them.
    ///
    /// [`Layout`]: crate::Layout
    pub(crate) fn instance_layout(&self) -> (QueueLayout, Vec<BindingLayout>) {
        let queue = QueueLayout {
            name: self.instance_queue(),
            kind: QueueKind::Instance,
            durable: self.instance_durable(),
            arguments: Self::arguments(&self.queue_args()),
        };
        let bindings = self
            .instance_keys()
            .into_iter()
            .map(|key| BindingLayout {
                exchange: self.exchange.clone(),
                queue: queue.name.clone(),
                key,
            })
            .collect();
        (queue, bindings)
    }

    /// The work queue, as [`Layout`](crate::Layout) shows it.
    pub(crate) fn work_layout(&self) -> QueueLayout {
        QueueLayout {
            name: self.work_queue(),
            kind: QueueKind::Work,
            durable: true,
            arguments: Self::arguments(&self.work_args()),
        }
    }

    pub(crate) fn instance_queue(&self) -> String {
        format!("{}-{}", self.service, self.id)
    }

    pub(crate) fn work_queue(&self) -> String {
        self.service.to_string()
    }

    /// Whether the instance queue is durable: not beside a quorum work
    /// queue (a durable classic queue whose node is down cannot be declared
    /// anywhere else until that node is back).
    fn instance_durable(&self) -> bool {
        self.queue_type == QueueType::Classic
    }

    /// The work queue's arguments: the instance queue's, and its type.
    fn work_args(&self) -> FieldTable {
        let mut args = self.queue_args();
        if self.queue_type == QueueType::Quorum {
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString(self.queue_type.as_str().into()),
            );
        }
        args
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

    /// A queue's arguments as text.
    pub(crate) fn arguments(args: &FieldTable) -> BTreeMap<String, String> {
        args.inner()
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    AMQPValue::LongLongInt(n) => n.to_string(),
                    AMQPValue::LongString(s) => s.to_string(),
                    other => format!("{other:?}"),
                };
                (k.to_string(), v)
            })
            .collect()
    }

    /// Declares the exchange, both queues and the instance queue's bindings.
    ///
    /// # Errors
    /// [`Error::TopologyMismatch`] if a queue or the exchange exists with
    /// other arguments; [`Error::Broker`] if the broker refuses otherwise.
    pub(crate) async fn declare(&self, channel: &Channel) -> Result<(), Error> {
        let exchange = declare_exchange(channel, &self.exchange, EXCHANGE_HINT).await?;
        let declare = |queue: String, args: FieldTable, durable| async move {
            let options = QueueDeclareOptions {
                durable,
                ..QueueDeclareOptions::default()
            };
            let declared = channel.queue_declare(queue.as_str().into(), options, args.clone());
            // A mismatch shows the queue's arguments and whether it is durable.
            declared.await.map(drop).map_err(|e| {
                let mut shown = Self::arguments(&args);
                shown.insert("durable".into(), durable.to_string());
                refused(e, format!("queue `{queue}`"), shown, QUEUE_HINT)
            })
        };
        let instance = self.instance_queue();
        declare(instance.clone(), self.queue_args(), self.instance_durable()).await?;
        for key in self.instance_keys() {
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
        declare(self.work_queue(), self.work_args(), true).await
    }
}

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

/// A refused declaration of `entity`: [`Error::TopologyMismatch`] if it
/// exists with other arguments, else [`Error::Broker`].
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
