//! What the metrics are kept in: atomics behind maps keyed by a bounded
//! label, read without allocating and without an exclusive lock once a
//! label has been seen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// Label values kept per family at most; later ones count as [`OVERFLOW`].
/// Methods and event types come from the wire, so a stranger could send
/// endless new ones: this keeps the series (and the memory) bounded.
pub(crate) const MAX_LABELS: usize = 256;

/// The label value of everything past [`MAX_LABELS`].
pub(crate) const OVERFLOW: &str = "_other";

/// Values of type `V` by one label value.
#[derive(Debug, Default)]
pub(crate) struct ByLabel<V> {
    map: RwLock<HashMap<Box<str>, Arc<V>>>,
}

impl<V: Default> ByLabel<V> {
    /// Runs `f` on the value for `key`, made on first use. The common case
    /// takes the map's shared read lock only and allocates nothing.
    pub(crate) fn with<R>(&self, key: &str, f: impl FnOnce(&V) -> R) -> R {
        {
            let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(v) = map.get(key) {
                return f(v);
            }
        }
        f(&self.insert(key))
    }

    /// The value for `key`, made on first use, to record into later
    /// without looking it up again.
    pub(crate) fn get(&self, key: &str) -> Arc<V> {
        {
            let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(v) = map.get(key) {
                return v.clone();
            }
        }
        self.insert(key)
    }

    /// The first use of `key` (or of [`OVERFLOW`] past [`MAX_LABELS`]).
    #[cold]
    fn insert(&self, key: &str) -> Arc<V> {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let key = if map.len() >= MAX_LABELS && !map.contains_key(key) {
            OVERFLOW
        } else {
            key
        };
        map.entry(key.into()).or_default().clone()
    }

    /// Runs `f` on each label value and value, in label order (stable
    /// output for scrapes and diffs).
    pub(crate) fn each(&self, mut f: impl FnMut(&str, &V) -> std::fmt::Result) -> std::fmt::Result {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let mut keys: Vec<&str> = map.keys().map(|k| &**k).collect();
        keys.sort_unstable();
        for k in keys {
            f(k, &map[k])?;
        }
        Ok(())
    }
}

/// A counter.
#[derive(Debug, Default)]
pub(crate) struct Count(AtomicU64);

impl Count {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Adds `n` (the outbox relay's published rows).
    #[cfg_attr(not(feature = "outbox"), allow(dead_code))]
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

/// A gauge.
#[derive(Debug, Default)]
pub(crate) struct Level(AtomicI64);

impl Level {
    pub(crate) fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Sets it (the outbox relay's backlog).
    #[cfg_attr(not(feature = "outbox"), allow(dead_code))]
    pub(crate) fn set(&self, n: i64) {
        self.0.store(n, Ordering::Relaxed);
    }
}

/// Upper bounds of the latency buckets, in seconds: 0.5 ms to 30 s.
pub(crate) const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds of the replies-per-gather buckets.
pub(crate) const REPLIES: &[f64] = &[0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0];

/// A histogram of atomics: observing is a few relaxed atomic adds, no
/// lock (the `prometheus-client` histogram takes a mutex per observation).
/// Values are kept in integer units (`scale` of them per unit of the
/// exported value: nanoseconds for seconds), so the sum is exact.
#[derive(Debug)]
pub(crate) struct Histogram<const SCALE: u64> {
    bounds: &'static [f64],
    /// One per bound, then `+Inf`; not cumulative.
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl<const SCALE: u64> Histogram<SCALE> {
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Records `units` (of `1 / SCALE` each).
    pub(crate) fn observe(&self, units: u64) {
        let value = units as f64 / SCALE as f64;
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(units, Ordering::Relaxed);
    }

    /// Sum, count and the buckets (upper bound, count in it) as the
    /// encoder takes them; `f64::INFINITY` is `+Inf`.
    pub(crate) fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.sum.load(Ordering::Relaxed) as f64 / SCALE as f64;
        (sum, count, buckets)
    }
}

/// Seconds, kept in nanoseconds.
pub(crate) type Seconds = Histogram<1_000_000_000>;

/// Plain counts.
pub(crate) type Counts = Histogram<1>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_sum_and_overflow() {
        let h = Seconds::new(SECONDS);
        h.observe(300_000); // 0.3 ms
        h.observe(2_000_000_000); // 2 s
        h.observe(60_000_000_000); // 60 s: +Inf
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 3);
        assert!((sum - 62.0003).abs() < 1e-9, "{sum}");
        assert_eq!(buckets[0], (0.0005, 1));
        assert_eq!(buckets.last().copied(), Some((f64::INFINITY, 1)));

        let by: ByLabel<Count> = ByLabel::default();
        for i in 0..MAX_LABELS + 10 {
            by.with(&format!("m{i}"), Count::inc);
        }
        let mut other = 0;
        let mut n = 0;
        by.each(|k, v| {
            n += 1;
            if k == OVERFLOW {
                other = v.get();
            }
            Ok(())
        })
        .unwrap();
        assert_eq!((n, other), (MAX_LABELS + 1, 10));
    }
}
