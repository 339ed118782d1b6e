//! warren's metric families: recorded by the library, encoded on scrape.

use super::store::{ByLabel, Count, Counts, Level, Seconds, REPLIES, SECONDS};
use crate::amqp::ConnectionState;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use std::fmt::Result;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use tokio::sync::{watch, Semaphore};

/// Calls (or gathers) of one method.
#[derive(Debug)]
pub(crate) struct Calls {
    pub(crate) outcomes: ByLabel<Count>,
    pub(crate) seconds: Seconds,
    pub(crate) replies: Counts,
}

impl Default for Calls {
    fn default() -> Self {
        Self {
            outcomes: ByLabel::default(),
            seconds: Seconds::new(SECONDS),
            replies: Counts::new(REPLIES),
        }
    }
}

/// Requests one method's handler answered.
#[derive(Debug)]
pub(crate) struct Served {
    pub(crate) codes: ByLabel<Count>,
    pub(crate) seconds: Seconds,
    pub(crate) in_flight: Level,
}

impl Default for Served {
    fn default() -> Self {
        Self {
            codes: ByLabel::default(),
            seconds: Seconds::new(SECONDS),
            in_flight: Level::default(),
        }
    }
}

/// What happened to events of one type in this process.
#[derive(Debug, Default)]
pub(crate) struct EventCounts {
    pub(crate) published: Count,
    pub(crate) consumed: Count,
    pub(crate) retried: Count,
    pub(crate) dead_lettered: Count,
}

/// One outbox table's relays: what they published, their failed rounds,
/// and the backlog they saw at their last round.
#[derive(Debug, Default)]
pub(crate) struct OutboxCounts {
    pub(crate) published: Count,
    pub(crate) failed_rounds: Count,
    pub(crate) pending: Level,
    /// The oldest unsent row's age, in milliseconds.
    pub(crate) lag_ms: Level,
}

/// What one kind of HTTP listener (`node`, `metrics`, `postoffice`) did
/// with its connections.
#[derive(Debug, Default)]
pub(crate) struct ListenerCounts {
    pub(crate) refused: Count,
    pub(crate) header_timeouts: Count,
    pub(crate) idle_timeouts: Count,
}

/// An HTTP listener, read on scrape: its connection permits.
#[derive(Debug)]
pub(crate) struct ListenerWatch {
    pub(crate) name: &'static str,
    pub(crate) permits: Weak<Semaphore>,
    pub(crate) max: usize,
}

/// A node, read on scrape.
#[derive(Debug)]
pub(crate) struct NodeWatch {
    pub(crate) service: String,
    pub(crate) permits: Weak<Semaphore>,
    pub(crate) concurrency: usize,
    pub(crate) consumers: Weak<AtomicUsize>,
}

/// Everything warren records.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) client: ByLabel<Calls>,
    pub(crate) gathers: ByLabel<Calls>,
    pub(crate) server: ByLabel<Served>,
    /// By transport: `[amqp, http]`.
    pub(crate) fallback: [Count; 2],
    pub(crate) events: ByLabel<EventCounts>,
    pub(crate) reconnects: Count,
    /// By listener kind.
    pub(crate) listeners: ByLabel<ListenerCounts>,
    /// By outbox table.
    pub(crate) outbox: ByLabel<OutboxCounts>,
}

/// The connections and nodes of the process, watched from their start
/// (before metrics may be on) and read on scrape.
#[derive(Debug, Default)]
pub(crate) struct Watched {
    pub(crate) connections: Mutex<Vec<watch::Receiver<ConnectionState>>>,
    pub(crate) nodes: Mutex<Vec<NodeWatch>>,
    /// The last reading of each owner's queues, while it lives.
    pub(crate) queues: Mutex<Vec<Weak<Mutex<Vec<crate::QueueStat>>>>>,
    pub(crate) listeners: Mutex<Vec<ListenerWatch>>,
}

/// The connection states, as the `state` label of `warren_connections`.
const STATES: [&str; 6] = [
    "connected",
    "blocked",
    "reconnecting",
    "down",
    "refused",
    "closed",
];

