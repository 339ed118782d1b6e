//! Publishing events: persistent, confirmed, on the events exchange.

use super::envelope::{self, format_rfc3339, EventMeta};
use super::topology::{declare_exchange, short};
use super::{check_event, Event};
use crate::amqp::confirm::{Confirm, Settled};
use crate::amqp::connection::{until_closed, Link};
use crate::amqp::refusal::broker;
use crate::amqp::wire::PERSISTENT;
use crate::codec::ContentType;
use crate::config::WhenDisconnected;
use crate::error::Error;
use crate::tracecontext::TRACEPARENT;
use crate::Connection;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use serde::Serialize;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::warn;

/// An event encoded and ready to publish ([`Publisher::outgoing`]).
#[derive(Debug)]
pub(crate) struct Outgoing {
    /// Its eventId.
    pub(crate) id: String,
    /// Its type, the routing key.
    pub(crate) event_type: String,
    exchange: ShortString,
    key: ShortString,
    body: bytes::Bytes,
    props: BasicProperties,
}

/// The pause before publishing again after the channel was lost.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// What publishing an event that no queue is bound for does. Either way
/// the broker drops the event, and [`Publisher::unroutable`] counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unroutable {
    /// Not an error: counted, and logged once per event type.
    #[default]
    Ignore,
    /// [`Error::Unroutable`].
    Error,
}

/// Publishes events on the events exchange
/// ([`Config::events_exchange`](crate::Config::events_exchange)), each
/// persistent, with publisher confirms, and mandatory (to learn when no
/// queue is bound for it). Cheap to clone; clones share one channel.
///
/// ```no_run
/// # async fn run(conn: warren::Connection) -> Result<(), warren::Error> {
/// use warren::events::{Publisher, Unroutable};
///
/// #[derive(serde::Serialize, serde::Deserialize, warren::Event)]
/// #[event(name = "payment.failed", version = 2)]
/// struct PaymentFailed {
///     invoice: String,
///     reason: String,
/// }
///
/// let publisher = Publisher::new(&conn).unroutable(Unroutable::Error);
/// let event_id = publisher
///     .publish(&PaymentFailed { invoice: "F-17".into(), reason: "card expired".into() })
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Publisher {
    conn: Connection,
    exchange: String,
    content_type: ContentType,
    unroutable: Unroutable,
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The confirm-mode channel and the generation of its connection,
    /// held only to clone it.
    channel: Mutex<Option<(u64, Channel)>>,
    /// Held while a channel is opened, so that only one is.
    opening: tokio::sync::Mutex<()>,
    dropped: AtomicU64,
    logged: Mutex<HashSet<String>>,
}

impl Publisher {
    /// A publisher on `conn`'s events exchange, writing JSON envelopes.
    #[must_use]
    pub fn new(conn: &Connection) -> Self {
        Self {
            conn: conn.clone(),
            exchange: conn.config().events_exchange.clone(),
            content_type: ContentType::Json,
            unroutable: Unroutable::default(),
            state: Arc::default(),
        }
    }

    /// The connection it publishes on.
    #[cfg(feature = "outbox")]
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Publishes on `exchange` instead.
    #[must_use]
    pub fn exchange(mut self, exchange: impl Into<String>) -> Self {
        self.exchange = exchange.into();
        self.state = Arc::default();
        self
    }

    /// Writes envelopes in `content_type` (JSON by default).
    #[must_use]
    pub fn content_type(mut self, content_type: ContentType) -> Self {
        self.content_type = content_type;
        self
    }

    /// Whether an event no queue is bound for is an error.
    #[must_use]
    pub fn unroutable(mut self, unroutable: Unroutable) -> Self {
        self.unroutable = unroutable;
        self
    }

    /// How many events this publisher (and its clones) published that no
    /// queue was bound for.
    #[must_use]
    pub fn unroutable_count(&self) -> u64 {
        self.state.dropped.load(Ordering::Relaxed)
    }

