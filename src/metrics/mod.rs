//! Prometheus metrics of calls, handlers, connections, nodes and events
//! (feature `metrics`).
//!
//! warren records into pre-registered families once the process asks for
//! metrics: [`registry`], [`enable`], a [`MetricsServer`], or a node
//! serving HTTP (which then also answers `GET /metrics`). Until then the
//! only cost on a call is one atomic load. Recording is a few relaxed
//! atomic adds under a shared read lock of the family's label map: no
//! allocation once a label value has been seen, no exclusive lock per call.
//!
//! Labels are method names (`Calculator.add`), event types, status codes,
//! transports, connection states and service types: never ids. Methods and
//! event types arrive from the wire, so each family keeps at most 256
//! values and counts the rest under `_other`.
//!
//! | metric | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `warren_client_calls_total` | counter | `method`, `outcome` | calls ended: `ok`, the reply's status code (`not_found`, …) or the transport's error (`timeout`, `no_route`, `unavailable`, `connection_lost`, `blocked`, …) |
//! | `warren_client_call_duration_seconds` | histogram | `method` | call latency, seen by the caller |
//! | `warren_client_gathers_total` | counter | `method`, `outcome` | gathers (multicast calls) ended |
//! | `warren_client_gather_duration_seconds` | histogram | `method` | how long gathers took |
//! | `warren_client_gather_replies` | histogram | `method` | replies per gather |
//! | `warren_fallback_calls_total` | counter | `transport` | calls through the HTTP fallback, by the transport that carried them |
//! | `warren_server_requests_total` | counter | `method`, `code` | requests this process's handlers answered, over any transport |
//! | `warren_server_request_duration_seconds` | histogram | `method` | handler latency |
//! | `warren_server_requests_in_flight` | gauge | `method` | requests being handled now |
//! | `warren_node_handlers_in_use` | gauge | `service` | handler permits in use |
//! | `warren_node_handlers_limit` | gauge | `service` | handler permits (the nodes' concurrency) |
//! | `warren_node_consumers` | gauge | `service` | broker consumers feeding the nodes (2 per node) |
//! | `warren_connections` | gauge | `state` | broker connections by state (`connected`, `blocked`, `reconnecting`, `down`, `refused`, `closed`) |
//! | `warren_connection_reconnects_total` | counter | | connections re-established after a loss |
//! | `warren_http_connections_open` | gauge | `listener` | connections open on warren's HTTP listeners (`node`, `metrics`, `postoffice`), WebSockets included |
//! | `warren_http_connections_refused_total` | counter | `listener` | connections closed at once because the listener held its maximum ([`crate::listen`]) |
//! | `warren_http_connections_timed_out_total` | counter | `listener`, `reason` | connections closed by their timers: `header` (headers or TLS handshake too slow) or `idle` |
//! | `warren_events_published_total` | counter | `type` | events published and confirmed |
//! | `warren_events_consumed_total` | counter | `type` | events handled successfully |
//! | `warren_events_retried_total` | counter | `type` | events scheduled again after a failure |
//! | `warren_events_dead_lettered_total` | counter | `type` | events moved to the dead-letter queue |
//! | `warren_outbox_pending` | gauge | `table` | outbox rows not yet sent, counted by the relay each round (feature `outbox`) |
//! | `warren_outbox_relay_lag_seconds` | gauge | `table` | age of the oldest unsent outbox row at the relay's last round (0 when none) |
//! | `warren_outbox_published_total` | counter | `table` | outbox rows the relays published and marked sent |
//! | `warren_outbox_failed_rounds_total` | counter | `table` | relay rounds that failed (broker or database away) |
//!
//! Add metrics of your own to the same registry, and they are served with
//! warren's:
//!
//! ```
//! use warren::metrics::prometheus_client::metrics::counter::Counter;
//!
//! let orders = Counter::<u64>::default();
//! warren::metrics::registry()
//!     .lock()
//!     .unwrap()
//!     .register("shop_orders", "Orders taken.", orders.clone());
//! orders.inc();
//! assert!(warren::metrics::encode().contains("shop_orders_total 1"));
//! ```
//!
//! `docs/OPERATING.md` says what to watch and what each metric means.

mod families;
mod server;
mod store;

pub use prometheus_client;
pub use server::{MetricsServer, MetricsServerBuilder};

pub(crate) use families::{Calls, Metrics, NodeWatch, Served, Watched};
use prometheus_client::registry::Registry;
use std::sync::{Mutex, OnceLock, PoisonError};

