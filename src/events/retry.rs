//! The retry ladder held in the broker, and the headers that carry a
//! failed event's history.
//!
//! A failed event is published again (persistent, confirmed) before its
//! delivery is acked: at once to `<service>.q` for a zero delay, else to
//! the delay queue `<service>.retry.<delay>` (such as `orders.retry.2s`),
//! whose per-queue TTL dead-letters it back to `<service>.q` through the
//! default exchange, so only this service sees it again. Every message of
//! a delay queue waits the same time, so none waits behind another; the
//! queues are durable, so a waiting event survives a restart of the
//! consumer and of the broker.

use std::time::Duration;

/// Failed attempts so far (a number, as text).
pub(crate) const ATTEMPTS: &str = "x-warren-attempts";
/// Why the last attempt failed.
pub(crate) const REASON: &str = "x-warren-reason";
/// When the first attempt failed (RFC 3339).
pub(crate) const FIRST_FAILURE: &str = "x-warren-first-failure";
/// When the last attempt failed (RFC 3339).
pub(crate) const LAST_FAILURE: &str = "x-warren-last-failure";
/// The routing key the event was published with.
pub(crate) const ROUTING_KEY: &str = "x-warren-routing-key";
/// The exchange the event was published on.
pub(crate) const EXCHANGE: &str = "x-warren-exchange";

/// The delays between a failed attempt and the next: the default is
/// at once, then 1 s, 2 s, 4 s and 8 s (six attempts in all); after the
/// last, the event goes to `<service>.dlq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    delays: Vec<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::delays([0, 1, 2, 4, 8].map(Duration::from_secs))
    }
}

impl RetryPolicy {
    /// Retries after each of `delays` in turn (rounded to milliseconds).
    pub fn delays(delays: impl IntoIterator<Item = Duration>) -> Self {
        Self {
            delays: delays
                .into_iter()
                .map(|d| Duration::from_millis(d.as_millis().min(u128::from(u32::MAX)) as u64))
                .collect(),
        }
    }

    /// No retries: a failed event goes to the dead-letter queue at once.
    #[must_use]
    pub fn none() -> Self {
        Self { delays: Vec::new() }
    }

    /// The delay before the retry that follows failed attempt `failed`
    /// (1-based), or `None` when the retries are spent.
    pub(crate) fn after(&self, failed: u32) -> Option<Duration> {
        let i = usize::try_from(failed).ok()?.checked_sub(1)?;
        self.delays.get(i).copied()
    }

    /// The distinct non-zero delays, each a delay queue.
    pub(crate) fn delay_queues(&self) -> Vec<Duration> {
        let mut out: Vec<Duration> = self
            .delays
            .iter()
            .copied()
            .filter(|d| !d.is_zero())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// The delay queue of `service` for `delay`: `<service>.retry.<delay>`,
/// the delay in whole seconds (`2s`) or else milliseconds (`250ms`).
pub(crate) fn delay_queue(service: &str, delay: Duration) -> String {
    let ms = delay.as_millis();
    if ms % 1000 == 0 {
        format!("{service}.retry.{}s", ms / 1000)
    } else {
        format!("{service}.retry.{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_ladder() {
        let p = RetryPolicy::default();
        assert_eq!(p.after(1), Some(Duration::ZERO));
        assert_eq!(p.after(2), Some(Duration::from_secs(1)));
        assert_eq!(p.after(5), Some(Duration::from_secs(8)));
        assert_eq!(p.after(6), None);
        assert_eq!(p.delay_queues().len(), 4);
        assert_eq!(delay_queue("s", Duration::from_secs(2)), "s.retry.2s");
        assert_eq!(
            delay_queue("s", Duration::from_millis(250)),
            "s.retry.250ms"
        );
        assert_eq!(RetryPolicy::none().after(1), None);
    }
}
