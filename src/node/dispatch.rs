//! One delivery: read it, run the handler, reply, acknowledge.
//!
//! Nothing a peer sends can make a message loop: every delivery is either
//! answered and acked, or (when no reply is possible) rejected without
//! requeue, which dead-letters it if the queue has a dead-letter exchange.

use crate::address::Address;
use crate::amqp::wire;
use crate::codec::ContentType;
use crate::message::{self, Request, Response};
use crate::serve::Handler;
use crate::status::{Code, Status};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicPublishOptions, BasicRejectOptions};
use lapin::types::{AMQPValue, ShortString};
use lapin::Channel;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{debug, warn, Instrument};

/// What the dispatcher needs besides the delivery.
pub(crate) struct Dispatch {
    pub(crate) channel: Channel,
    pub(crate) handler: Handler,
    /// The node as its replies' `app_id` (see `wire::sender_app_id`).
    pub(crate) sender: Option<ShortString>,
    /// Closed when the node stops consuming on this channel (it died, or
    /// the connection did).
    pub(crate) lost: tokio::sync::watch::Receiver<()>,
    /// The address the delivery came in on, as the handler sees it.
    pub(crate) address: Address,
    pub(crate) max_body: usize,
    /// The announced size of a body over `max_body`, dropped on arrival
    /// (the delivery's body is empty).
    pub(crate) dropped: Option<u64>,
    /// When the delivery came off the consumer. A delivery may wait for a
    /// free handler slot; that wait counts against its deadline.
    pub(crate) received: Instant,
}

/// Why a delivery is refused before the handler runs.
enum Refusal {
    /// Answer with this status (a reply is possible).
    Reply(ContentType, Status),
    /// Drop it: no reply is possible, or nobody waits any more.
    Reject(String),
    /// Its deadline passed while it waited; ack and forget it.
    Expired,
}

/// A request read from a delivery, with where its reply goes.
struct Incoming {
    request: Request,
    reply_to: Option<ShortString>,
}

/// Time left of a `timeout` that started at `sent` (seconds since the
/// epoch, as AMQP timestamps are). A redelivered request keeps its age;
/// one second of slack covers the timestamp's resolution and clock skew.
fn remaining(timeout: Duration, sent: Option<u64>) -> Duration {
    let Some(sent) = sent else { return timeout };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let age = now.saturating_sub(Duration::from_secs(sent));
    (timeout + Duration::from_secs(1))
        .saturating_sub(age)
        .min(timeout)
}

impl Dispatch {
    /// Reads `d`, or says why it is refused.
    fn read(&self, d: &mut Delivery) -> Result<Incoming, Refusal> {
        let props = &d.properties;
        let reply_to = props.reply_to().clone();
        let can_reply = reply_to.is_some();
        let refuse = |ct: ContentType, status: Status| {
            if can_reply {
                Refusal::Reply(ct, status)
            } else {
                Refusal::Reject(status.to_string())
            }
        };
        let content_type =
            wire::content_type(props).map_err(|e| refuse(ContentType::Json, e.to_status()))?;
        if props.correlation_id().is_some() && !can_reply {
            return Err(Refusal::Reject(
                "a call (it has a correlation id) without reply_to cannot be answered".into(),
            ));
        }
        let max_body = self.max_body;
        let size = self.dropped.unwrap_or(d.data.len() as u64);
        if size > max_body as u64 {
            let msg = format!("the body is {size} bytes; this node accepts {max_body}");
            let status = Status::new(Code::PayloadTooLarge, msg);
            return Err(refuse(content_type, status));
        }
        let Some(method) = props.kind().as_ref().map(|m| m.as_str().to_owned()) else {
            let msg = "the `type` property (the method name) is missing";
            return Err(refuse(content_type, Status::new(Code::BadRequest, msg)));
        };
        let inc = wire::incoming(props, None);
        let deadline = inc
            .timeout
            .map(|t| self.received + remaining(t, props.timestamp().as_ref().copied()));
        if deadline.is_some_and(|d| d <= Instant::now()) {
            return Err(Refusal::Expired);
        }
        let request = Request {
            address: self.address.clone(),
            method,
            // The delivery's buffer becomes the body: no copy.
            body: bytes::Bytes::from(std::mem::take(&mut d.data)),
            content_type,
            headers: inc.headers,
            deadline,
            delivery: match (can_reply, *props.delivery_mode() == Some(wire::PERSISTENT)) {
                (false, _) => message::Delivery::OneWay,
                (true, true) => message::Delivery::PersistentCall,
                (true, false) => message::Delivery::Call,
            },
            idempotent: false,
            from: inc.sender,
            message_id: props.message_id().as_ref().map(|m| m.as_str().to_owned()),
            under_policy: false,
        };
        Ok(Incoming { request, reply_to })
    }

