//! The queues and bindings a node declares, on every (re)connection.
//!
//! | thing | name | notes |
//! | --- | --- | --- |
//! | exchange | `stage7` (configurable) | topic, durable |
//! | instance queue | `<type>-<id>` | bound to `message.<id>`, `message.<type>`, `message.all`; expires when unused |
//! | work queue | `<type>` | shared by every instance of the type; expires when unused |

use crate::address::{ServiceId, ServiceType};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};
use std::time::Duration;

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

    /// Declares the exchange, both queues and the instance queue's bindings.
    pub(crate) async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let exchange = ShortString::try_new(self.exchange.as_str())
            .map_err(|e| lapin::Error::from(std::io::Error::other(e)))?;
        channel
            .exchange_declare(
                exchange.clone(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let instance = self.instance_queue();
        channel
            .queue_declare(instance.as_str().into(), durable, self.queue_args())
            .await?;
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
                .await?;
        }
        channel
            .queue_declare(
                self.work_queue().as_str().into(),
                durable,
                self.queue_args(),
            )
            .await?;
        Ok(())
    }
}
