//! warren against the peers (`peers.rs`): warren ÷ each peer, round by
//! round, and the targets for them. Reported, never asserted: a
//! missed target is a finding, not a failed run.
//!
//! A ratio is the median of the per-round ratios of warren's figure to the
//! peer's (the two ran in the same round), as the ratios to the baseline
//! are (`report.rs`). For calls/s above 1 is warren's advantage; for
//! latency, CPU and memory below 1 is.

use crate::driver::{Run, Skip};
use crate::impls::Impl;
use crate::mode::{Mode, Settings};
use crate::report::{cell, median, metrics};
use serde_json::{json, Value};

/// A target: warren's calls/s at least `times` the peer's, in mode `mode`.
struct Target {
    peer: Impl,
    mode: &'static str,
    times: f64,
    what: &'static str,
}

const TARGETS: &[Target] = &[
    Target {
        peer: Impl::Nameko,
        mode: "b",
        times: 20.0,
        what: "warren >= 20x Nameko's calls/s with 16 calls in flight",
    },
    Target {
        peer: Impl::Node,
        mode: "b",
        times: 1.4,
        what: "warren >= 1.4x node rabbitmq-client pipelined (16 in flight)",
    },
];

/// warren ÷ `peer` in `mode`: (paired rounds, one median ratio per metric).
fn ratios(runs: &[Run], mode: &Mode, peer: Impl) -> Option<(usize, Vec<f64>)> {
    let of = |imp: Impl| runs.iter().filter(move |r| r.mode == *mode && r.imp == imp);
    let pairs: Vec<(&Run, &Run)> = of(Impl::Warren)
        .filter_map(|w| Some((w, of(peer).find(|p| p.round == w.round)?)))
        .collect();
    if pairs.is_empty() {
        return None;
    }
    let values = metrics(mode).iter().map(|m| {
        if !m.3 {
            return f64::NAN;
        }
        median(pairs.iter().map(|(w, p)| m.4(w) / m.4(p)).collect())
    });
    Some((pairs.len(), values.collect()))
}

fn peers(impls: &[Impl]) -> impl Iterator<Item = Impl> + '_ {
    impls.iter().copied().filter(|imp| imp.peer().is_some())
}

/// The calls/s ratio of a target, if both sides ran its mode.
fn target_ratio(runs: &[Run], target: &Target) -> Option<f64> {
    let mode = Mode::by_id(target.mode)?;
    let (_, values) = ratios(runs, &mode, target.peer)?;
    values.first().copied().filter(|v| v.is_finite())
}

/// Prints warren ÷ each peer and the targets (nothing without peers).
pub(crate) fn print(settings: &Settings, runs: &[Run], impls: &[Impl], skips: &[Skip]) {
    for skip in skips {
        println!(
            "SKIPPED: mode {} {}: {}",
            skip.mode.id,
            skip.imp.name(),
            skip.why
        );
    }
    if !impls.contains(&Impl::Warren) || peers(impls).next().is_none() {
        return;
    }
    println!("\nwarren against the peers: median of per-round ratios warren/peer");
    println!("(calls/s: above 1 is warren's advantage; latency, CPU per call, MiB: below 1 is).");
    let mut header = format!("\n{:<4} {:<13}", "mode", "ratio");
    let plain = settings.modes.iter().find(|m| !m.memory);
    for m in plain.map_or(&[][..], metrics) {
        header += &format!(" {:>w$}", m.1, w = m.1.len().max(8));
    }
    println!("{header}");
    for mode in settings.modes.iter().filter(|m| !m.memory) {
        for peer in peers(impls) {
            let Some((_, values)) = ratios(runs, mode, peer) else {
                continue;
            };
            let mut line = format!("{:<4} {:<13}", mode.id, format!("warren/{}", peer.name()));
            for (m, v) in metrics(mode).iter().zip(&values) {
                line += &cell(*v, m.2, true, m.1.len().max(8));
            }
            println!("{line}");
        }
    }
    println!("\ntargets (reported, not asserted):");
    for target in TARGETS.iter().filter(|t| impls.contains(&t.peer)) {
        let outcome = match target_ratio(runs, target) {
            Some(ratio) if ratio >= target.times => format!("{ratio:.2}x: met"),
            Some(ratio) => format!("{ratio:.2}x: MISSED"),
            None => format!("not measured (needs mode {} for both)", target.mode),
        };
        println!("  {}: {outcome}", target.what);
    }
}

/// The same as JSON, for `rpc.json`.
pub(crate) fn json(runs: &[Run], modes: &[Mode], impls: &[Impl], skips: &[Skip]) -> Value {
    let mut ratio_rows = Vec::new();
    for mode in modes.iter().filter(|m| !m.memory) {
        for peer in peers(impls) {
            if let Some((rounds, values)) = ratios(runs, mode, peer) {
                let named: Value = metrics(mode)
                    .iter()
                    .zip(values)
                    .map(|(m, v)| (m.0.to_owned(), json!(v)))
                    .collect();
                ratio_rows.push(json!({
                    "mode": mode.id, "impl": "warren", "peer": peer.name(),
                    "paired_rounds": rounds, "median_of_paired_ratios": named,
                }));
            }
        }
    }
    let targets: Vec<Value> = TARGETS
        .iter()
        .filter(|t| impls.contains(&t.peer))
        .map(|t| {
            let ratio = target_ratio(runs, t);
            json!({
                "target": t.what, "mode": t.mode, "peer": t.peer.name(), "at_least": t.times,
                "calls_per_s_ratio": ratio, "met": ratio.map(|r| r >= t.times),
            })
        })
        .collect();
    let skipped: Vec<Value> = skips
        .iter()
        .map(|s| json!({"mode": s.mode.id, "impl": s.imp.name(), "reason": s.why}))
        .collect();
    json!({"ratios": ratio_rows, "targets": targets, "skipped_modes": skipped})
}
