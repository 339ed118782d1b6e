//! The results as a table on stdout (the JSON file: `json.rs`).
//!
//! Each figure is the median over the rounds. A ratio row divides an
//! implementation by the baseline round by round (the two ran next to each
//! other) and shows the median of those ratios, so it can differ slightly
//! from the ratio of the two medians above it.

use crate::driver::{Failure, Run};
use crate::impls::Impl;
use crate::mode::{Mode, Settings};

/// A reported figure: JSON name, table header, decimals, whether a ratio to
/// the baseline means something, and its value for one run.
pub(crate) type Metric = (&'static str, &'static str, usize, bool, fn(&Run) -> f64);

const METRICS: &[Metric] = &[
    ("calls_per_s", "calls/s", 0, true, Run::calls_per_s),
    ("p50_ms", "p50 ms", 3, true, |r| {
        f64::from(r.client.p50_us) / 1000.0
    }),
    ("p99_ms", "p99 ms", 3, true, |r| {
        f64::from(r.client.p99_us) / 1000.0
    }),
    ("p999_ms", "p99.9 ms", 3, true, |r| {
        f64::from(r.client.p999_us) / 1000.0
    }),
    ("client_cpu_s_per_1k", "client CPU", 3, true, |r| {
        r.cpu_per_1k(r.client_cpu_s)
    }),
    ("server_cpu_s_per_1k", "server CPU", 3, true, |r| {
        r.cpu_per_1k(r.server_cpu_s)
    }),
    ("broker_cpu_s_per_1k", "broker CPU", 3, true, |r| {
        r.broker_cpu_s.map_or(f64::NAN, |cpu| r.cpu_per_1k(cpu))
    }),
    ("client_hwm_mib", "client MiB", 1, true, |r| {
        r.client.hwm_kib as f64 / 1024.0
    }),
    ("server_hwm_mib", "server MiB", 1, true, |r| {
        r.server_hwm_kib as f64 / 1024.0
    }),
    (
        "others_busy_pct",
        "others %",
        0,
        false,
        Run::others_busy_pct,
    ),
];

const MEMORY_METRICS: &[Metric] = &[
    ("bytes_per_pending", "bytes/pending", 0, true, |r| {
        r.bytes_per_pending().unwrap_or(f64::NAN)
    }),
    ("rss_before_mib", "RSS before MiB", 1, true, |r| {
        mem(r).rss_before_kib as f64 / 1024.0
    }),
    ("rss_pending_mib", "RSS pending MiB", 1, true, |r| {
        mem(r).rss_pending_kib as f64 / 1024.0
    }),
    ("seconds_to_pending", "s to pending", 2, true, |r| {
        mem(r).seconds_to_pending
    }),
    ("heap_bytes", "heap/pending", 0, true, |r| mem(r).heap_bytes),
    ("future_bytes", "future bytes", 0, true, |r| {
        mem(r).future_bytes as f64
    }),
    ("waiting_cpu_pct", "CPU waiting %", 2, false, |r| {
        mem(r).waiting_cpu_pct
    }),
    ("client_hwm_mib", "client MiB", 1, true, |r| {
        r.client.hwm_kib as f64 / 1024.0
    }),
    ("server_hwm_mib", "server MiB", 1, true, |r| {
        r.server_hwm_kib as f64 / 1024.0
    }),
];

pub(crate) fn metrics(mode: &Mode) -> &'static [Metric] {
    if mode.memory {
        MEMORY_METRICS
    } else {
        METRICS
    }
}

