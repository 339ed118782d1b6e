//! The baseline: RPC over RabbitMQ written by hand on lapin, the least code
//! that works. Direct reply-to, correlation ids, a map of pending calls.
//!
//! Server: one connection, one channel, prefetch [`PREFETCH`], consume the
//! request queue, and for each delivery, in a task of its own: publish the
//! body back to its `reply_to` on the default exchange with its correlation
//! id, then ack. (A plain loop handling one delivery after the other, each
//! publish and ack awaited, measured 0.57-0.65x these calls/s with 16 and 128
//! in flight, at 2-3x the server CPU per call: every await is a round trip
//! to lapin's I/O thread.)
//! Client: one connection, one channel, a no-ack consumer on
//! `amq.rabbitmq.reply-to`, a `Mutex<HashMap<correlation id, oneshot>>`.
//! In the persistent mode the queue is durable, requests carry delivery mode
//! 2 on a confirm-select channel, and a call awaits its confirm before its
//! reply.

use crate::client::{BoxError, Caller, ClientCtx};
use crate::server::ServerCtx;
use bytes::Bytes;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Unacknowledged deliveries the server may hold (warren's default, too).
pub(crate) const PREFETCH: u16 = 64;

const REPLY_TO: &str = "amq.rabbitmq.reply-to";

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>>;

/// The echo server; returns when the driver says stop.
pub(crate) async fn serve(ctx: ServerCtx) -> Result<(), BoxError> {
    let conn = Connection::connect(&ctx.url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let options = QueueDeclareOptions {
        durable: ctx.mode.persistent,
        exclusive: !ctx.mode.persistent,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    let queue = ctx.mode.queue();
    channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await?;
    let mut requests = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    ctx.ready();

    let serving = async {
        while let Some(delivery) = requests.next().await {
            let delivery = delivery?;
            let (channel, gate) = (channel.clone(), ctx.gate.clone());
            tokio::spawn(async move {
                if let Some(gate) = gate {
                    gate.pass().await;
                }
                if let Err(error) = reply(&channel, delivery).await {
                    eprintln!("lapin baseline server: replying: {error}");
                }
            });
        }
        Ok::<_, BoxError>(())
    };
    tokio::select! {
        served = serving => served?,
        () = ctx.stopped() => {}
    }
    conn.close(200, "bye".into()).await?;
    Ok(())
}

/// Echoes one request to its `reply_to`, then acks it.
async fn reply(channel: &Channel, request: Delivery) -> Result<(), BoxError> {
    let properties = &request.properties;
    if let (Some(reply_to), Some(id)) = (properties.reply_to(), properties.correlation_id()) {
        channel
            .basic_publish(
                "".into(),
                reply_to.clone(),
                BasicPublishOptions::default(),
                &request.data,
                BasicProperties::default().with_correlation_id(id.clone()),
            )
            .await?;
    }
    request.acker.ack(BasicAckOptions::default()).await?;
    Ok(())
}

/// What the caller puts on each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wire {
    /// What direct reply-to needs (`reply_to`, `correlation_id`) and no more.
    Bare,
    /// What warren's protocol sends too (docs/PROTOCOL.md): the method as
    /// `type`, `content_type`, `timestamp`, the sender as `app_id`, the
    /// deadline as `expiration`, and `mandatory` publishes.
    Warren,
}

/// The caller.
pub(crate) struct Client {
    channel: Channel,
    pending: Pending,
    next_id: AtomicU64,
    queue: &'static str,
    persistent: bool,
    wire: Wire,
    _conn: Connection,
}

impl Client {
    pub(crate) async fn connect(ctx: &ClientCtx, wire: Wire) -> Result<Client, BoxError> {
        let conn = Connection::connect(&ctx.url, ConnectionProperties::default()).await?;
        let channel = conn.create_channel().await?;
        if ctx.mode.persistent {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
        }
        let mut replies = channel
            .basic_consume(
                REPLY_TO.into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let pending = Pending::default();
        let map = pending.clone();
        tokio::spawn(async move {
            while let Some(Ok(reply)) = replies.next().await {
                let Some(id) = reply.properties.correlation_id() else {
                    continue;
                };
                let waiter = map.lock().unwrap().remove(id.as_str());
                if let Some(waiter) = waiter {
                    let _ = waiter.send(reply.data);
                }
            }
        });
        Ok(Client {
            channel,
            pending,
            next_id: AtomicU64::new(0),
            queue: ctx.mode.queue(),
            persistent: ctx.mode.persistent,
            wire,
            _conn: conn,
        })
    }
}

impl Caller for Client {
    async fn call(&self, body: Bytes) -> Result<Bytes, BoxError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).to_string();
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id.clone(), tx);
        let mut properties = BasicProperties::default()
            .with_reply_to(REPLY_TO.into())
            .with_correlation_id(id.into());
        if self.persistent {
            properties = properties.with_delivery_mode(2);
        }
        if self.wire == Wire::Warren {
            properties = properties
                .with_type("Echo.echo".into())
                .with_content_type("application/msgpack".into())
                .with_timestamp(1_800_000_000)
                .with_app_id("/0195e0a4c1d87f3b".into())
                .with_expiration("600000".into());
        }
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                self.queue.into(),
                BasicPublishOptions {
                    mandatory: self.wire == Wire::Warren,
                    ..BasicPublishOptions::default()
                },
                &body,
                properties,
            )
            .await?;
        if self.persistent && !confirm.await?.is_ack() {
            return Err("the broker did not confirm the request".into());
        }
        Ok(Bytes::from(rx.await?))
    }

    fn waiting(&self) -> usize {
        self.pending.lock().unwrap().len()
    }
}