/// The media type of [`encode`]'s text (OpenMetrics 1.0, which Prometheus
/// scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

static METRICS: OnceLock<Metrics> = OnceLock::new();
static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
static WATCHED: OnceLock<Watched> = OnceLock::new();

/// The process's connections and nodes, watched from their start.
pub(crate) fn watched() -> &'static Watched {
    WATCHED.get_or_init(Watched::default)
}

/// warren's families, if recording has started.
#[inline]
pub(crate) fn get() -> Option<&'static Metrics> {
    METRICS.get()
}

/// How often the queue gauges are read, in milliseconds.
static QUEUE_REFRESH_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(15_000);

/// Reads the queue gauges (`warren_queue_messages`,
/// `warren_queue_consumers`) every `every` (15 s by default), with passive
/// declares of the queues of this process's nodes and subscriptions; only
/// while metrics are recorded.
pub fn set_queue_refresh(every: std::time::Duration) {
    let ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1);
    QUEUE_REFRESH_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
}

/// Reads `queues` over `conn` on the refresh interval while `alive` lives,
/// for the queue gauges; skipped while metrics are not recorded.
pub(crate) fn watch_queues(
    conn: crate::Connection,
    queues: Vec<(String, crate::QueueKind)>,
    alive: std::sync::Weak<()>,
) {
    let shown = std::sync::Arc::new(Mutex::new(Vec::new()));
    watched()
        .queues
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(std::sync::Arc::downgrade(&shown));
    tokio::spawn(async move {
        let stats = crate::QueueStats::new(&conn);
        while alive.strong_count() > 0 {
            if get().is_some() {
                match stats.read(queues.clone()).await {
                    Ok(read) => *shown.lock().unwrap_or_else(PoisonError::into_inner) = read,
                    Err(e) => tracing::debug!(error = %e, "cannot read the queue gauges"),
                }
            }
            let every = QUEUE_REFRESH_MS.load(std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(std::time::Duration::from_millis(every)).await;
        }
    });
}

/// Starts recording (idempotent). [`registry`] and the listeners call it.
pub fn enable() {
    registry();
}

/// The process's registry, with warren's families in it: register your
/// own metrics here and every `/metrics` endpoint of the process serves
/// them. Starts recording.
pub fn registry() -> &'static Mutex<Registry> {
    REGISTRY.get_or_init(|| {
        let metrics: &'static Metrics = METRICS.get_or_init(Metrics::default);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(metrics));
        Mutex::new(registry)
    })
}

/// The registry in the OpenMetrics text format ([`CONTENT_TYPE`]), as
/// `GET /metrics` answers. Starts recording.
#[must_use]
pub fn encode() -> String {
    let mut out = String::with_capacity(8 * 1024);
    let registry = registry().lock().unwrap_or_else(PoisonError::into_inner);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use crate::record::{Call, Handling};
    use std::time::Duration;

    #[test]
    fn records_and_encodes_calls_and_requests() {
        super::enable();
        let call = Call::start("Unit.encoded", false);
        call.end("ok", Duration::from_millis(3), None);
        call.end("timeout", Duration::from_secs(40), None);
        let gather = Call::start("Unit.encoded", true);
        gather.end("ok", Duration::from_millis(1), Some(3));
        let handling = Handling::start("Unit.encoded");
        let text = super::encode();
        assert!(
            text.contains("warren_server_requests_in_flight{method=\"Unit.encoded\"} 1"),
            "{text}"
        );
        handling.end("ok");
        drop(handling);
        let text = super::encode();
        for line in [
            "# TYPE warren_client_calls counter",
            "warren_client_calls_total{method=\"Unit.encoded\",outcome=\"ok\"} 1",
            "warren_client_calls_total{method=\"Unit.encoded\",outcome=\"timeout\"} 1",
            "warren_client_call_duration_seconds_count{method=\"Unit.encoded\"} 2",
            "warren_client_call_duration_seconds_bucket{le=\"0.005\",method=\"Unit.encoded\"} 1",
            "warren_client_call_duration_seconds_bucket{le=\"+Inf\",method=\"Unit.encoded\"} 2",
            "warren_client_gather_replies_sum{method=\"Unit.encoded\"} 3.0",
            "warren_server_requests_total{method=\"Unit.encoded\",code=\"ok\"} 1",
            "warren_server_requests_in_flight{method=\"Unit.encoded\"} 0",
            "# EOF",
        ] {
            assert!(text.contains(line), "no `{line}` in:\n{text}");
        }
    }
}
