//! A subscription's life on each connection: declare, consume, handle each
//! delivery (ack, retry, or dead-letter), and start over after a loss.

use super::envelope::{format_rfc3339, read_meta, Format, Wire};
use super::handler::{Erased, Outcome, Upcasters};
use super::inbox::Inbox;
use super::policy::Policy;
use super::retry::{self, RetryPolicy};
use super::topology::{dead_letter_queue, service_queue, short, Queues};
use crate::amqp::confirm::Confirm;
use crate::amqp::connection::{consume_again, drain, until_closed, Finish, Link, Links, Ready};
use crate::amqp::refusal::broker;
use crate::amqp::wire::{value_i64, value_str, without_forged_x_death, PERSISTENT};
use crate::codec::ContentType;
use crate::context::Context;
use crate::error::Error;
use crate::record::{self, EventFate};
use crate::tracecontext::TRACEPARENT;
use crate::Connection;
use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::Channel;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{watch, Semaphore};
use tracing::{debug, error, info, warn, Instrument as _};

/// A subscription, as its runner and every delivery's task see it.
pub(crate) struct Shared {
    pub(crate) exchange: String,
    pub(crate) service: String,
    pub(crate) bindings: Vec<String>,
    pub(crate) typed: HashMap<String, Erased>,
    pub(crate) patterns: Vec<(String, Erased)>,
    pub(crate) upcasters: Upcasters,
    pub(crate) format: Format,
    pub(crate) retry: RetryPolicy,
    pub(crate) inbox: Option<Arc<dyn Inbox>>,
    pub(crate) prefetch: u16,
    pub(crate) concurrency: usize,
    pub(crate) grace: Duration,
    pub(crate) policy: Policy,
}

/// Consumes on each connection in turn until `stopped` turns true (or its
/// sender is dropped).
pub(crate) async fn run(
    shared: Arc<Shared>,
    conn: Connection,
    mut stopped: watch::Receiver<bool>,
    mut ready: Ready,
) {
    let permits = Arc::new(Semaphore::new(shared.concurrency));
    let what = what(&shared);
    let mut links = Links::new(&conn);
    while let Some(link) = links.next(until_closed(&mut stopped)).await {
        let consumed = consume(&shared, &conn, &link, &permits, &mut stopped, &mut ready).await;
        if !consume_again(consumed, &mut ready, &what) {
            return;
        }
    }
}

/// Consumes on one connection until it is lost or the subscription stops.
async fn consume(
    shared: &Arc<Shared>,
    conn: &Connection,
    link: &Link,
    permits: &Arc<Semaphore>,
    stopped: &mut watch::Receiver<bool>,
    ready: &mut Ready,
) -> Result<Finish, Error> {
    let channel = super::publisher::confirmed_channel(link).await?;
    channel
        .basic_qos(
            conn.config().budgeted_prefetch(shared.prefetch),
            BasicQosOptions::default(),
        )
        .await
        .map_err(|e| broker("cannot set the prefetch (basic.qos)", e))?;
    let delays = shared.retry.delay_queues();
    Queues {
        exchange: &shared.exchange,
        service: &shared.service,
        bindings: &shared.bindings,
        delays: &delays,
        policy: &shared.policy,
    }
    .declare(&channel)
    .await?;
    let queue = service_queue(&shared.service);
    let mut consumer = channel
        .basic_consume(
            short("queue", &queue)?,
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| broker(format!("cannot consume `{queue}`"), e))?;
    let tag = consumer.tag();
    info!(service = %shared.service, %queue, "subscription consuming");
    if let Some(ready) = ready.take() {
        let _ = ready.send(Ok(()));
    }
    // Dropped when this returns: every delivery still waiting on this
    // channel (for its republish, ack or nack) gives up then, so its
    // permit comes back even if lapin never settles the wait.
    let (_alive, lost) = watch::channel(());
    let mut links = conn.link();
    let generation = link.generation;
    let replaced = |l: &Option<Link>| l.as_ref().is_none_or(|l| l.generation != generation);
    loop {
        tokio::select! {
            biased;
            () = until_closed(stopped) => return Ok(stop(shared, &channel, tag, permits).await),
            _ = links.wait_for(replaced).map(|r| r.is_ok()) => return Ok(Finish::Lost),
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let permit = tokio::select! {
                        biased;
                        () = until_closed(stopped) => return Ok(stop(shared, &channel, tag, permits).await),
                        permit = permits.clone().acquire_owned() => permit,
                    };
                    let Ok(permit) = permit else {
                        return Ok(Finish::Stopped);
                    };
                    // A body over the limit was dropped on arrival.
                    let dropped = conn
                        .oversized(channel.id(), delivery.delivery_tag, &delivery.data)
                        .map(|size| (size, conn.config().max_body));
                    let shared = shared.clone();
                    let channel = channel.clone();
                    let lost = lost.clone();
                    tokio::spawn(async move {
                        handle(&shared, &channel, delivery, dropped, lost).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => {
                    warn!(error = %e, "event consumer failed");
                    return Ok(Finish::Lost);
                }
                None => return Ok(Finish::Lost),
            },
        }
    }
}

/// Stops consuming and closes the channel ([`drain`]): the subscription
/// is done.
async fn stop(shared: &Shared, channel: &Channel, tag: ShortString, permits: &Semaphore) -> Finish {
    let what = what(shared);
    drain(
        &what,
        channel,
        &[tag],
        permits,
        shared.concurrency,
        shared.grace,
    )
    .await;
    info!(service = %shared.service, "subscription stopped");
    Finish::Stopped
}

/// The subscription, as logs name it.
fn what(shared: &Shared) -> String {
    format!("the subscription of `{}`", shared.service)
}

fn header<'a>(d: &'a Delivery, name: &str) -> Option<&'a AMQPValue> {
    d.properties.headers().as_ref()?.inner().get(name)
}