fn state_index(state: &ConnectionState) -> usize {
    let name = state.name();
    STATES
        .iter()
        .position(|s| *s == name)
        .unwrap_or(STATES.len() - 1)
}

/// Encodes one family.
fn family(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl FnOnce(&mut MetricEncoder<'_>) -> Result,
) -> Result {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    rows(&mut m)
}

fn counter(m: &mut MetricEncoder<'_>, labels: &[(&str, &str)], v: u64) -> Result {
    m.encode_family(&labels)?
        .encode_counter::<NoLabelSet, u64, u64>(&v, None)
}

fn gauge(m: &mut MetricEncoder<'_>, labels: &[(&str, &str)], v: i64) -> Result {
    m.encode_family(&labels)?.encode_gauge(&v)
}

fn histogram<const S: u64>(
    m: &mut MetricEncoder<'_>,
    labels: &[(&str, &str)],
    h: &super::store::Histogram<S>,
) -> Result {
    let (sum, count, buckets) = h.snapshot();
    m.encode_family(&labels)?
        .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
}

/// The families of calls (or gathers) by method.
fn calls(enc: &mut DescriptorEncoder<'_>, by: &ByLabel<Calls>, what: &str) -> Result {
    let total = format!("warren_client_{what}s");
    family(
        enc,
        &total,
        &format!("Client {what}s ended, by method and outcome (`ok`, the reply's status code, or the transport error's kind)."),
        MetricType::Counter,
        |m| {
            by.each(|method, c| {
                c.outcomes
                    .each(|outcome, n| counter(m, &[("method", method), ("outcome", outcome)], n.get()))
            })
        },
    )?;
    family(
        enc,
        &format!("warren_client_{what}_duration_seconds"),
        &format!("How long client {what}s took, from the caller's side, by method."),
        MetricType::Histogram,
        |m| by.each(|method, c| histogram(m, &[("method", method)], &c.seconds)),
    )
}

impl Collector for &'static Metrics {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result {
        let enc = &mut enc;
        calls(enc, &self.client, "call")?;
        calls(enc, &self.gathers, "gather")?;
        family(
            enc,
            "warren_client_gather_replies",
            "Replies each gather collected, by method.",
            MetricType::Histogram,
            |m| {
                self.gathers
                    .each(|method, c| histogram(m, &[("method", method)], &c.replies))
            },
        )?;
        family(
            enc,
            "warren_fallback_calls",
            "Calls through the HTTP fallback, by the transport that carried them.",
            MetricType::Counter,
            |m| {
                counter(m, &[("transport", "amqp")], self.fallback[0].get())?;
                counter(m, &[("transport", "http")], self.fallback[1].get())
            },
        )?;
        family(
            enc,
            "warren_server_requests",
            "Requests answered by this process's handlers (any transport), by method and status code.",
            MetricType::Counter,
            |m| {
                self.server.each(|method, s| {
                    s.codes
                        .each(|code, n| counter(m, &[("method", method), ("code", code)], n.get()))
                })
            },
        )?;
        family(
            enc,
            "warren_server_request_duration_seconds",
            "How long handlers took to answer, by method.",
            MetricType::Histogram,
            |m| {
                self.server
                    .each(|method, s| histogram(m, &[("method", method)], &s.seconds))
            },
        )?;
        family(
            enc,
            "warren_server_requests_in_flight",
            "Requests being handled now, by method.",
            MetricType::Gauge,
            |m| {
                self.server
                    .each(|method, s| gauge(m, &[("method", method)], s.in_flight.get()))
            },
        )?;
        let watched = super::watched();
        watched.encode_nodes(enc)?;
        watched.encode_queues(enc)?;
        watched.encode_connections(enc, self)?;
        watched.encode_listeners(enc, self)?;
        type Pick = fn(&EventCounts) -> &Count;
        let events: [(&str, &str, Pick); 4] = [
            (
                "published",
                "Events this process published (confirmed by the broker), by type.",
                |e| &e.published,
            ),
            (
                "consumed",
                "Events this process's subscriptions handled successfully, by type.",
                |e| &e.consumed,
            ),
            (
                "retried",
                "Events whose handler failed and that were scheduled again, by type.",
                |e| &e.retried,
            ),
            (
                "dead_lettered",
                "Events moved to a dead-letter queue, by type (`unknown` when no handler knew it).",
                |e| &e.dead_lettered,
            ),
        ];
        for (what, help, pick) in events {
            family(
                enc,
                &format!("warren_events_{what}"),
                help,
                MetricType::Counter,
                |m| {
                    self.events
                        .each(|ty, e| counter(m, &[("type", ty)], pick(e).get()))
                },
            )?;
        }
        self.encode_outbox(enc)
    }
}

