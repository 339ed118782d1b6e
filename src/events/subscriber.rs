//! Subscriptions: a service's queue, its bindings and handlers.

use super::envelope::Format;
use super::handler::{typed, untyped, Delivery, Erased, Upcaster, Upcasters};
use super::inbox::{Inbox, MemoryInbox};
use super::policy::{Overflow, Policy, QueueType};
use super::retry::RetryPolicy;
use super::runner::{self, Shared};
use super::{check_name, Event};
use crate::error::Error;
use crate::Connection;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tower::{BoxError, Service};

/// A service's subscription to events: its durable queue `<service>.q`,
/// bound with exact event types and topic patterns (`*.created`,
/// `payment.*`, `audit.#`), and a handler per event type (typed) or per
/// pattern (the payload as JSON values). Instances of one service share its
/// queue (competing consumers); each service gets every event it is bound
/// for.
///
/// A handler is a [`tower::Service`] of [`Delivery`], so timeouts and
/// concurrency limits are tower layers. The delivery is acked once the
/// handler succeeded; a failure is retried with the [`RetryPolicy`], a
/// [permanent](super::permanent) one (and an event that does not decode,
/// that no handler takes, or whose version no handler accepts) goes to
/// `<service>.dlq` at once.
///
/// ```no_run
/// # async fn run(conn: warren::Connection) -> Result<(), warren::Error> {
/// use std::time::Duration;
/// use tower::ServiceBuilder;
/// use warren::events::{Delivery, Subscription};
///
/// #[derive(serde::Serialize, serde::Deserialize, warren::Event)]
/// #[event(name = "ticket.created", version = 2)]
/// struct TicketCreated {
///     id: u64,
///     priority: String,
/// }
///
/// let handler = ServiceBuilder::new()
///     .timeout(Duration::from_secs(10))
///     .service_fn(|d: Delivery<TicketCreated>| async move {
///         println!("ticket {} ({})", d.payload.id, d.payload.priority);
///         Ok::<_, warren::Error>(())
///     });
/// let notifications = Subscription::new("notifications")
///     .on(handler)
///     // Version 1 had no priority.
///     .upcast("ticket.created", 1, |mut v| {
///         v["priority"] = "normal".into();
///         Ok(v)
///     })
///     .on_pattern("payment.*", tower::service_fn(|d: Delivery<serde_json::Value>| async move {
///         println!("{}: {}", d.meta.event_type, d.payload);
///         Ok::<_, warren::Error>(())
///     }))
///     .idempotent()
///     .start(&conn)
///     .await?;
/// notifications.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct Subscription {
    service: String,
    bindings: Vec<String>,
    typed: HashMap<String, Erased>,
    patterns: Vec<(String, Erased)>,
    upcasters: Upcasters,
    format: Format,
    retry: RetryPolicy,
    inbox: Option<Arc<dyn Inbox>>,
    prefetch: Option<u16>,
    concurrency: Option<usize>,
    exchange: Option<String>,
    grace: Duration,
    policy: Policy,
    errors: Vec<String>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("service", &self.service)
            .field("bindings", &self.bindings)
            .field("format", &self.format)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// A subscription of `service` (its queue is `<service>.q`).
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            bindings: Vec::new(),
            typed: HashMap::new(),
            patterns: Vec::new(),
            upcasters: HashMap::new(),
            format: Format::default(),
            retry: RetryPolicy::default(),
            inbox: None,
            prefetch: None,
            concurrency: None,
            exchange: None,
            grace: Duration::from_secs(30),
            policy: Policy::default(),
            errors: Vec::new(),
        }
    }

    /// Handles `E` with `handler` (version `E::VERSION`, and older versions
    /// an [upcaster](Subscription::upcast) brings up to it); binds `E::NAME`.
    pub fn on<E, S>(self, handler: S) -> Self
    where
        E: Event,
        S: Service<Delivery<E>, Response = ()> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send,
    {
        self.on_versions([E::VERSION], handler)
    }

    /// Handles `E` written in any of `versions` with `handler`: `E`'s
    /// `Deserialize` must read each of them (optional fields, aliases).
    /// Versions below `E::VERSION` that are not listed still go through
    /// the upcasters.
    pub fn on_versions<E, S>(mut self, versions: impl IntoIterator<Item = u32>, handler: S) -> Self
    where
        E: Event,
        S: Service<Delivery<E>, Response = ()> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send,
    {
        self = self.bind(E::NAME);
        self.typed.insert(
            E::NAME.to_owned(),
            typed::<E, S>(handler, versions.into_iter().collect()),
        );
        self
    }

    /// Handles every event matching `pattern` (`*` one word, `#` any
    /// number) that no typed handler takes, whatever its version, with the
    /// payload as JSON values; binds `pattern`. The first matching pattern
    /// handler wins.
    pub fn on_pattern<S>(mut self, pattern: impl Into<String>, handler: S) -> Self
    where
        S: Service<Delivery<serde_json::Value>, Response = ()> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send,
    {
        let pattern = pattern.into();
        self = self.bind(pattern.clone());
        self.patterns.push((pattern, untyped(handler)));
        self
    }

    /// Binds the queue to `pattern` too (an exact type, or a pattern with
    /// `*` and `#`): events it brings are handled by the typed handler of
    /// their type, or else the first matching pattern handler.
    pub fn bind(mut self, pattern: impl Into<String>) -> Self {
        let pattern = pattern.into();
        let ok = !pattern.is_empty()
            && pattern.split('.').all(|w| {
                w == "*"
                    || w == "#"
                    || (!w.is_empty()
                        && w.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            });
        if !ok {
            self.errors.push(format!(
                "binding `{pattern}`: use dot-separated lowercase words, `*` or `#`"
            ));
        }
        if !self.bindings.contains(&pattern) {
            self.bindings.push(pattern);
        }
        self
    }

    /// Turns a payload of version `from` of `event_type` into version
    /// `from + 1`; chained, so a v1 payload reaches a v3 handler through
    /// the v1→v2 and v2→v3 upcasters.
    pub fn upcast<F>(mut self, event_type: impl Into<String>, from: u32, upcaster: F) -> Self
    where
        F: Fn(serde_json::Value) -> Result<serde_json::Value, String> + Send + Sync + 'static,
    {
        let upcaster: Upcaster = Arc::new(upcaster);
        self.upcasters.insert((event_type.into(), from), upcaster);
        self
    }

    /// Reads bodies in `format` (warren's envelope by default): for events
    /// from producers that write another shape.
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// The retry delays (default: at once, then 1 s, 2 s, 4 s, 8 s).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Runs a handler at most once per eventId, with a [`MemoryInbox`].
    pub fn idempotent(self) -> Self {
        self.inbox(MemoryInbox::default())
    }

    /// Runs a handler at most once per eventId, as `inbox` remembers.
    pub fn inbox(mut self, inbox: impl Inbox) -> Self {
        self.inbox = Some(Arc::new(inbox));
        self
    }

    /// Deliveries held unacknowledged (default: `Config::prefetch`).
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = Some(prefetch);
        self
    }

    /// Handlers running at once (default: the prefetch).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = Some(concurrency.max(1));
        self
    }

    /// Subscribes on `exchange` instead of `Config::events_exchange`.
    pub fn exchange(mut self, exchange: impl Into<String>) -> Self {
        self.exchange = Some(exchange.into());
        self
    }

    /// How long [`Subscriber::shutdown`] waits for running handlers (30 s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Declares the subscription's queues (`<service>.q`, its delay queues
    /// and `<service>.dlq`) as `queue_type`: [`QueueType::Quorum`] for
    /// events that must survive the loss of a broker node. Unset, the
    /// connection's [`Config::queue_type`](crate::Config::queue_type)
    /// applies: quorum if it is, else the broker's default type (classic)
    /// with no `x-queue-type` declared.
    pub fn queue_type(mut self, queue_type: QueueType) -> Self {
        self.policy.queue_type = Some(queue_type);
        self
    }

    /// Expires an event that waited `ttl` in `<service>.q` without being
    /// handled (`x-message-ttl`, in milliseconds): the broker drops it.
    /// Events in the delay queues and the dead-letter queue are not
    /// affected.
    pub fn message_ttl(mut self, ttl: Duration) -> Self {
        self.policy.message_ttl = Some(ttl);
        self
    }

    /// Holds at most `max` ready events in `<service>.q` (`x-max-length`);
    /// what happens to more is the [`overflow`](Subscription::overflow)
    /// behaviour (by default the oldest are dropped).
    pub fn max_length(mut self, max: u32) -> Self {
        self.policy.max_length = Some(max);
        self
    }

    /// What a full `<service>.q` does with another event (`x-overflow`):
    /// drop the oldest, or refuse the new one, which the publisher sees as
    /// [`Error::Rejected`].
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.policy.overflow = Some(overflow);
        self
    }

    /// Declares the queues and bindings and starts consuming; returns once
    /// it consumes. It follows the connection: after a reconnection it
    /// declares and consumes again.
    ///
    /// # Errors
    /// [`Error::Config`] for a subscription without handlers or with a bad
    /// name or binding; [`Error::TopologyMismatch`] if a queue exists with
    /// other arguments (another queue type or other policies, as an older
    /// deployment declared them); [`Error::Unavailable`] or [`Error::Broker`] if the
    /// broker cannot be reached or refuses.
    pub async fn start(self, conn: &Connection) -> Result<Subscriber, Error> {
        let mut errors = self.errors;
        if self.typed.is_empty() && self.patterns.is_empty() {
            errors.push("it has no handler (Subscription::on, on_pattern)".into());
        }
        if self.service.is_empty() || self.service.len() > 200 {
            errors.push("the service name must have 1 to 200 characters".into());
        }
        for name in self.typed.keys() {
            if let Err(e) = check_name(name) {
                errors.push(e.to_string());
            }
        }
        if !errors.is_empty() {
            return Err(Error::Config(format!(
                "subscription of `{}`: {}",
                self.service,
                errors.join("; ")
            )));
        }
        let prefetch = self.prefetch.unwrap_or(conn.config().prefetch).max(1);
        let queues = super::layout(conn.config(), &self.service, &[], &self.retry)
            .queues
            .into_iter()
            .map(|q| (q.name, q.kind))
            .collect();
        let shared = Arc::new(Shared {
            exchange: self
                .exchange
                .unwrap_or_else(|| conn.config().events_exchange.clone()),
            service: self.service.clone(),
            bindings: self.bindings,
            typed: self.typed,
            patterns: self.patterns,
            upcasters: self.upcasters,
            format: self.format,
            retry: self.retry,
            inbox: self.inbox,
            prefetch,
            concurrency: self.concurrency.unwrap_or(usize::from(prefetch)),
            grace: self.grace,
            policy: self.policy.under(conn.config()),
        });
        let (stop, stopped) = watch::channel(false);
        let (ready, is_ready) = oneshot::channel();
        let task = tokio::spawn(runner::run(shared, conn.clone(), stopped, Some(ready)));
        match is_ready.await {
            Ok(Ok(())) => Ok(Subscriber {
                _queue_gauges: crate::record::queues(conn, queues),
                service: self.service,
                stop: Some(stop),
                task: Some(task),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(conn.unavailable()),
        }
    }
}

/// A running subscription. [`Subscriber::shutdown`] stops it gracefully;
/// dropping it stops it too, without waiting.
#[derive(Debug)]
pub struct Subscriber {
    service: String,
    stop: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<()>>,
    /// Its queues' gauges, read while it runs.
    _queue_gauges: crate::record::QueueGauges,
}

impl Subscriber {
    /// The service it consumes for.
    #[must_use]
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Stops taking deliveries, lets running handlers finish (up to the
    /// grace period) and acks their events, then closes its channel: every
    /// delivery not yet started goes back to the queue.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send_replace(true);
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send_replace(true);
        }
    }
}