fn header_str(d: &Delivery, name: &str) -> Option<String> {
    value_str(header(d, name)?)
}

/// The failed attempts a delivery carries (0 for a first delivery).
fn failed_attempts(d: &Delivery) -> u32 {
    header(d, retry::ATTEMPTS)
        .and_then(value_i64)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

/// Handles one delivery to the end: acked, or published again (to a delay
/// queue or the dead-letter queue) and then acked. The handler always runs
/// to its end; settling the delivery stops once the channel is lost
/// (`lost`'s sender dropped): lapin may never complete a publish or an ack
/// whose connection died, and the delivery's permit must come back. The
/// broker delivers again what was not acked.
async fn handle(
    shared: &Shared,
    channel: &Channel,
    d: Delivery,
    dropped: Option<(u64, usize)>,
    mut lost: watch::Receiver<()>,
) {
    let attempt = failed_attempts(&d).saturating_add(1);
    let (outcome, event_type) = match dropped {
        // Its body was over the limit and dropped on arrival: it cannot be
        // read, as an undecodable event cannot.
        Some((size, limit)) => (
            Outcome::Dead(format!(
                "the body is {size} bytes; the limit is {limit} (Config::max_body); \
                 it was dropped on arrival"
            )),
            None,
        ),
        None => decide(shared, &d, attempt).await,
    };
    // Only types a handler knew label the metrics: the rest come from
    // anyone and would have no bound.
    let event_type = event_type.as_deref().unwrap_or("unknown");
    tokio::select! {
        biased;
        () = settle(shared, channel, &d, attempt, outcome, event_type) => {}
        _ = lost.changed() => {}
    }
}

/// Acks `d`, after publishing it to a delay queue or the dead-letter queue
/// as `outcome` asks.
async fn settle(
    shared: &Shared,
    channel: &Channel,
    d: &Delivery,
    attempt: u32,
    outcome: Outcome,
    event_type: &str,
) {
    let fate = match (&outcome, shared.retry.after(attempt)) {
        (Outcome::Done, _) => EventFate::Consumed,
        (Outcome::Retry(_), Some(_)) => EventFate::Retried,
        _ => EventFate::DeadLettered,
    };
    record::event(event_type, fate);
    let next = match outcome {
        Outcome::Done => None,
        Outcome::Retry(reason) => match shared.retry.after(attempt) {
            Some(delay) => {
                let to = if delay.is_zero() {
                    service_queue(&shared.service)
                } else {
                    retry::delay_queue(&shared.service, delay)
                };
                warn!(service = %shared.service, attempt, ?delay, %reason, "event failed; retrying");
                Some((to, reason))
            }
            None => {
                error!(service = %shared.service, attempt, %reason,
                    "event failed on its last attempt; dead-lettered");
                Some((dead_letter_queue(&shared.service), reason))
            }
        },
        Outcome::Dead(reason) => {
            error!(service = %shared.service, attempt, %reason, "event dead-lettered");
            Some((dead_letter_queue(&shared.service), reason))
        }
    };
    if let Some((to, reason)) = next {
        if let Err(e) = republish(channel, d, &to, attempt, &reason).await {
            warn!(error = %e, queue = %to, "could not move the event; it will be delivered again");
            let _ = channel
                .basic_nack(
                    d.delivery_tag,
                    BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    },
                )
                .await;
            return;
        }
    }
    if let Err(e) = channel
        .basic_ack(d.delivery_tag, BasicAckOptions::default())
        .await
    {
        debug!(error = %e, "could not ack an event; it will be delivered again");
    }
}