impl Metrics {
    /// The outbox families, by table.
    fn encode_outbox(&self, enc: &mut DescriptorEncoder<'_>) -> Result {
        type Pick = fn(&OutboxCounts) -> &Count;
        let counters: [(&str, &str, Pick); 2] = [
            (
                "warren_outbox_published",
                "Outbox rows this process's relays published and marked sent, by table.",
                |o| &o.published,
            ),
            (
                "warren_outbox_failed_rounds",
                "Relay rounds that failed (the broker or the database away), by table.",
                |o| &o.failed_rounds,
            ),
        ];
        for (name, help, pick) in counters {
            family(enc, name, help, MetricType::Counter, |m| {
                self.outbox
                    .each(|table, o| counter(m, &[("table", table)], pick(o).get()))
            })?;
        }
        family(
            enc,
            "warren_outbox_pending",
            "Outbox rows not yet sent, by table, as the relay saw them at its last round.",
            MetricType::Gauge,
            |m| {
                self.outbox
                    .each(|table, o| gauge(m, &[("table", table)], o.pending.get()))
            },
        )?;
        family(
            enc,
            "warren_outbox_relay_lag_seconds",
            "Age of the oldest unsent outbox row (0 when none), by table, at the relay's last round.",
            MetricType::Gauge,
            |m| {
                self.outbox.each(|table, o| {
                    #[allow(clippy::cast_precision_loss)]
                    let seconds = o.lag_ms.get() as f64 / 1000.0;
                    m.encode_family(&[("table", table)])?.encode_gauge(&seconds)
                })
            },
        )
    }
}