    /// Handles one delivery to the end (reply and ack, or reject).
    pub(crate) async fn handle(self, mut d: Delivery) {
        let span = tracing::info_span!("warren.deliver", method = tracing::field::Empty,
            correlation_id = ?d.properties.correlation_id().as_ref().map(ShortString::as_str),
            outcome = tracing::field::Empty, duration_us = tracing::field::Empty);
        if let Some(AMQPValue::LongString(tp)) = d
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(crate::tracecontext::TRACEPARENT))
        {
            crate::tracecontext::remote_parent(&span, std::str::from_utf8(tp.as_bytes()).ok());
        }
        let start = Instant::now();
        async {
            let outcome = match self.read(&mut d) {
                Ok(inc) => {
                    tracing::Span::current().record("method", inc.request.method.as_str());
                    self.run(&d, inc).await
                }
                Err(Refusal::Reply(ct, status)) => {
                    let outcome = status.code().to_string();
                    let resp = Response::error(ct, &status);
                    self.reply(&d, d.properties.reply_to().as_ref(), resp).await;
                    outcome
                }
                Err(Refusal::Reject(why)) => {
                    warn!(reason = %why, "rejecting a message that cannot be answered");
                    self.reject(&d).await;
                    "rejected".into()
                }
                Err(Refusal::Expired) => {
                    debug!("dropping a request whose deadline passed");
                    self.ack(&d).await;
                    "expired".into()
                }
            };
            let span = tracing::Span::current();
            span.record("outcome", outcome.as_str());
            span.record("duration_us", start.elapsed().as_micros() as u64);
        }
        .instrument(span)
        .await;
    }

    async fn run(&self, d: &Delivery, Incoming { request, reply_to }: Incoming) -> String {
        let resp = crate::serve::answer(self.handler.clone(), request).await;
        let outcome = resp.status.to_string();
        match reply_to {
            Some(to) => self.reply(d, Some(&to), resp).await,
            None if resp.status == Code::Ok => self.ack(d).await,
            None => {
                // A send whose handler failed: dead-letter it, never loop.
                warn!(status = %outcome, "a one-way message failed; rejecting it");
                self.reject(d).await;
            }
        }
        outcome
    }

    /// Publishes `resp` to `reply_to`, then acks the request.
    async fn reply(&self, d: &Delivery, reply_to: Option<&ShortString>, resp: Response) {
        if let Some(to) = reply_to {
            let sent = async {
                let props = wire::reply_properties(
                    d.properties.correlation_id().as_ref(),
                    resp.content_type,
                    &resp.status,
                    &resp.headers,
                    self.sender.as_ref(),
                )
                .map_err(|e| e.to_string())?;
                let publish = self.channel.basic_publish(
                    "".into(),
                    to.clone(),
                    BasicPublishOptions::default(),
                    &resp.body,
                    props,
                );
                let published = self.settle(publish).await.ok_or("the channel closed")?;
                published.map(drop).map_err(|e| e.to_string())
            };
            if let Err(e) = sent.await {
                // The channel is gone: no ack either, so the broker will
                // deliver the request again on the next connection.
                warn!(error = %e, "could not send a reply");
                return;
            }
        }
        self.ack(d).await;
    }

    /// Acknowledges `d`. Through the channel rather than lapin's
    /// per-delivery `Acker`, which hands each ack to a task of lapin's.
    async fn ack(&self, d: &Delivery) {
        let one = BasicAckOptions { multiple: false };
        self.settle(self.channel.basic_ack(d.delivery_tag, one))
            .await;
    }

    /// Rejects `d` without requeueing it (it is dead-lettered if its queue
    /// has a dead-letter exchange). One with a forged `x-death` header is
    /// dropped instead: dead-lettering it would crash the queue
    /// ([`wire::x_death_well_formed`]).
    async fn reject(&self, d: &Delivery) {
        let headers = d.properties.headers().as_ref();
        if !headers.is_none_or(wire::x_death_well_formed) {
            warn!("dropping, not dead-lettering, a message with a malformed x-death header");
            return self.ack(d).await;
        }
        let options = BasicRejectOptions { requeue: false };
        self.settle(self.channel.basic_reject(d.delivery_tag, options))
            .await;
    }

    /// Awaits an ack, a reject or a reply, but stops waiting once the node
    /// stopped consuming on this channel: lapin may never complete one
    /// whose connection died (seen under the fault tests), and the
    /// handler's permit must come back.
    async fn settle<T>(&self, op: impl std::future::Future<Output = T>) -> Option<T> {
        let mut lost = self.lost.clone();
        tokio::select! {
            biased;
            r = op => Some(r),
            // Nothing is ever sent: this resolves when the sender is dropped.
            _ = lost.changed() => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redelivered_requests_keep_their_age() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let t = Duration::from_secs(5);
        assert_eq!(remaining(t, None), t);
        assert_eq!(remaining(t, Some(now)), t);
        assert!(remaining(t, Some(now - 3)) <= Duration::from_secs(3));
        assert_eq!(remaining(t, Some(now - 60)), Duration::ZERO);
    }
}