/// Reads the event and runs its handler (once per eventId with an inbox);
/// with the event's type once a handler for it was found.
async fn decide(shared: &Shared, d: &Delivery, attempt: u32) -> (Outcome, Option<String>) {
    let content_type = match d.properties.content_type().as_ref() {
        None => Ok(ContentType::Json),
        Some(ct) => ContentType::parse(ct.as_str()).map_err(|e| e.to_string()),
    };
    let content_type = match content_type {
        Ok(ct) => ct,
        Err(reason) => return (Outcome::Dead(reason), None),
    };
    let routing_key =
        header_str(d, retry::ROUTING_KEY).unwrap_or_else(|| d.routing_key.to_string());
    let message_id = d.properties.message_id().as_ref().map(ShortString::as_str);
    let wire = Wire {
        body: &d.data,
        content_type,
        message_id,
        routing_key: &routing_key,
    };
    let meta = match read_meta(shared.format, &wire) {
        Ok(meta) => meta,
        Err(reason) => return (Outcome::Dead(reason), None),
    };
    let handler = shared.typed.get(&meta.event_type).or_else(|| {
        shared
            .patterns
            .iter()
            .find(|(p, _)| super::matches(p, &meta.event_type))
            .map(|(_, h)| h)
    });
    let Some(handler) = handler else {
        let reason = format!(
            "service `{}` has no handler for event type `{}`",
            shared.service, meta.event_type
        );
        return (Outcome::Dead(reason), None);
    };
    let id = meta.id.clone();
    let event_type = meta.event_type.clone();
    if let Some(inbox) = &shared.inbox {
        if !inbox.claim(&shared.service, &id).await {
            debug!(service = %shared.service, event_id = %id, "duplicate event; skipped");
            return (Outcome::Done, Some(event_type));
        }
    }
    // The handler runs as a span of the publisher's trace, in a Context
    // that the calls and events it sends carry on.
    let span = tracing::info_span!("warren.event", service = %shared.service,
        event_type = %event_type, event_id = %id, attempt);
    let traceparent = header_str(d, TRACEPARENT);
    let mut context = Context::default();
    context.method.clone_from(&event_type);
    context.message_id = Some(id.clone());
    context.trace = crate::tracecontext::start(traceparent.as_deref(), &span);
    let running = handler(meta, attempt, &d.data, shared.format, &shared.upcasters);
    let outcome = context.scope(running).instrument(span).await;
    if let Some(inbox) = &shared.inbox {
        match outcome {
            Outcome::Done => inbox.complete(&shared.service, &id).await,
            _ => inbox.release(&shared.service, &id).await,
        }
    }
    (outcome, Some(event_type))
}

/// Publishes `d` again to queue `to` (through the default exchange), with
/// its failure history in the headers, and waits for the confirm.
async fn republish(
    channel: &Channel,
    d: &Delivery,
    to: &str,
    attempt: u32,
    reason: &str,
) -> Result<(), Error> {
    let now = format_rfc3339(SystemTime::now());
    let mut headers = d.properties.headers().clone().unwrap_or_default();
    // The broker dead-letters it from the delay queue: a forged history
    // would crash that queue at each attempt.
    if let Some(kept) = without_forged_x_death(&headers) {
        headers = kept;
    }
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    let mut keep = |name: &str, value: AMQPValue| {
        if !headers.inner().contains_key(name) {
            headers.insert(name.into(), value);
        }
    };
    keep(retry::FIRST_FAILURE, text(&now));
    keep(retry::ROUTING_KEY, text(d.routing_key.as_str()));
    keep(retry::EXCHANGE, text(d.exchange.as_str()));
    headers.insert(
        retry::ATTEMPTS.into(),
        AMQPValue::LongLongInt(i64::from(attempt)),
    );
    headers.insert(retry::REASON.into(), text(reason));
    headers.insert(retry::LAST_FAILURE.into(), text(&now));
    let props = d
        .properties
        .clone()
        .with_headers(headers)
        .with_delivery_mode(PERSISTENT);
    let confirm = channel
        .basic_publish(
            "".into(),
            short("queue", to)?,
            BasicPublishOptions::default(),
            &d.data,
            props,
        )
        .await
        .map_err(|e| broker(format!("cannot publish to `{to}`"), e))?;
    Confirm::new(confirm).routed().await.map(drop)
}
