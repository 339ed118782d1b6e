//! The caller: a cloneable handle that sends requests and waits for replies.

use super::confirm::Confirm;
use super::connection::Connection;
use super::session::{self, Reply, Session, Waiter};
use super::wire::{self, Outgoing, REPLY_TO};
use crate::address::{Address, Peer, ServiceId};
use crate::config::WhenDisconnected;
use crate::error::Error;
use crate::layer::{Policy, PolicyLayer};
use crate::message::{Delivery, Gather, Request, Response};
use futures::future::Either;
use futures::FutureExt;
use lapin::options::BasicPublishOptions;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tower::Layer;

/// The first pause before a request returned while the connection
/// settles is published again; it doubles up to 8 times this.
const UNROUTABLE_PAUSE: Duration = Duration::from_millis(20);

struct Inner {
    conn: Connection,
    identity: Peer,
    /// `identity` as the requests' `app_id`, made once.
    app_id: Option<lapin::types::ShortString>,
    session: Arc<watch::Sender<Option<Arc<Session>>>>,
    next_id: AtomicU64,
}

/// Sends requests over RabbitMQ and waits for their replies.
///
/// A `Client` is a [`tower::Service`] of [`Request`] (one reply) and of
/// [`Gather`] (every reply within the deadline). Clones share one
/// connection and one reply channel, so make one and clone it freely.
///
/// Most code calls through a generated client (`GreeterClient::new(client)`);
/// untyped calls look like this:
///
/// ```no_run
/// use std::time::Duration;
/// use warren::{Address, Client, Config, Connection, ContentType, Request};
///
/// # async fn run() -> Result<(), warren::Error> {
/// let conn = Connection::connect(Config::from_env()?).await?;
/// let client = Client::new(&conn);
///
/// let request = Request::encode(
///     Address::any("calculator")?,
///     "Calculator.add",
///     ContentType::Json,
///     &serde_json::json!({"a": 1, "b": 2}),
/// )?
/// .with_timeout(Duration::from_secs(2));
/// let sum: i64 = client.call(request).await?.decode()?;
/// assert_eq!(sum, 3);
/// # Ok(())
/// # }
/// ```
///
/// Calls pass through the caller's [`Policy`] (deadline, span, limits)
/// first, set up from the connection's [`Config`](crate::Config).
#[derive(Clone)]
pub struct Client {
    stack: Policy<Amqp>,
}

/// The AMQP transport below the policy: routes and publishes.
#[derive(Clone)]
pub(crate) struct Amqp {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("identity", &self.stack.get_ref().inner.identity)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

/// Where to publish a request for `address`: (exchange, routing key).
fn route<'a>(exchange: &'a str, address: &Address) -> (&'a str, String) {
    match address {
        Address::Instance(id) => (exchange, format!("message.{id}")),
        // The type's work queue, through the default exchange: exactly one
        // instance takes it, and a stock AMQP server consuming a queue of
        // that name is reachable too.
        Address::Any(t) => ("", t.to_string()),
        Address::Every(t) => (exchange, format!("message.{t}")),
        Address::All => (exchange, "message.all".to_owned()),
    }
}

/// Removes a call's waiter when the call ends, however it ends.
struct Forget<'a>(&'a Session, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}

impl Client {
    /// A client on `conn`, with a random identity.
    #[must_use]
    pub fn new(conn: &Connection) -> Self {
        Self::with_identity(conn, Peer::new(None, Some(ServiceId::random())))
    }

    /// A client on `conn` that names itself `identity` in the requests it sends.
    #[must_use]
    pub fn with_identity(conn: &Connection, identity: Peer) -> Self {
        let session = Arc::new(watch::Sender::new(None));
        tokio::spawn(session::run(conn.clone(), Arc::downgrade(&session)));
        let app_id = wire::sender_app_id(&identity);
        let amqp = Amqp {
            inner: Arc::new(Inner {
                conn: conn.clone(),
                identity,
                app_id,
                session,
                next_id: AtomicU64::new(1),
            }),
        };
        Self {
            stack: PolicyLayer::from_config(conn.config()).layer(amqp),
        }
    }