fn mem(run: &Run) -> crate::proto::Pending {
    run.client.memory.clone().unwrap_or_default()
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// One line per finished run, as it finishes.
pub(crate) fn progress(run: &Run) {
    let (round, mode, imp) = (run.round, run.mode.id, run.imp.name());
    if let Some(bytes) = run.bytes_per_pending() {
        let m = mem(run);
        println!(
            "  round {round} {mode:<4} {imp:<7} {bytes:>8.0} bytes per pending call, \
             heap {:.0} bytes: {}",
            m.heap_bytes, m.heap_items
        );
        return;
    }
    println!(
        "  round {round} {mode:<4} {imp:<7} {:>8.0} calls/s  p50 {:.3} ms  p99 {:.3} ms  \
         CPU/1k client {:.3} s server {:.3} s  (others busy {:.0}%)",
        run.calls_per_s(),
        f64::from(run.client.p50_us) / 1000.0,
        f64::from(run.client.p99_us) / 1000.0,
        run.cpu_per_1k(run.client_cpu_s),
        run.cpu_per_1k(run.server_cpu_s),
        run.others_busy_pct(),
    );
}

/// A row: medians over the rounds of one (mode, implementation), or the
/// medians of its ratios to the baseline.
pub(crate) struct Row {
    pub(crate) mode: Mode,
    pub(crate) imp: Impl,
    pub(crate) rounds: usize,
    pub(crate) ratio: bool,
    pub(crate) values: Vec<f64>,
}

pub(crate) fn summarize(runs: &[Run], modes: &[Mode], impls: &[Impl]) -> Vec<Row> {
    let mut rows = Vec::new();
    for &mode in modes {
        let of = |imp: Impl| -> Vec<&Run> {
            runs.iter()
                .filter(|r| r.mode == mode && r.imp == imp)
                .collect()
        };
        let base = of(Impl::BASELINE);
        for &imp in impls {
            let mine = of(imp);
            if mine.is_empty() {
                continue;
            }
            let values = metrics(&mode)
                .iter()
                .map(|m| median(mine.iter().map(|r| m.4(r)).collect()));
            rows.push(Row {
                mode,
                imp,
                rounds: mine.len(),
                ratio: false,
                values: values.collect(),
            });
            let pairs: Vec<(&Run, &Run)> = mine
                .iter()
                .filter_map(|m| Some((*m, *base.iter().find(|b| b.round == m.round)?)))
                .collect();
            if imp == Impl::BASELINE || pairs.is_empty() {
                continue;
            }
            let ratios = metrics(&mode).iter().map(|m| {
                if !m.3 {
                    return f64::NAN;
                }
                median(
                    pairs
                        .iter()
                        .map(|(mine, base)| m.4(mine) / m.4(base))
                        .collect(),
                )
            });
            rows.push(Row {
                mode,
                imp,
                rounds: pairs.len(),
                ratio: true,
                values: ratios.collect(),
            });
        }
    }
    rows
}

pub(crate) fn cell(value: f64, decimals: usize, ratio: bool, width: usize) -> String {
    let text = match (value.is_finite(), ratio) {
        (false, _) => "-".to_owned(),
        (true, true) => format!("{value:.2}x"),
        (true, false) => format!("{value:.decimals$}"),
    };
    format!(" {text:>width$}")
}

/// Prints the tables.
pub(crate) fn print(settings: &Settings, runs: &[Run], failures: &[Failure], impls: &[Impl]) {
    let rows = summarize(runs, &settings.modes, impls);
    println!();
    println!("Median of rounds. CPU: user+system seconds per 1,000 calls, in the measured window.");
    println!("MiB: peak resident set (VmHWM). others %: the rest of the machine's load (noise).");
    let mut last_kind = None;
    for mode in &settings.modes {
        let metrics = metrics(mode);
        let ran = rows.iter().any(|r| r.mode == *mode);
        if ran && last_kind != Some(mode.memory) {
            last_kind = Some(mode.memory);
            if mode.memory {
                println!("\nbytes/pending = (VmRSS with all calls pending - VmRSS before) / pending calls");
                println!("heap/pending = live heap bytes gained per pending call (counted by the allocator)");
            }
            let mut header = format!("\n{:<4} {:<13}", "mode", "impl");
            for m in metrics {
                header += &format!(" {:>w$}", m.1, w = m.1.len().max(8));
            }
            println!("{header}");
        }
        for row in rows.iter().filter(|r| r.mode == *mode) {
            let name = if row.ratio {
                format!("{}/{}", row.imp.name(), Impl::BASELINE.name())
            } else {
                row.imp.name().to_owned()
            };
            let mut line = format!("{:<4} {name:<13}", mode.id);
            for (m, v) in metrics.iter().zip(&row.values) {
                line += &cell(*v, m.2, row.ratio, m.1.len().max(8));
            }
            println!("{line}");
        }
    }
    println!("\nmodes:");
    for mode in &settings.modes {
        println!("  {:<4} {}", mode.id, mode.title);
    }
    for f in failures {
        println!(
            "FAILED: round {} mode {} {}: {}",
            f.round,
            f.mode.id,
            f.imp.name(),
            f.error
        );
    }
}
