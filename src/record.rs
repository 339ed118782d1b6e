//! Where the library records its metrics: no-ops without the `metrics`
//! feature, and until the process enables metrics (`warren::metrics`).

#![cfg_attr(not(feature = "metrics"), allow(unused_variables))]

use std::time::Duration;
#[cfg(feature = "metrics")]
use std::time::Instant;

/// A client call (or gather) under way: its method's series, looked up
/// once when it starts.
#[derive(Debug)]
pub(crate) struct Call {
    #[cfg(feature = "metrics")]
    calls: Option<std::sync::Arc<crate::metrics::Calls>>,
}

impl Call {
    #[inline]
    pub(crate) fn start(method: &str, gather: bool) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            calls: crate::metrics::get().map(|m| {
                let family = if gather { &m.gathers } else { &m.client };
                family.get(method)
            }),
        }
    }

    /// It ended with `outcome` after `elapsed`; a gather with `replies`.
    #[inline]
    pub(crate) fn end(&self, outcome: &str, elapsed: Duration, replies: Option<usize>) {
        #[cfg(feature = "metrics")]
        if let Some(c) = &self.calls {
            c.outcomes.with(outcome, |n| n.inc());
            c.seconds.observe(nanos(elapsed));
            if let Some(n) = replies {
                c.replies.observe(n as u64);
            }
        }
    }
}

/// A request a handler runs; [`Handling::end`] records its end.
#[derive(Debug)]
pub(crate) struct Handling {
    /// The method's series and when the request started, once metrics are on.
    #[cfg(feature = "metrics")]
    served: Option<(std::sync::Arc<crate::metrics::Served>, Instant)>,
}

impl Handling {
    #[inline]
    pub(crate) fn start(method: &str) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            served: crate::metrics::get().map(|m| {
                let s = m.server.get(method);
                s.in_flight.add(1);
                (s, Instant::now())
            }),
        }
    }

    /// The request was answered with `code`.
    #[inline]
    pub(crate) fn end(&self, code: &str) {
        #[cfg(feature = "metrics")]
        if let Some((s, start)) = &self.served {
            s.codes.with(code, |n| n.inc());
            s.seconds.observe(nanos(start.elapsed()));
        }
    }
}

impl Drop for Handling {
    /// No longer in flight, answered or not (a node stopped mid-call).
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        if let Some((s, _)) = &self.served {
            s.in_flight.add(-1);
        }
    }
}

/// A call the fallback sent over HTTP (`true`) or AMQP.
#[cfg(feature = "http")]
#[inline]
pub(crate) fn fallback(http: bool) {
    #[cfg(feature = "metrics")]
    if let Some(m) = crate::metrics::get() {
        m.fallback[usize::from(http)].inc();
    }
}

/// What happened to an event of type `event_type`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum EventFate {
    Published,
    Consumed,
    Retried,
    DeadLettered,
}

#[inline]
pub(crate) fn event(event_type: &str, fate: EventFate) {
    #[cfg(feature = "metrics")]
    if let Some(m) = crate::metrics::get() {
        m.events.with(event_type, |e| match fate {
            EventFate::Published => e.published.inc(),
            EventFate::Consumed => e.consumed.inc(),
            EventFate::Retried => e.retried.inc(),
            EventFate::DeadLettered => e.dead_lettered.inc(),
        });
    }
}

/// A connection re-established after a loss.
#[inline]
pub(crate) fn reconnected() {
    #[cfg(feature = "metrics")]
    if let Some(m) = crate::metrics::get() {
        m.reconnects.inc();
    }
}

/// A connection whose state `warren_connections` shows. Recorded whether
/// or not metrics are on yet: connections usually open first.
pub(crate) fn connection(state: &tokio::sync::watch::Sender<crate::ConnectionState>) {
    #[cfg(feature = "metrics")]
    crate::metrics::watched()
        .connections
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(state.subscribe());
}

/// A node whose handlers and consumers the node gauges show.
pub(crate) fn node(
    service: &str,
    permits: &std::sync::Arc<tokio::sync::Semaphore>,
    concurrency: usize,
    consumers: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    #[cfg(feature = "metrics")]
    crate::metrics::watched()
        .nodes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(crate::metrics::NodeWatch {
            service: service.to_owned(),
            permits: std::sync::Arc::downgrade(permits),
            concurrency,
            consumers: std::sync::Arc::downgrade(consumers),
        });
}

#[cfg(feature = "metrics")]
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Keeps the queue gauges of an owner's queues read while it lives.
#[derive(Debug)]
pub(crate) struct QueueGauges {
    #[cfg(feature = "metrics")]
    _alive: std::sync::Arc<()>,
}

/// The queues of a node or subscription, for the queue gauges.
#[cfg_attr(not(feature = "metrics"), allow(clippy::needless_pass_by_value))]
pub(crate) fn queues(
    conn: &crate::Connection,
    queues: Vec<(String, crate::QueueKind)>,
) -> QueueGauges {
    #[cfg(feature = "metrics")]
    {
        let alive = std::sync::Arc::new(());
        crate::metrics::watch_queues(conn.clone(), queues, std::sync::Arc::downgrade(&alive));
        QueueGauges { _alive: alive }
    }
    #[cfg(not(feature = "metrics"))]
    QueueGauges {}
}