    /// The connection this client uses.
    #[must_use]
    pub fn connection(&self) -> &Connection {
        &self.stack.get_ref().inner.conn
    }

    /// Calls waiting for a reply right now.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.stack.get_ref().current().map_or(0, |s| s.waiting())
    }

    /// Sends `request` and waits for its one reply.
    ///
    /// # Errors
    /// [`Error::NoRoute`] at once if nobody listens at the address,
    /// [`Error::Timeout`] at the deadline, [`Error::Remote`] for an error
    /// reply, [`Error::ConnectionLost`] if the connection died meanwhile,
    /// [`Error::Unavailable`] if it could not be sent,
    /// [`Error::MulticastCall`] for an `every`/`all` address (a [`Gather`]
    /// is the call for those), [`Error::BodyTooLarge`] over
    /// [`Config::max_body`](crate::Config::max_body).
    ///
    /// The future owns what it needs (it does not borrow the client).
    pub fn call(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<Response, Error>> + Send + 'static {
        tower::ServiceExt::oneshot(self.stack.clone(), request)
    }

    /// Sends `gather.request` to every instance at its address and collects
    /// replies until `gather.expect` came or the deadline passed.
    ///
    /// # Errors
    /// [`Error::NoRoute`] if no instance is there; transport errors as for
    /// [`Client::call`]. Error replies are returned among the replies.
    pub async fn gather(&self, gather: Gather) -> Result<Vec<Response>, Error> {
        tower::ServiceExt::oneshot(self.stack.clone(), gather).await
    }
}

impl Amqp {
    /// A call's future: it owns what it needs and holds the request once
    /// (not an `async fn`, whose arguments are kept twice in its state).
    fn call(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<Response, Error>> + Send + 'static {
        let this = self.clone();
        async move {
            if request.delivery == Delivery::OneWay {
                let content_type = request.content_type;
                // Boxed: a send is a rare way to make a call, and its state
                // would otherwise weigh on every pending call.
                Box::pin(this.send(request)).await?;
                return Ok(Response {
                    transport: crate::message::Transport::Amqp,
                    ..Response::ok(content_type, bytes::Bytes::new())
                });
            }
            this.call_inner(&request).await
        }
    }

    /// The request is borrowed, and no result is held across the pause
    /// between attempts: a pending call's future carries one request.
    async fn call_inner(&self, request: &Request) -> Result<Response, Error> {
        let deadline = request.fixed_deadline();
        let timeout = deadline.saturating_duration_since(Instant::now());
        let mut returned = 0;
        loop {
            // The outcome is not kept while pausing (only its address).
            let address = match self.call_once(request, deadline, timeout).await {
                Err(Error::NoRoute { address }) => address,
                result => return result,
            };
            if !Box::pin(self.unroutable_pause(&mut returned, deadline)).await {
                return Err(Error::NoRoute { address });
            }
        }
    }