impl Watched {
    fn encode_queues(&self, enc: &mut DescriptorEncoder<'_>) -> Result {
        let mut rows = Vec::new();
        {
            let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
            queues.retain(|q| q.strong_count() > 0);
            for q in queues.iter().filter_map(Weak::upgrade) {
                let read = q.lock().unwrap_or_else(PoisonError::into_inner);
                rows.extend(read.iter().filter(|s| s.exists).cloned());
            }
        }
        type Pick = fn(&crate::QueueStat) -> u32;
        let families: [(&str, &str, Pick); 2] = [
            ("warren_queue_messages", "Messages ready in the queues this process consumes, by queue and kind (read by passive declares while metrics are recorded).", |q| q.messages),
            ("warren_queue_consumers", "Consumers of the queues this process consumes, over all processes, by queue and kind.", |q| q.consumers),
        ];
        for (name, help, pick) in families {
            family(enc, name, help, MetricType::Gauge, |m| {
                for q in &rows {
                    let kind = q.kind.as_str();
                    gauge(
                        m,
                        &[("queue", q.queue.as_str()), ("kind", kind)],
                        i64::from(pick(q)),
                    )?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Watches an HTTP listener's open connections (its permits in use).
    pub(crate) fn listener(&self, name: &'static str, permits: &Arc<Semaphore>, max: usize) {
        let mut all = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        all.retain(|l| l.permits.strong_count() > 0);
        all.push(ListenerWatch {
            name,
            permits: Arc::downgrade(permits),
            max,
        });
    }

    fn encode_listeners(&self, enc: &mut DescriptorEncoder<'_>, metrics: &Metrics) -> Result {
        let mut open: std::collections::BTreeMap<&str, i64> = Default::default();
        {
            let mut all = self
                .listeners
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            all.retain(|l| l.permits.strong_count() > 0);
            for l in all.iter() {
                let Some(permits) = l.permits.upgrade() else {
                    continue;
                };
                *open.entry(l.name).or_default() +=
                    l.max.saturating_sub(permits.available_permits()) as i64;
            }
        }
        family(
            enc,
            "warren_http_connections_open",
            "Connections open on this process's HTTP listeners (WebSockets included), by listener.",
            MetricType::Gauge,
            |m| {
                for (listener, n) in &open {
                    gauge(m, &[("listener", listener)], *n)?;
                }
                Ok(())
            },
        )?;
        family(
            enc,
            "warren_http_connections_refused",
            "Connections an HTTP listener closed at once because it held its maximum, by listener.",
            MetricType::Counter,
            |m| {
                metrics
                    .listeners
                    .each(|listener, c| counter(m, &[("listener", listener)], c.refused.get()))
            },
        )?;
        family(
            enc,
            "warren_http_connections_timed_out",
            "Connections an HTTP listener closed for their timers, by listener and reason (`header`: the request's headers or TLS handshake were too slow; `idle`: nothing in flight for the idle timeout).",
            MetricType::Counter,
            |m| {
                metrics.listeners.each(|listener, c| {
                    counter(m, &[("listener", listener), ("reason", "header")], c.header_timeouts.get())?;
                    counter(m, &[("listener", listener), ("reason", "idle")], c.idle_timeouts.get())
                })
            },
        )
    }

    fn encode_nodes(&self, enc: &mut DescriptorEncoder<'_>) -> Result {
        // Summed by service type: several nodes of one type in a process
        // are one series.
        let mut by: std::collections::BTreeMap<String, (i64, i64, i64)> = Default::default();
        {
            let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
            nodes.retain(|n| n.permits.strong_count() > 0);
            for n in nodes.iter() {
                let (Some(permits), Some(consumers)) = (n.permits.upgrade(), n.consumers.upgrade())
                else {
                    continue;
                };
                let e = by.entry(n.service.clone()).or_default();
                e.0 += n.concurrency.saturating_sub(permits.available_permits()) as i64;
                e.1 += n.concurrency as i64;
                e.2 += consumers.load(Ordering::Relaxed) as i64;
            }
        }
        type Pick = fn(&(i64, i64, i64)) -> i64;
        let rows: [(&str, &str, Pick); 3] = [
            ("warren_node_handlers_in_use", "Handler permits in use (calls running) on this process's nodes, by service type.", |v| v.0),
            ("warren_node_handlers_limit", "Handler permits (the nodes' concurrency), by service type.", |v| v.1),
            ("warren_node_consumers", "Broker consumers feeding this process's nodes, by service type (2 per node when all is well).", |v| v.2),
        ];
        for (name, help, pick) in rows {
            family(enc, name, help, MetricType::Gauge, |m| {
                for (service, v) in &by {
                    gauge(m, &[("service", service.as_str())], pick(v))?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    fn encode_connections(&self, enc: &mut DescriptorEncoder<'_>, metrics: &Metrics) -> Result {
        let mut counts = [0i64; STATES.len()];
        {
            let mut conns = self
                .connections
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // A connection whose last clone is gone has closed.
            conns.retain(|c| c.has_changed().is_ok());
            for c in conns.iter() {
                counts[state_index(&c.borrow())] += 1;
            }
        }
        family(
            enc,
            "warren_connections",
            "Broker connections of this process, by state.",
            MetricType::Gauge,
            |m| {
                for (state, n) in STATES.iter().zip(counts) {
                    gauge(m, &[("state", *state)], n)?;
                }
                Ok(())
            },
        )?;
        family(
            enc,
            "warren_connection_reconnects",
            "Connections re-established after a loss.",
            MetricType::Counter,
            |m| m.encode_counter::<NoLabelSet, u64, u64>(&metrics.reconnects.get(), None),
        )
    }
}
