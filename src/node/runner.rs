//! The node's life on each connection: declare, consume, dispatch, and
//! start over after a loss, until the node is stopped.

use super::dispatch::Dispatch;
use super::topology::Topology;
use crate::address::{Address, Peer};
use crate::amqp::connection::{consume_again, drain, until_closed, Finish, Link, Links, Ready};
use crate::amqp::refusal::{broker, in_exclusive_use};
use crate::amqp::Connection;
use crate::error::Error;
use crate::serve::Handler;
use futures::stream::{SelectAll, StreamExt};
use futures::FutureExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};
use tracing::{info, warn};

pub(super) struct Runner {
    pub(super) conn: Connection,
    pub(super) topology: Topology,
    pub(super) handler: Handler,
    pub(super) consumers: Arc<AtomicUsize>,
    /// The generation of the connection the node consumes on now, if any.
    pub(super) serving: watch::Sender<Option<u64>>,
    pub(super) identity: Peer,
    pub(super) permits: Arc<Semaphore>,
    pub(super) concurrency: usize,
    pub(super) grace: Duration,
}

impl Runner {
    pub(super) async fn run(self, mut stopped: watch::Receiver<bool>, mut ready: Ready) {
        let what = self.what();
        let mut links = Links::new(&self.conn);
        while let Some(link) = links.next(until_closed(&mut stopped)).await {
            let consumed = self.consume(&link, &mut stopped, &mut ready).await;
            self.consumers.store(0, Ordering::Relaxed);
            self.serving.send_replace(None);
            if !consume_again(consumed, &mut ready, &what) {
                return;
            }
        }
    }

    /// Consumes on one connection until it is lost or the node stops.
    async fn consume(
        &self,
        link: &Link,
        stopped: &mut watch::Receiver<bool>,
        ready: &mut Ready,
    ) -> Result<Finish, Error> {
        let channel = link
            .conn
            .create_channel()
            .await
            .map_err(|e| broker("cannot open a channel", e))?;
        self.topology.declare(&channel).await?;
        let config = self.conn.config();
        channel
            .basic_qos(
                config.budgeted_prefetch(config.prefetch),
                BasicQosOptions::default(),
            )
            .await
            .map_err(|e| broker("cannot set the prefetch (basic.qos)", e))?;
        let (instance, work) = (self.topology.instance_queue(), self.topology.work_queue());
        let id = Address::Instance(self.topology.id.clone());
        let any = Address::Any(self.topology.service.clone());
        let mut consumers = SelectAll::new();
        let mut tags = Vec::new();
        for (queue, exclusive, address) in [(instance, true, id), (work, false, any)] {
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    "".into(),
                    BasicConsumeOptions {
                        exclusive,
                        ..BasicConsumeOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| {
                    if exclusive && in_exclusive_use(&e) {
                        Error::InstanceInUse {
                            service: self.topology.service.clone(),
                            id: self.topology.id.clone(),
                        }
                    } else {
                        broker(format!("cannot consume `{queue}`"), e)
                    }
                })?;
            tags.push(consumer.tag());
            consumers.push(crate::amqp::connection::tagged(consumer, address));
        }
        self.consumers.store(tags.len(), Ordering::Relaxed);
        self.serving.send_replace(Some(link.generation));
        info!(service = %self.topology.service, id = %self.topology.id, "node serving");
        if let Some(ready) = ready.take() {
            let _ = ready.send(Ok(()));
        }
        let sender = crate::amqp::wire::sender_app_id(&self.identity);
        // Dropped when this returns: every dispatch still waiting on this
        // channel (for its reply or ack to go out) gives up then, so its
        // handler slot comes back even if lapin never settles the wait.
        let (_alive, lost) = watch::channel(());
        let mut links = self.conn.link();
        let generation = link.generation;
        let replaced = |l: &Option<Link>| l.as_ref().is_none_or(|l| l.generation != generation);
        loop {
            tokio::select! {
                biased;
                () = until_closed(stopped) => return Ok(self.stop(&channel, &tags).await),
                _ = links.wait_for(replaced).map(|r| r.is_ok()) => return Ok(Finish::Lost),
                next = consumers.next() => match next.flatten() {
                    Some((address, Ok(delivery))) => {
                        let received = Instant::now();
                        // Waiting for a free handler slot must not hide a
                        // stop: a delivery not yet started goes back to the
                        // queue (unacked, on close) for another instance.
                        let permit = tokio::select! {
                            biased;
                            () = until_closed(stopped) => return Ok(self.stop(&channel, &tags).await),
                            permit = self.permits.clone().acquire_owned() => permit,
                        };
                        let Ok(permit) = permit else {
                            return Ok(Finish::Stopped);
                        };
                        // A body over the limit was dropped on arrival.
                        let dropped = self.conn.oversized(
                            channel.id(),
                            delivery.delivery_tag,
                            &delivery.data,
                        );
                        let dispatch = Dispatch {
                            dropped,
                            channel: channel.clone(),
                            handler: self.handler.clone(),
                            sender: sender.clone(),
                            lost: lost.clone(),
                            address,
                            max_body: config.max_body,
                            received,
                        };
                        tokio::spawn(async move {
                            dispatch.handle(delivery).await;
                            drop(permit);
                        });
                    }
                    // A consumer failed or ended while the connection
                    // lives: the broker cancelled it (its queue was
                    // deleted, or crashed and restarted). The node starts
                    // over on a new channel rather than serve one queue
                    // of two.
                    ended => {
                        match ended {
                            Some((_, Err(e))) => warn!(error = %e, "consumer failed; consuming again"),
                            _ => warn!("the broker cancelled a consumer; consuming again"),
                        }
                        // On a connection that is going away, the
                        // handlers' replies wait for `lost`: start over
                        // at once, as on any loss.
                        if link.conn.status().connected() {
                            tokio::select! {
                                () = self.drain(&channel, &tags) => {}
                                _ = links.wait_for(replaced) => {}
                            }
                        }
                        return Ok(Finish::Lost);
                    }
                },
            }
        }
    }

    /// Stops consuming and closes the channel ([`Runner::drain`]): the
    /// node is done.
    async fn stop(&self, channel: &lapin::Channel, tags: &[lapin::types::ShortString]) -> Finish {
        self.drain(channel, tags).await;
        info!(service = %self.topology.service, id = %self.topology.id, "node stopped");
        Finish::Stopped
    }

    async fn drain(&self, channel: &lapin::Channel, tags: &[lapin::types::ShortString]) {
        drain(
            &self.what(),
            channel,
            tags,
            &self.permits,
            self.concurrency,
            self.grace,
        )
        .await;
    }

    /// The node, as logs name it.
    fn what(&self) -> String {
        format!("the node `{}/{}`", self.topology.service, self.topology.id)
    }
}