    /// One attempt of a call: publish, then wait for the reply.
    async fn call_once(
        &self,
        request: &Request,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Response, Error> {
        // Waiting for a session is the rare path: boxed, its state does not
        // weigh on every pending call's future.
        let session = match self.live_session() {
            Some(session) => session,
            None => {
                let policy = self.inner.conn.config().when_disconnected;
                Box::pin(self.session(deadline, timeout, policy)).await?
            }
        };
        let (tx, rx) = oneshot::channel();
        let (id, _forget) = self.register(&session, Waiter::One(tx))?;
        // One bound (one timer) over the rest of the exchange: publish,
        // confirm and reply for a persistent call, the reply for others.
        if request.delivery.is_persistent() {
            // A persistent call is owed the broker's confirm as well: it
            // waits for its publish. Boxed: the state of that wait would
            // otherwise weigh on every pending call.
            return Box::pin(self.bounded(deadline, timeout, async {
                let mut confirm = self
                    .publish(&session, request, id, None, deadline, false)
                    .await?;
                // The confirm first, as a plain publisher awaits it: it is
                // never far from the reply, and one dropped unresolved (the
                // reply came first) would cost a task to complete it
                // (`Confirm`'s drop). A request that came back unroutable
                // has no reply to wait for.
                confirm.outcome(&request.address).await?;
                reply_or_lost(rx.await, &request.address)
            }))
            .await;
        }
        // A transient call: published at once, not waited for; NoRoute
        // comes from the session's sweeper.
        self.publish_transient(&session, request, id, deadline)?;
        self.bounded(deadline, timeout, async {
            reply_or_lost(rx.await, &request.address)
        })
        .await
    }

    /// Registers `waiter` on `session` under a new correlation id, which the
    /// call's span records; the guard forgets it when the call ends.
    fn register<'s>(
        &self,
        session: &'s Session,
        waiter: Waiter,
    ) -> Result<(u64, Forget<'s>), Error> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        if !session.wait(id, waiter) {
            return Err(not_sent("the reply channel closed"));
        }
        let forget = Forget(session, id);
        tracing::Span::current().record("correlation_id", id);
        Ok((id, forget))
    }

    /// Sends `gather.request` to every instance at its address and collects
    /// replies until `gather.expect` came or the deadline passed.
    async fn gather(&self, gather: Gather) -> Result<Vec<Response>, Error> {
        let Gather { request, expect } = gather;
        let deadline = request.fixed_deadline();
        let timeout = deadline.saturating_duration_since(Instant::now());
        let mut returned = 0;
        loop {
            let result = self.gather_once(&request, expect, deadline, timeout).await;
            if !(matches!(result, Err(Error::NoRoute { .. }))
                && self.unroutable_pause(&mut returned, deadline).await)
            {
                return result;
            }
        }
    }

    /// One attempt of a gather: publish, then collect the replies.
    async fn gather_once(
        &self,
        request: &Request,
        expect: Option<usize>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Vec<Response>, Error> {
        let policy = self.inner.conn.config().when_disconnected;
        let session = self.session(deadline, timeout, policy).await?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (id, _forget) = self.register(&session, Waiter::Many(tx))?;
        self.bounded(deadline, timeout, async {
            self.publish(&session, request, id, None, deadline, false)
                .await?
                .outcome(&request.address)
                .await
        })
        .await?;
        let deadline = tokio::time::Instant::from_std(deadline);
        let expect = expect.unwrap_or(usize::MAX);
        let mut replies = Vec::new();
        while replies.len() < expect {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Reply::Response(r))) => replies.push(*r),
                // One instance's reply was too large: an error reply.
                Ok(Some(Reply::TooLarge { size, limit })) => replies.push(Response::error(
                    crate::codec::ContentType::Json,
                    &too_large(size, limit).to_status(),
                )),
                // Returned: no queue is bound to the address at all.
                Ok(Some(Reply::Returned)) => return Err(Error::no_route(&request.address)),
                Ok(None) if replies.is_empty() => return Err(Error::ConnectionLost),
                Ok(None) | Err(_) => break,
            }
        }
        Ok(replies)
    }

    /// Publishes `request` as a persistent message with no reply expected,
    /// and returns once the broker confirmed it (it is then on disk, in a
    /// durable queue). A send interrupted by a lost connection is published
    /// again, with the same `message_id`, as soon as the connection is back
    /// (whatever [`WhenDisconnected`] says), until the deadline: a send may
    /// arrive twice, and after `Ok` it is never lost.
    ///
    /// # Errors
    /// [`Error::NoRoute`] if no queue takes it; [`Error::Timeout`] if it
    /// could not be confirmed before the deadline; [`Error::Unavailable`]
    /// (not sent) or [`Error::Blocked`] as [`WhenDisconnected`] describes.
    async fn send(&self, request: Request) -> Result<(), Error> {
        let deadline = request.fixed_deadline();
        let timeout = deadline.saturating_duration_since(Instant::now());
        // A sender's own id (such as the outbox's, kept however many times
        // it is sent) or a fresh one.
        let message_id = request
            .message_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut policy = self.inner.conn.config().when_disconnected;
        let mut retry = false;
        let mut returned = 0;
        loop {
            let session = match self.session(deadline, timeout, policy).await {
                // An earlier attempt may have arrived: not "not sent".
                Err(Error::Unavailable { .. }) if retry => {
                    return Err(Error::Timeout { after: timeout })
                }
                session => session?,
            };
            let attempt = self
                .bounded(deadline, timeout, async {
                    self.publish(&session, &request, 0, Some(&message_id), deadline, true)
                        .await?
                        .outcome(&request.address)
                        .await
                })
                .await;
            if matches!(attempt, Err(Error::NoRoute { .. }))
                && self.unroutable_pause(&mut returned, deadline).await
            {
                continue;
            }
            match attempt {
                Err(Error::ConnectionLost | Error::Unavailable { .. }) => {
                    tracing::debug!("send interrupted by a connection loss; sending again");
                    (policy, retry) = (WhenDisconnected::Wait, true);
                    // The session may not know yet that it died.
                    let mut slot = self.inner.session.subscribe();
                    let replaced =
                        slot.wait_for(|s| !s.as_ref().is_some_and(|s| Arc::ptr_eq(s, &session)));
                    if tokio::time::timeout_at(deadline.into(), replaced)
                        .await
                        .is_err()
                    {
                        return Err(Error::Timeout { after: timeout });
                    }
                }
                other => return other,
            }
        }
    }

    /// Whether to publish again a request the broker returned as
    /// unroutable, after a pause (which this waits). Only while the
    /// connection settles after a reconnection ([`Config::settle`]: the
    /// address's nodes may not have declared their queues again yet), and
    /// only if the pause ends before the deadline. A returned request
    /// reached no queue, so publishing it again cannot run it twice.
    ///
    /// [`Config::settle`]: crate::Config::settle
    async fn unroutable_pause(&self, returned: &mut u32, deadline: Instant) -> bool {
        let settling = self.current().is_some_and(|s| s.settling());
        let pause = UNROUTABLE_PAUSE * 2u32.pow((*returned).min(3));
        if !settling || Instant::now() + pause >= deadline {
            return false;
        }
        *returned += 1;
        tracing::debug!(
            returned = *returned,
            ?pause,
            "returned while the connection settles; sending again"
        );
        tokio::time::sleep(pause).await;
        true
    }

    /// The session, if there is one.
    fn current(&self) -> Option<Arc<Session>> {
        self.inner.session.borrow().clone()
    }

    /// The live session, if there is one and the broker takes publishes.
    fn live_session(&self) -> Option<Arc<Session>> {
        let session = self.current()?;
        self.inner.conn.blocked().is_none().then_some(session)
    }

    /// The live session, waiting for one (up to the deadline) if `policy` allows.
    async fn session(
        &self,
        deadline: Instant,
        timeout: Duration,
        policy: WhenDisconnected,
    ) -> Result<Arc<Session>, Error> {
        if let Some(s) = self.live_session() {
            return Ok(s);
        }
        let conn = &self.inner.conn;
        // Fail fast only when the broker cannot take the call: on a live
        // connection the reply channel is a few milliseconds away (a new
        // client, or just reconnected).
        let fail_fast = policy == WhenDisconnected::FailFast;
        let cannot = || !conn.state().borrow().is_connected();
        if fail_fast && cannot() {
            return Err(conn.unavailable());
        }
        let mut rx = self.inner.session.subscribe();
        let mut state = conn.state();
        let wait = async {
            loop {
                if let Some(s) = rx.borrow_and_update().as_ref() {
                    if conn.blocked().is_none() {
                        return Ok(s.clone());
                    }
                }
                if *conn.closed().borrow() || (fail_fast && cannot()) {
                    return Err(conn.unavailable());
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return Err(Error::Shutdown) },
                    r = state.changed() => if r.is_err() { return Err(Error::Shutdown) },
                }
            }
        };
        match tokio::time::timeout_at(deadline.into(), wait).await {
            Ok(r) => r,
            Err(_) if !cannot() => Err(Error::Unavailable {
                reason: format!("connected, but the reply channel did not open within {timeout:?}"),
            }),
            Err(_) => Err(match conn.unavailable() {
                Error::Unavailable { reason } => Error::Unavailable {
                    reason: format!("{reason}; waited {timeout:?}"),
                },
                other => other,
            }),
        }
    }

    /// Runs one step of a request already (being) sent: bounded by the
    /// deadline and, under [`WhenDisconnected::FailFast`], by the broker
    /// blocking publishers. A deadline that passes while the broker blocks
    /// is reported as [`Error::Blocked`], which says why.
    ///
    /// Not an `async fn`: one holds its argument twice (as the parameter and
    /// in its own state), and `step` is most of what a pending call holds.
    fn bounded<'a, T: 'a>(
        &'a self,
        deadline: Instant,
        timeout: Duration,
        step: impl Future<Output = Result<T, Error>> + Send + 'a,
    ) -> impl Future<Output = Result<T, Error>> + Send + 'a {
        let conn = &self.inner.conn;
        // Only a fail-fast client watches for the broker blocking; boxed, so
        // the others' pending calls do not carry the watch's space.
        let step = if conn.config().when_disconnected == WhenDisconnected::FailFast {
            Either::Left(Box::pin(async move {
                tokio::select! {
                    biased;
                    r = step => r,
                    reason = conn.until_blocked() => Err(Error::Blocked { reason }),
                }
            }))
        } else {
            Either::Right(step)
        };
        tokio::time::timeout_at(deadline.into(), step).map(move |r| {
            r.unwrap_or_else(|_| {
                Err(match conn.blocked() {
                    Some(reason) => Error::Blocked { reason },
                    None => Error::Timeout { after: timeout },
                })
            })
        })
    }

    /// Publishes a request (`send`: one with no reply, always persistent;
    /// a call is persistent if it asks to be). Persistent requests go out
    /// on the confirmed channel, and the returned [`Confirm`] tells what
    /// the broker did with them; others on the calls channel, whose
    /// [`Confirm`] is resolved already (not in confirm mode).
    async fn publish(
        &self,
        session: &Session,
        request: &Request,
        id: u64,
        message_id: Option<&str>,
        deadline: Instant,
        send: bool,
    ) -> Result<Confirm, Error> {
        let confirm = self
            .frames(session, request, id, message_id, deadline, send)?
            .await
            // The broker never got it: the channel was gone before the
            // frames went out. Only after this point may a call have run.
            .map_err(|e| not_sent(&e.to_string()))?;
        if !request.delivery.is_persistent() {
            session.published();
        }
        Ok(Confirm::new(confirm))
    }

    /// Publishes a transient call without waiting for its frames to be
    /// written: they are queued on the channel at once, and the connection
    /// writes them in order. Nothing of the publish stays in the call's
    /// future while it waits for its reply (lapin's publish state is a
    /// kilobyte). A channel that fails before it writes the queued frames
    /// ends the session, and the call with [`Error::ConnectionLost`] (it
    /// may have run) rather than [`Error::Unavailable`].
    fn publish_transient(
        &self,
        session: &Session,
        request: &Request,
        id: u64,
        deadline: Instant,
    ) -> Result<(), Error> {
        let frames = self.frames(session, request, id, None, deadline, false)?;
        // The first poll checks the channel and queues the frames; what is
        // left is waiting for the socket write, which is not waited for.
        match frames.now_or_never() {
            Some(Err(e)) => return Err(not_sent(&e.to_string())),
            // Not in confirm mode: resolved already; taken so lapin does not
            // keep it for `wait_for_confirms`.
            Some(Ok(confirm)) => drop(confirm.now_or_never()),
            None => {}
        }
        session.published();
        Ok(())
    }

    /// The checks and properties of a publish, and lapin's publish future
    /// (whose first poll queues the frames).
    fn frames<'a>(
        &'a self,
        session: &'a Session,
        request: &'a Request,
        id: u64,
        message_id: Option<&'a str>,
        deadline: Instant,
        send: bool,
    ) -> Result<impl Future<Output = lapin::Result<lapin::PublisherConfirm>> + 'a, Error> {
        // A send names itself (its id stays the same when it is published
        // again); a call only if its caller gave it a message id.
        let message_id = message_id.or(request.message_id.as_deref());
        let timeout = deadline.saturating_duration_since(Instant::now());
        if timeout.is_zero() {
            return Err(Error::Timeout { after: timeout });
        }
        let props = wire::request_properties(&Outgoing {
            method: &request.method,
            content_type: request.content_type,
            headers: &request.headers,
            message_id,
            correlation_id: (!send).then_some(id),
            reply_to: (!send).then_some(REPLY_TO),
            // Sends are not calls: nobody waits, so they do not expire.
            timeout: (!send).then_some(timeout),
            persistent: request.delivery.is_persistent(),
            app_id: self.inner.app_id.as_ref(),
        })?;
        let (exchange, key) = route(&self.inner.conn.config().exchange, &request.address);
        let channel = if request.delivery.is_persistent() {
            &session.confirmed
        } else {
            &session.calls
        };
        Ok(channel.basic_publish(
            exchange.into(),
            key.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            &request.body,
            props,
        ))
    }
}

