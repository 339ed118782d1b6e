//! How many messages wait in a service's queues and how many consumers
//! take from them, from passive declares: no management plugin needed.

use crate::address::{ServiceId, ServiceType};
use crate::amqp::refusal::{broker, not_found};
use crate::amqp::Connection;
use crate::error::Error;
use crate::events::RetryPolicy;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::Channel;
use serde::Serialize;

/// The work queue of `service` and the instance queues of `instances`.
pub(crate) fn service_queues(
    config: &crate::Config,
    service: &ServiceType,
    instances: &[ServiceId],
) -> Vec<(String, QueueKind)> {
    let layout = crate::Layout::service(config, service, instances);
    layout
        .queues
        .into_iter()
        .map(|q| (q.name, q.kind))
        .collect()
}

/// The queues of a subscribing service under `retry`.
pub(crate) fn events_queues(
    config: &crate::Config,
    service: &str,
    retry: &RetryPolicy,
) -> Vec<(String, QueueKind)> {
    let layout = crate::Layout::events(config, service, &[], retry);
    layout
        .queues
        .into_iter()
        .map(|q| (q.name, q.kind))
        .collect()
}

/// What a queue is for, in warren's topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum QueueKind {
    /// One node's own queue, `<type>-<id>`.
    Instance,
    /// A service type's work queue, `<type>`, shared by its nodes.
    Work,
    /// A subscription's event queue, `<service>.q`.
    Events,
    /// A subscription's delay queue, `<service>.retry.<delay>`.
    Retry,
    /// A subscription's dead-letter queue, `<service>.dlq`.
    DeadLetter,
}

impl QueueKind {
    /// Its name in JSON and in metric labels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Instance => "instance",
            Self::Work => "work",
            Self::Events => "events",
            Self::Retry => "retry",
            Self::DeadLetter => "dead_letter",
        }
    }
}

/// One queue, as the broker saw it at the moment of asking.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct QueueStat {
    /// The queue's name.
    pub queue: String,
    /// What it is for.
    pub kind: QueueKind,
    /// Whether it exists (the rest is 0 when it does not).
    pub exists: bool,
    /// Messages ready for delivery (not those delivered and not yet acked).
    pub messages: u32,
    /// Consumers taking from it.
    pub consumers: u32,
}

/// Reads queue statistics over a connection; see [`QueueStats::service`]
/// and [`QueueStats::events`].
///
/// ```no_run
/// use warren::{Config, Connection, QueueStats};
///
/// # async fn run() -> Result<(), warren::Error> {
/// let conn = Connection::connect(Config::from_env()?).await?;
/// for q in QueueStats::new(&conn).service(&"billing".parse()?, &[]).await? {
///     println!("{}: {} waiting, {} consumers", q.queue, q.messages, q.consumers);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct QueueStats {
    conn: Connection,
}

impl QueueStats {
    /// Statistics read over `conn`.
    #[must_use]
    pub fn new(conn: &Connection) -> Self {
        Self { conn: conn.clone() }
    }

    /// The work queue of `service` and the instance queues of `instances`.
    ///
    /// # Errors
    /// [`Error::Unavailable`] without a connection; [`Error::Broker`] if
    /// the broker refuses otherwise.
    pub async fn service(
        &self,
        service: &ServiceType,
        instances: &[ServiceId],
    ) -> Result<Vec<QueueStat>, Error> {
        self.read(service_queues(self.conn.config(), service, instances))
            .await
    }

    /// The queues of a subscribing service: `<service>.q`, its delay
    /// queues under `retry` (the subscription's policy), and `<service>.dlq`.
    ///
    /// # Errors
    /// As [`QueueStats::service`].
    pub async fn events(
        &self,
        service: &str,
        retry: &RetryPolicy,
    ) -> Result<Vec<QueueStat>, Error> {
        self.read(events_queues(self.conn.config(), service, retry))
            .await
    }

    pub(crate) async fn read(
        &self,
        queues: Vec<(String, QueueKind)>,
    ) -> Result<Vec<QueueStat>, Error> {
        let link = crate::events::link(&self.conn).await?;
        let open = || async {
            link.conn
                .create_channel()
                .await
                .map_err(|e| broker("cannot open a channel", e))
        };
        let mut channel: Option<Channel> = None;
        let mut out = Vec::with_capacity(queues.len());
        for (queue, kind) in queues {
            let ch = match channel.take() {
                Some(ch) => ch,
                None => open().await?,
            };
            let declared = ch
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await;
            let (exists, messages, consumers) = match declared {
                Ok(q) => {
                    // The channel lives on for the next queue.
                    channel = Some(ch);
                    (true, q.message_count(), q.consumer_count())
                }
                // The broker closed the channel with its answer.
                Err(e) if not_found(&e) => (false, 0, 0),
                Err(e) => return Err(broker(format!("cannot read `{queue}`"), e)),
            };
            out.push(QueueStat {
                queue,
                kind,
                exists,
                messages,
                consumers,
            });
        }
        if let Some(ch) = channel {
            let _ = ch.close(200, "read".into()).await;
        }
        Ok(out)
    }
}
