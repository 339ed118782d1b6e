//! What is measured: the modes, their sizes, and the settings read from the
//! environment (shared by the driver and its child processes).

use std::time::Duration;

/// The broker URL when `WARREN_AMQP_URL` is not set.
pub(crate) const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// One measured workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mode {
    /// Short id used on the command line and in `WARREN_BENCH_MODES`.
    pub(crate) id: &'static str,
    /// Human-readable description for the table.
    pub(crate) title: &'static str,
    /// Calls in flight (concurrent callers); for the memory mode, the number
    /// of pending calls.
    pub(crate) in_flight: usize,
    /// Request (and echoed reply) body size in bytes.
    pub(crate) body: usize,
    /// Persistent requests (delivery mode 2, durable queue), each awaited
    /// for its publisher confirm before its reply.
    pub(crate) persistent: bool,
    /// "Memory per in-flight call": the server holds every reply until all
    /// `in_flight` calls are pending.
    pub(crate) memory: bool,
}

/// All modes, in the order they are run and reported.
pub(crate) const MODES: &[Mode] = &[
    Mode {
        id: "a",
        title: "1 in flight, 64 B",
        in_flight: 1,
        body: 64,
        persistent: false,
        memory: false,
    },
    Mode {
        id: "b",
        title: "16 in flight, 64 B",
        in_flight: 16,
        body: 64,
        persistent: false,
        memory: false,
    },
    Mode {
        id: "c",
        title: "128 in flight, 64 B",
        in_flight: 128,
        body: 64,
        persistent: false,
        memory: false,
    },
    Mode {
        id: "d",
        title: "16 in flight, 16 KiB",
        in_flight: 16,
        body: 16 * 1024,
        persistent: false,
        memory: false,
    },
    Mode {
        id: "e",
        title: "16 in flight, 64 B, persistent + confirms",
        in_flight: 16,
        body: 64,
        persistent: true,
        memory: false,
    },
    Mode {
        id: "mem1k",
        title: "memory per pending call (1,000 pending)",
        in_flight: 1_000,
        body: 64,
        persistent: false,
        memory: true,
    },
    Mode {
        id: "mem10k",
        title: "memory per pending call (10,000 pending)",
        in_flight: 10_000,
        body: 64,
        persistent: false,
        memory: true,
    },
    Mode {
        id: "mem",
        title: "memory per pending call (100,000 pending)",
        in_flight: 100_000,
        body: 64,
        persistent: false,
        memory: true,
    },
];

impl Mode {
    pub(crate) fn by_id(id: &str) -> Option<Mode> {
        MODES.iter().copied().find(|m| m.id == id)
    }

    /// The request queue of the baseline (a separate name for the durable
    /// one, so a leftover of one kind never clashes with the other).
    pub(crate) fn queue(&self) -> &'static str {
        if self.persistent {
            "bench-rpc-persistent"
        } else {
            "bench-rpc"
        }
    }
}

/// Settings from the environment; the children read the same ones.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) url: String,
    /// `WARREN_BENCH_SCALE` (default 1): multiplies the measured duration.
    pub(crate) scale: f64,
    /// `WARREN_BENCH_ROUNDS` (default 3): rounds per (implementation, mode).
    pub(crate) rounds: usize,
    /// `WARREN_BENCH_MEMORY_ROUNDS` (default 1).
    pub(crate) memory_rounds: usize,
    /// `WARREN_BENCH_IMPLS` (default `lapin,warren`).
    pub(crate) impls: Vec<String>,
    /// `WARREN_BENCH_MODES` (default all: `a,b,c,d,e,mem1k,mem10k,mem`).
    pub(crate) modes: Vec<Mode>,
}

impl Settings {
    pub(crate) fn from_env() -> Result<Settings, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let number = |name: &str, default: f64| -> Result<f64, String> {
            match var(name) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<f64>() {
                    Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
                    _ => Err(format!("{name}={v}: expected a positive number")),
                },
            }
        };
        let list = |name: &str, default: &str| -> Vec<String> {
            var(name)
                .unwrap_or_else(|| default.to_owned())
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let mut modes = Vec::new();
        for id in list("WARREN_BENCH_MODES", "a,b,c,d,e,mem1k,mem10k,mem") {
            modes.push(Mode::by_id(&id).ok_or_else(|| {
                let known: Vec<_> = MODES.iter().map(|m| m.id).collect();
                format!("WARREN_BENCH_MODES: unknown mode `{id}` (known: {known:?})")
            })?);
        }
        Ok(Settings {
            url: var("WARREN_AMQP_URL").unwrap_or_else(|| DEFAULT_URL.to_owned()),
            scale: number("WARREN_BENCH_SCALE", 1.0)?,
            rounds: number("WARREN_BENCH_ROUNDS", 3.0)?.round().max(1.0) as usize,
            memory_rounds: number("WARREN_BENCH_MEMORY_ROUNDS", 1.0)?.round().max(1.0) as usize,
            impls: list("WARREN_BENCH_IMPLS", "lapin,warren"),
            modes,
        })
    }

    /// Calls run before measuring, after connecting.
    pub(crate) fn warmup(&self) -> Duration {
        Duration::from_millis(500)
    }

    /// The measured window of each run.
    pub(crate) fn measure(&self) -> Duration {
        Duration::from_secs_f64(2.5 * self.scale)
    }

    /// Calls completed before the memory mode's "before" reading (the same
    /// count the server lets through before it starts holding replies).
    pub(crate) fn memory_warmup_calls(&self) -> u64 {
        2_000
    }
}