/// The request was not published: [`Error::Unavailable`], which tells a
/// fallback transport that sending it elsewhere cannot run it twice.
fn not_sent(why: &str) -> Error {
    Error::Unavailable {
        reason: format!("{why} before the request was published"),
    }
}

fn reply_or_lost(
    reply: Result<Reply, oneshot::error::RecvError>,
    address: &Address,
) -> Result<Response, Error> {
    match reply {
        Ok(Reply::Response(response)) => (*response).into_result(),
        Ok(Reply::Returned) => Err(Error::no_route(address)),
        Ok(Reply::TooLarge { size, limit }) => Err(too_large(size, limit)),
        Err(_) => Err(Error::ConnectionLost),
    }
}

/// A reply whose body (`size` bytes) was over `limit` and dropped.
fn too_large(size: u64, limit: usize) -> Error {
    Error::BodyTooLarge {
        size: usize::try_from(size).unwrap_or(usize::MAX),
        limit,
    }
}

crate::message::transport_services!(Amqp, owned);
crate::message::policy_services!(Client);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Address, Config, Connection, ContentType};

    /// What a pending call holds is mostly its future: 100,000 pending calls
    /// are 100,000 of them (docs/BENCHMARKS.md, "Memory per pending call").
    /// The publish's state (a kilobyte of lapin's) and a second copy of the
    /// request once doubled it.
    #[tokio::test]
    async fn a_pending_call_holds_under_a_kilobyte() {
        let config = Config::default().url("amqp://127.0.0.1:1/%2f").unwrap();
        let conn = Connection::start(config).unwrap();
        let client = Client::new(&conn);
        let request = Request::new(
            Address::any("echo").unwrap(),
            "echo",
            ContentType::MsgPack,
            bytes::Bytes::new(),
        )
        .unwrap();
        // The transport's future (boxed by its tower impl), and what the
        // policy stack around it adds.
        let transport = client.stack.get_ref().call(request.clone());
        let call = client.call(request);
        for (what, bytes) in [
            ("the transport's", std::mem::size_of_val(&transport)),
            ("the policy's", std::mem::size_of_val(&call)),
        ] {
            assert!(bytes <= 1024, "{what} future takes {bytes} bytes");
        }
        conn.close();
    }
}
