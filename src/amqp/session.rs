//! The caller's channel: publishes requests and receives their replies over
//! direct reply-to, matching them to waiting calls by correlation id.
//!
//! One session lives as long as its channel. When the channel or the
//! connection dies, every call still waiting is told at once (its reply is
//! gone with the channel), and a new session is opened on the next
//! connection.

use super::connection::{until_closed, Connection, Link};
use super::wire::{self, REPLY_TO};
use crate::codec::ContentType;
use crate::message::Response;
use crate::status::{Code, Status};
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::ExchangeKind;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, warn};

/// Where the reply (or replies) to one call go.
pub(crate) enum Waiter {
    One(oneshot::Sender<Response>),
    Many(mpsc::UnboundedSender<Response>),
}

/// A live reply channel.
pub(crate) struct Session {
    pub(crate) channel: lapin::Channel,
    /// `None` once the session is dead: no call may wait on it any more.
    waiters: Mutex<Option<HashMap<u64, Waiter>>>,
}

impl Session {
    /// Registers a waiter; `false` if the session already died.
    pub(crate) fn wait(&self, id: u64, waiter: Waiter) -> bool {
        match &mut *self.lock() {
            Some(map) => {
                map.insert(id, waiter);
                true
            }
            None => false,
        }
    }

    /// Forgets a waiter (its call finished or was dropped).
    pub(crate) fn forget(&self, id: u64) {
        if let Some(map) = &mut *self.lock() {
            map.remove(&id);
        }
    }

    /// How many calls are waiting.
    pub(crate) fn waiting(&self) -> usize {
        self.lock().as_ref().map_or(0, HashMap::len)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<HashMap<u64, Waiter>>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn deliver(&self, id: u64, response: Response) {
        let mut guard = self.lock();
        let Some(map) = guard.as_mut() else { return };
        match map.get(&id) {
            Some(Waiter::One(_)) => {
                if let Some(Waiter::One(tx)) = map.remove(&id) {
                    drop(guard);
                    let _ = tx.send(response);
                }
            }
            Some(Waiter::Many(tx)) => {
                let _ = tx.send(response);
            }
            None => debug!(
                correlation_id = id,
                "reply for no waiting call (late or dropped)"
            ),
        }
    }

    /// Kills the session: every waiter is dropped, so its call sees the
    /// connection loss now instead of at its deadline.
    fn kill(&self) {
        let waiters = self.lock().take();
        if let Some(w) = waiters {
            if !w.is_empty() {
                warn!(
                    calls = w.len(),
                    "reply channel lost; failing calls in flight"
                );
            }
        }
    }
}

/// Turns a delivery on the reply queue into a [`Response`].
fn response(delivery: lapin::message::Delivery) -> Response {
    let inc = wire::incoming(&delivery.properties);
    // The delivery's buffer becomes the body: no copy.
    let body = bytes::Bytes::from(delivery.data);
    let mut resp = match wire::content_type(&delivery.properties) {
        Ok(ct) => Response {
            status: inc.status.unwrap_or(Code::Ok),
            ..Response::ok(ct, body)
        },
        Err(e) => Response::error(
            ContentType::Json,
            &Status::new(Code::Internal, format!("the reply could not be read: {e}")),
        ),
    };
    resp.headers = inc.headers;
    resp.from = inc.sender;
    resp.transport = "amqp";
    resp
}

/// Keeps a session open on every connection until the client is dropped.
pub(crate) async fn run(conn: Connection, slot: Weak<watch::Sender<Option<Arc<Session>>>>) {
    let mut links = conn.link();
    let mut closed = conn.closed();
    loop {
        let link = match links.wait_for(Option::is_some).await {
            Ok(l) => l.clone().unwrap_or_else(|| unreachable!()),
            Err(_) => return,
        };
        let Some(s) = slot.upgrade() else { return };
        let opened = open(&link, &conn.config().exchange).await;
        let (session, mut replies) = match opened {
            Ok(x) => x,
            Err(e) => {
                drop(s);
                if link.conn.status().connected() {
                    warn!(error = %e, "cannot open the reply channel; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                } else {
                    debug!(error = %e, "the connection died before the reply channel opened");
                    next_link(&mut links, &link).await;
                }
                continue;
            }
        };
        s.send_replace(Some(session.clone()));
        drop(s);
        loop {
            tokio::select! {
                d = replies.next() => match d {
                    Some(Ok(d)) => {
                        let id = d.properties.correlation_id().as_ref()
                            .and_then(|c| c.as_str().parse::<u64>().ok());
                        match id {
                            Some(id) => session.deliver(id, response(d)),
                            None => debug!("reply without a usable correlation id dropped"),
                        }
                    }
                    Some(Err(e)) => { debug!(error = %e, "reply consumer error"); break; }
                    None => break,
                },
                () = until_closed(&mut closed) => {
                    session.kill();
                    if let Some(s) = slot.upgrade() { s.send_replace(None); }
                    return;
                }
            }
        }
        session.kill();
        let Some(s) = slot.upgrade() else { return };
        s.send_replace(None);
        drop(s);
        // Wait for the connection to change, unless only the channel died.
        if link.conn.status().connected() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        } else {
            next_link(&mut links, &link).await;
        }
    }
}

/// Waits until `link` is no longer the live connection.
async fn next_link(links: &mut watch::Receiver<Option<Link>>, link: &Link) {
    let gen = link.generation;
    let _ = links
        .wait_for(|l| l.as_ref().is_none_or(|l| l.generation != gen))
        .await;
}

async fn open(
    link: &Link,
    exchange: &str,
) -> Result<(Arc<Session>, lapin::Consumer), lapin::Error> {
    let mut channel = link.conn.create_channel().await?;
    // A request to an exchange that does not exist (no node ever declared
    // it) would make the broker close this channel, failing every call in
    // flight on it; declared, such a request is unroutable: `NoRoute`. A
    // user without the permission to declare it goes on without.
    if let Err(e) = channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
    {
        debug!(error = %e, exchange, "cannot declare the exchange; going on without");
        channel = link.conn.create_channel().await?;
    }
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let consumer = channel
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
    let session = Arc::new(Session {
        channel,
        waiters: Mutex::new(Some(HashMap::new())),
    });
    Ok((session, consumer))
}
