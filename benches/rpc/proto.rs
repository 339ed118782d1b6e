//! What the child processes tell the driver: one JSON object per line on
//! stdout (their logs and errors go to stderr). The driver talks to the
//! server on its stdin: `release` opens the memory mode's gate, end of file
//! means "shut down".

use serde::{Deserialize, Serialize};
use std::io::Write;

/// The environment variables that make the bench binary a child.
pub(crate) const ROLE: &str = "WARREN_BENCH_ROLE";
pub(crate) const IMPL: &str = "WARREN_BENCH_IMPL";
pub(crate) const MODE: &str = "WARREN_BENCH_MODE";

/// A line a child prints.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Event {
    /// Server: consuming; clients may call.
    Ready,
    /// Client: the measured window starts now.
    Start,
    /// Client: the measured window ends now.
    End,
    /// Client (memory mode): every call is pending; the driver may release
    /// the server.
    Pending(Pending),
    /// Client: the figures, last line before it exits.
    Result(ClientResult),
}

/// The memory mode's readings, taken by the client on itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Pending {
    pub(crate) pending: u64,
    /// VmRSS after connecting and the warm-up calls, before the first
    /// pending call was made.
    pub(crate) rss_before_kib: u64,
    /// VmRSS once all calls were made and read by the broker.
    pub(crate) rss_pending_kib: u64,
    /// From the first call made to all calls pending.
    pub(crate) seconds_to_pending: f64,
    /// `size_of` one call's future (part of what each pending call holds).
    pub(crate) future_bytes: u64,
    /// The client's CPU while every call waits, in percent of one core.
    pub(crate) waiting_cpu_pct: f64,
    /// Live heap bytes per pending call (the counting allocator's).
    #[serde(default)]
    pub(crate) heap_bytes: f64,
    /// The size classes of those bytes, largest share first.
    #[serde(default)]
    pub(crate) heap_items: String,
}

/// A client's figures for one run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ClientResult {
    /// Calls completed inside the measured window.
    pub(crate) calls: u64,
    /// Length of the measured window.
    pub(crate) seconds: f64,
    /// Failed calls (any phase); a run with errors is reported as failed.
    pub(crate) errors: u64,
    /// The first error, if any.
    pub(crate) first_error: Option<String>,
    pub(crate) p50_us: u32,
    pub(crate) p99_us: u32,
    pub(crate) p999_us: u32,
    pub(crate) max_us: u32,
    /// The client's VmHWM (peak resident set) just before it exits.
    pub(crate) hwm_kib: u64,
    /// Memory mode only.
    pub(crate) memory: Option<Pending>,
}

/// Prints one event line and flushes it (the driver reads it at once).
pub(crate) fn emit(event: &Event) {
    let line = serde_json::to_string(event).expect("events serialize");
    let mut out = std::io::stdout().lock();
    // A driver that went away is not our problem to report.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Nearest-rank percentile of sorted microsecond latencies.
pub(crate) fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