    /// Publishes `event` and returns its eventId once the broker confirmed
    /// it (stored, as persistent messages are, in every queue it reached).
    ///
    /// # Errors
    /// [`Error::Unroutable`] if no queue is bound for it and the publisher
    /// asked for that; [`Error::Rejected`] if the broker refused it (a
    /// full queue with [`Overflow::RejectPublish`](super::Overflow::RejectPublish));
    /// [`Error::Unavailable`] if there is no connection
    /// (waiting for one up to `Config::default_timeout` unless
    /// `Config::when_disconnected` is `fail-fast`); [`Error::Codec`] if it
    /// does not encode.
    ///
    /// If the connection goes before the broker's confirm, the event is
    /// published again, with the same eventId, on the next connection, for
    /// up to `Config::default_timeout` from the call: it may then be stored
    /// twice, and consumers dedupe by eventId
    /// ([`Subscription::idempotent`](super::Subscription::idempotent)).
    /// [`Error::ConnectionLost`] once that time has passed: the event may or
    /// may not have been stored; publishing it again is up to the caller.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<String, Error> {
        self.publish_as(E::NAME, E::VERSION, event).await
    }

    /// Publishes `payload` as version `version` of `event_type`, without an
    /// [`Event`] type: for relays, tools and tests.
    ///
    /// # Errors
    /// As [`Publisher::publish`]; [`Error::InvalidRequest`] for a type that
    /// is not `domain.action` or a version 0.
    pub async fn publish_as<P: Serialize + ?Sized>(
        &self,
        event_type: &str,
        version: u32,
        payload: &P,
    ) -> Result<String, Error> {
        check_event(event_type, version)?;
        let id = uuid::Uuid::new_v4().to_string();
        let traceparent = crate::tracecontext::outgoing();
        let at = SystemTime::now();
        self.publish_with_id(
            &id,
            event_type,
            version,
            at,
            traceparent.as_deref(),
            payload,
        )
        .await?;
        Ok(id)
    }

    /// Publishes `payload` with the eventId `id`, the time `at` it
    /// happened and the trace it belongs to (`traceparent`): the relay of
    /// the outbox publishes a stored event again with the id, time and
    /// trace it got when it was added.
    pub(crate) async fn publish_with_id<P: Serialize + ?Sized>(
        &self,
        id: &str,
        event_type: &str,
        version: u32,
        at: SystemTime,
        traceparent: Option<&str>,
        payload: &P,
    ) -> Result<(), Error> {
        let out = self.outgoing(id, event_type, version, at, traceparent, payload)?;
        // A connection lost before the confirm leaves the event's fate
        // unknown: it is published again, with the same eventId, on the
        // next connection, until the deadline (at least once; consumers
        // dedupe by eventId).
        let deadline = tokio::time::Instant::now() + self.conn.config().default_timeout;
        let mut lost = false;
        let settled = loop {
            let sent = match self.channel().await {
                Ok(channel) => self.send(&channel, &out).await,
                // No channel yet after the loss: tried again.
                Err(e @ (Error::Unavailable { .. } | Error::Broker { .. })) if lost => Err(e),
                Err(e) => return Err(e),
            };
            let settled = match sent {
                Ok(mut confirm) => confirm.settled().await,
                Err(e) => Err(e),
            };
            match settled {
                Ok(settled) => break settled,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(if lost { Error::ConnectionLost } else { e });
                }
                Err(e) => {
                    lost = lost || matches!(e, Error::ConnectionLost);
                    warn!(error = %e, event_id = %out.id,
                        "the events channel closed before the confirm; publishing again");
                    self.forget();
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        };
        self.outcome(settled, &out.event_type)
    }

    /// Publishes `events` in their order on one channel, without waiting
    /// for a confirm between them, then takes the broker's answers in the
    /// same order: the outbox relay's pipeline for one ordering key (the
    /// broker keeps a channel's order). Returns how many of the first
    /// `events` are settled (taken, or dropped as unroutable when that is
    /// not an error) and the error that stopped the rest, whose fate is
    /// then unknown: they are published again by the caller, with the same
    /// eventIds.
    #[cfg(feature = "outbox")]
    pub(crate) async fn publish_in_order(&self, events: &[Outgoing]) -> (usize, Option<Error>) {
        let channel = match self.channel().await {
            Ok(channel) => channel,
            Err(e) => return (0, Some(e)),
        };
        let mut confirms = Vec::with_capacity(events.len());
        let mut failed = None;
        for out in events {
            match self.send(&channel, out).await {
                Ok(confirm) => confirms.push(confirm),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let sent = confirms.len();
        for (done, (mut confirm, out)) in confirms.into_iter().zip(events).enumerate() {
            let settled = match confirm.settled().await {
                Ok(settled) => settled,
                Err(e) => {
                    self.forget();
                    return (done, Some(e));
                }
            };
            if let Err(e) = self.outcome(settled, &out.event_type) {
                return (done, Some(e));
            }
        }
        if failed.is_some() {
            self.forget();
        }
        (sent, failed)
    }

    /// The message for an event: its envelope and properties, with the
    /// trace it belongs to (`traceparent`) in the headers.
    pub(crate) fn outgoing<P: Serialize + ?Sized>(
        &self,
        id: &str,
        event_type: &str,
        version: u32,
        at: SystemTime,
        traceparent: Option<&str>,
        payload: &P,
    ) -> Result<Outgoing, Error> {
        let meta = EventMeta {
            id: id.to_owned(),
            event_type: event_type.to_owned(),
            version,
            timestamp: Some(format_rfc3339(at)),
            routing_key: event_type.to_owned(),
            content_type: self.content_type,
        };
        let body = envelope::encode(self.content_type, &meta, payload)?;
        let props = BasicProperties::default()
            .with_message_id(short("eventId", &meta.id)?)
            .with_type(short("event type", event_type)?)
            .with_timestamp(at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
            .with_content_type(self.content_type.as_str().into())
            .with_delivery_mode(PERSISTENT);
        let props = match traceparent {
            Some(tp) => {
                let mut headers = FieldTable::default();
                headers.insert(TRACEPARENT.into(), AMQPValue::LongString(tp.into()));
                props.with_headers(headers)
            }
            None => props,
        };
        Ok(Outgoing {
            key: short("event type", event_type)?,
            exchange: short("exchange", &self.exchange)?,
            id: meta.id,
            event_type: meta.event_type,
            body,
            props,
        })
    }

    /// Publishes `out` on `channel` (persistent, mandatory): its confirm.
    async fn send(&self, channel: &Channel, out: &Outgoing) -> Result<Confirm, Error> {
        channel
            .basic_publish(
                out.exchange.clone(),
                out.key.clone(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &out.body,
                out.props.clone(),
            )
            .await
            .map(Confirm::new)
            .map_err(|e| broker("cannot publish the event", e))
    }

    /// What the broker's answer to an event means for the publisher: `Ok`
    /// when taken, or dropped as unroutable while that is not an error.
    fn outcome(&self, settled: Settled, event_type: &str) -> Result<(), Error> {
        match settled {
            Settled::Taken => {
                crate::record::event(event_type, crate::record::EventFate::Published);
                return Ok(());
            }
            Settled::Refused => {
                return Err(Error::Rejected {
                    event_type: event_type.to_owned(),
                    exchange: self.exchange.clone(),
                })
            }
            Settled::Unroutable => {}
        }
        self.state.dropped.fetch_add(1, Ordering::Relaxed);
        if self.unroutable == Unroutable::Error {
            return Err(Error::Unroutable {
                event_type: event_type.to_owned(),
                exchange: self.exchange.clone(),
            });
        }
        let first = self
            .state
            .logged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(event_type.to_owned());
        if first {
            warn!(
                event_type,
                exchange = %self.exchange,
                "no queue is bound for this event type; the broker dropped it (logged once)"
            );
        }
        Ok(())
    }

    /// The confirm-mode channel on the current connection, opened (and the
    /// exchange declared) on first use after each reconnection.
    async fn channel(&self) -> Result<Channel, Error> {
        let link = link(&self.conn).await?;
        if let Some(channel) = self.current(link.generation) {
            return Ok(channel);
        }
        let _opening = self.state.opening.lock().await;
        if let Some(channel) = self.current(link.generation) {
            return Ok(channel);
        }
        let channel = confirmed_channel(&link).await?;
        declare_exchange(&channel, &self.exchange).await?;
        *self.slot() = Some((link.generation, channel.clone()));
        Ok(channel)
    }

    /// The open channel, if it is on connection `generation`.
    fn current(&self, generation: u64) -> Option<Channel> {
        match &*self.slot() {
            Some((g, channel)) if *g == generation && channel.status().connected() => {
                Some(channel.clone())
            }
            _ => None,
        }
    }

    /// Drops the channel: the next publish opens another.
    fn forget(&self) {
        self.slot().take();
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<(u64, Channel)>> {
        self.state
            .channel
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The live connection, waiting for one as configured (up to
/// `Config::default_timeout`, or not at all under `fail-fast`).
pub(crate) async fn link(conn: &Connection) -> Result<Link, Error> {
    let mut links = conn.link();
    if let Some(link) = links.borrow_and_update().clone() {
        return Ok(link);
    }
    let config = conn.config();
    if config.when_disconnected == WhenDisconnected::FailFast {
        return Err(conn.unavailable());
    }
    let mut closed = conn.closed();
    tokio::select! {
        l = tokio::time::timeout(config.default_timeout, links.wait_for(Option::is_some)) => {
            match l {
                Ok(Ok(l)) => Ok(l.clone().unwrap_or_else(|| unreachable!())),
                _ => Err(conn.unavailable()),
            }
        }
        () = until_closed(&mut closed) => Err(conn.unavailable()),
    }
}

/// A new channel on `link` in confirm mode.
pub(super) async fn confirmed_channel(link: &Link) -> Result<Channel, Error> {
    let channel = link
        .conn
        .create_channel()
        .await
        .map_err(|e| broker("cannot open a channel", e))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| broker("cannot turn on publisher confirms", e))?;
    Ok(channel)
}
