//! The caller's channels: they publish requests and receive their replies
//! over direct reply-to, matching them to waiting calls by correlation id.
//!
//! A session has two channels, each consuming its own direct reply-to:
//!
//! - `calls`, for transient calls and gathers, without publisher confirms.
//!   Its requests are `mandatory`; one nobody is bound to comes back as
//!   `basic.return`, which lapin keeps until asked (it has no callback), so
//!   a sweeper asks [`SWEEP`] after a publish and fails each returned call
//!   with `NoRoute`. The broker returns a request as it routes it, so a
//!   return comes within a round trip of its publish: while nothing is
//!   published the sweeper backs off (up to [`DOZE_MAX`]) and the next
//!   publish wakes it, so calls that only wait cost no CPU. Confirms would
//!   tell the same without a sweep, at the price of one more frame per
//!   call for the broker and the client (see `docs/DECISIONS.md`).
//! - `confirmed`, in confirm mode, for one-way sends and persistent calls,
//!   whose callers are owed the broker's word that it took the message.
//!
//! One session lives as long as both channels. When either or the
//! connection dies, every call still waiting is told at once (its reply is
//! gone with the channel), and a new session is opened on the next
//! connection.

use super::connection::{tagged, until_closed, Connection, Link, Links};
use super::wire::{self, REPLY_TO};
use crate::codec::ContentType;
use crate::message::Response;
use crate::status::{Code, Status};
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use std::collections::hash_map::{Entry, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tracing::{debug, warn};

/// How soon after a publish returned requests are looked for: about the
/// longest a `NoRoute` waits beyond the round trip.
pub(crate) const SWEEP: Duration = Duration::from_millis(2);

/// From this pause on, the sweeper dozes: the next publish wakes it.
const DOZE: Duration = Duration::from_millis(16);

/// The longest pause between sweeps while calls wait and nothing is
/// published: a return the broker sent very late (it was overloaded) is
/// still seen within it.
pub(crate) const DOZE_MAX: Duration = Duration::from_secs(1);

/// What a waiting call hears.
#[derive(Debug)]
pub(crate) enum Reply {
    /// A reply. Boxed: every waiting call's channel has room for one
    /// `Reply`, and a box is the smallest such room.
    Response(Box<Response>),
    /// The broker returned the request: nobody is bound to its address.
    Returned,
    /// The reply's body was over `Config::max_body` (`limit`): it was
    /// dropped on arrival.
    TooLarge {
        /// The body's announced size.
        size: u64,
        /// `Config::max_body`.
        limit: usize,
    },
}

/// Where the reply (or replies) to one call go.
pub(crate) enum Waiter {
    One(oneshot::Sender<Reply>),
    Many(mpsc::UnboundedSender<Reply>),
}

/// The calls waiting for replies, by id.
type Waiters = HashMap<u64, Waiter, BuildHasherDefault<IdHasher>>;

/// Hashes a waiter's id with one multiplication (Fibonacci hashing)
/// rather than SipHash: the ids are this process's own counter, never
/// chosen by a peer (a reply's correlation id is only looked up), so
/// there is no collision attack to resist, and the map is hashed three
/// times a call.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A live pair of reply channels.
pub(crate) struct Session {
    /// Transient calls and gathers: no confirms.
    pub(crate) calls: lapin::Channel,
    /// Sends and persistent calls: confirm mode.
    pub(crate) confirmed: lapin::Channel,
    /// `None` once the session is dead: no call may wait on it any more.
    waiters: Mutex<Option<Waiters>>,
    /// Wakes the sweeper when the first call starts waiting.
    waiting: Notify,
    /// Something was published on `calls` since the last sweep.
    fresh: AtomicBool,
    /// The sweeper dozes (a long pause): a publish must wake it.
    dozing: AtomicBool,
    /// Wakes a dozing sweeper.
    kick: Notify,
    /// Until when the connection is settling after a reconnection: a
    /// returned request may only mean that its node is not back yet.
    settling_until: Option<Instant>,
}

impl Session {
    /// Registers a waiter; `false` if the session already died.
    pub(crate) fn wait(&self, id: u64, waiter: Waiter) -> bool {
        match &mut *self.lock() {
            Some(map) => {
                if map.is_empty() {
                    self.waiting.notify_one();
                }
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

    /// Notes a request published on `calls`: its return, if any, comes
    /// within a round trip, so the sweeper looks soon. Two atomic
    /// operations while the sweeper is awake; a wake-up when it dozes.
    pub(crate) fn published(&self) {
        self.fresh.store(true, Ordering::SeqCst);
        if self.dozing.load(Ordering::SeqCst) && self.dozing.swap(false, Ordering::SeqCst) {
            self.kick.notify_one();
        }
    }

    /// Whether the connection is still settling after a reconnection
    /// ([`Config::settle`](crate::Config::settle)).
    pub(crate) fn settling(&self) -> bool {
        self.settling_until.is_some_and(|t| Instant::now() < t)
    }

    /// How many calls are waiting.
    pub(crate) fn waiting(&self) -> usize {
        self.lock().as_ref().map_or(0, HashMap::len)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Waiters>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn deliver(&self, id: u64, reply: Reply) {
        let mut guard = self.lock();
        let Some(map) = guard.as_mut() else { return };
        match map.entry(id) {
            Entry::Occupied(waiter) => match waiter.get() {
                Waiter::Many(tx) => {
                    let _ = tx.send(reply);
                }
                // One reply ends the call: its waiter goes.
                Waiter::One(_) => {
                    if let Waiter::One(tx) = waiter.remove() {
                        drop(guard);
                        let _ = tx.send(reply);
                    }
                }
            },
            Entry::Vacant(_) => debug!(
                correlation_id = id,
                "reply for no waiting call (late or dropped)"
            ),
        }
    }

    /// Tells the calls whose requests the broker returned: `NoRoute`. Runs
    /// while calls wait; lapin keeps returns until asked. It looks
    /// [`SWEEP`] after a publish, then ever less often while nothing is
    /// published, dozing from [`DOZE`] on until a publish wakes it.
    async fn sweep(self: Arc<Self>) {
        let mut pause = SWEEP;
        loop {
            if self.waiting() == 0 {
                pause = SWEEP;
                self.waiting.notified().await;
            }
            if pause >= DOZE {
                // `published` stores `fresh`, then reads `dozing`; this
                // stores `dozing`, then reads `fresh`: one of the two sees
                // the other, so no publish goes unnoticed while dozing.
                self.dozing.store(true, Ordering::SeqCst);
                if self.fresh.load(Ordering::SeqCst) {
                    self.dozing.store(false, Ordering::SeqCst);
                    pause = SWEEP;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = self.kick.notified(), if pause >= DOZE => {}
            }
            self.dozing.store(false, Ordering::SeqCst);
            if self.lock().is_none() {
                return;
            }
            pause = if self.fresh.swap(false, Ordering::SeqCst) {
                SWEEP
            } else {
                (pause * 2).min(DOZE_MAX)
            };
            // Without confirm mode this does not wait: it hands over the
            // returned messages.
            let Ok(returned) = self.calls.wait_for_confirms().await else {
                return;
            };
            for message in returned {
                match correlation_id(&message.properties) {
                    Some(id) => self.deliver(id, Reply::Returned),
                    None => debug!("a returned message without a correlation id"),
                }
            }
        }
    }

    /// Kills the session: every waiter is dropped, so its call sees the
    /// connection loss now instead of at its deadline.
    fn kill(&self) {
        let waiters = self.lock().take();
        // The sweeper may be asleep until a call waits, or dozing: wake it
        // to end.
        self.waiting.notify_one();
        self.kick.notify_one();
        if let Some(w) = waiters.filter(|w| !w.is_empty()) {
            warn!(
                calls = w.len(),
                "reply channel lost; failing calls in flight"
            );
        }
    }
}

/// The waiting call a message is for.
fn correlation_id(props: &lapin::BasicProperties) -> Option<u64> {
    props.correlation_id().as_ref()?.as_str().parse().ok()
}

/// Turns a delivery on the reply queue into a [`Response`].
fn response(delivery: lapin::message::Delivery, last: &mut wire::LastSender) -> Response {
    let inc = wire::incoming(&delivery.properties, Some(last));
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
    resp.transport = crate::message::Transport::Amqp;
    resp
}

/// Keeps a session open on every connection until the client is dropped.
pub(crate) async fn run(conn: Connection, slot: Weak<watch::Sender<Option<Arc<Session>>>>) {
    let settle = conn.config().settle;
    let exchange = conn.config().exchange.as_str();
    let mut closed = conn.closed();
    let mut links = Links::new(&conn);
    while let Some(link) = links.next(std::future::pending()).await {
        let Some(s) = slot.upgrade() else { return };
        let (session, replies) = match open(&link, exchange, link.settling_until(settle)).await {
            Ok(x) => x,
            Err(e) => {
                if link.conn.status().connected() {
                    warn!(error = %e, "cannot open the reply channel; retrying");
                } else {
                    debug!(error = %e, "the connection died before the reply channel opened");
                }
                continue;
            }
        };
        s.send_replace(Some(session.clone()));
        drop(s);
        tokio::spawn(session.clone().sweep());
        // Both consumers as one stream: it ends when either does.
        let [calls, confirmed] = replies;
        let mut replies = futures::stream::select(
            tagged(calls, session.calls.id()),
            tagged(confirmed, session.confirmed.id()),
        );
        let mut last = wire::LastSender::default();
        // One wait for the close, kept across replies (not set up anew for
        // each one), and looked at when no reply is ready: replies come
        // only for calls made, so the stream is soon pending.
        let closing = until_closed(&mut closed);
        tokio::pin!(closing);
        let lost = loop {
            tokio::select! {
                biased;
                d = replies.next() => match d.flatten() {
                    Some((channel, Ok(d))) => {
                        let id = correlation_id(&d.properties);
                        // A body over the limit was dropped on arrival.
                        let reply = match conn.oversized(channel, d.delivery_tag, &d.data) {
                            Some(size) => Reply::TooLarge { size, limit: conn.config().max_body },
                            None => Reply::Response(Box::new(response(d, &mut last))),
                        };
                        match id {
                            Some(id) => session.deliver(id, reply),
                            None => debug!("reply without a usable correlation id dropped"),
                        }
                    }
                    Some((_, Err(e))) => { debug!(error = %e, "reply consumer error"); break true; }
                    None => break true,
                },
                () = &mut closing => break false,
            }
        };
        session.kill();
        let Some(s) = slot.upgrade() else { return };
        s.send_replace(None);
        if !lost {
            return;
        }
    }
}

async fn open(
    link: &Link,
    exchange: &str,
    settling_until: Option<Instant>,
) -> Result<(Arc<Session>, [lapin::Consumer; 2]), lapin::Error> {
    let mut channel = link.conn.create_channel().await?;
    // A request to an exchange that does not exist (no node ever declared
    // it) would make the broker close this channel, failing every call in
    // flight on it; declared, such a request is unroutable: `NoRoute`. A
    // user without the permission to declare it goes on without.
    if let Err(e) = super::declare_exchange(&channel, exchange.into()).await {
        debug!(error = %e, exchange, "cannot declare the exchange; going on without");
        channel = link.conn.create_channel().await?;
    }
    let confirmed = link.conn.create_channel().await?;
    confirmed
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    // Direct reply-to: each channel's replies come to its own consumer.
    let consumers = [
        consume_replies(&channel).await?,
        consume_replies(&confirmed).await?,
    ];
    let session = Arc::new(Session {
        calls: channel,
        confirmed,
        waiters: Mutex::new(Some(Waiters::default())),
        waiting: Notify::new(),
        fresh: AtomicBool::new(false),
        dozing: AtomicBool::new(false),
        kick: Notify::new(),
        settling_until,
    });
    Ok((session, consumers))
}

async fn consume_replies(channel: &lapin::Channel) -> Result<lapin::Consumer, lapin::Error> {
    channel
        .basic_consume(
            REPLY_TO.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
}
