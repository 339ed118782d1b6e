//! The results as JSON: `target/bench/rpc.json`, every run and the
//! summary rows of the table.

use crate::driver::{Failure, Run, Skip};
use crate::impls::Impl;
use crate::mode::{Mode, Settings};
use crate::report::{metrics, summarize};
use serde_json::{json, Value};
use std::path::PathBuf;

fn named(mode: &Mode, values: impl IntoIterator<Item = f64>) -> Value {
    let pairs = metrics(mode).iter().zip(values);
    pairs.map(|(m, v)| (m.0.to_owned(), json!(v))).collect()
}

/// Writes everything to `target/bench/rpc.json`; returns the path.
pub(crate) fn write(
    settings: &Settings,
    runs: &[Run],
    failures: &[Failure],
    impls: &[Impl],
    skipped: &[(String, String)],
    skips: &[Skip],
) -> std::io::Result<PathBuf> {
    let rows = summarize(runs, &settings.modes, impls);
    let url = warren::BrokerUrl::new(settings.url.clone());
    let json = json!({
        "bench": "rpc",
        "settings": {
            "url": url.map(|u| u.to_string()).unwrap_or_default(),
            "scale": settings.scale,
            "rounds": settings.rounds,
            "memory_rounds": settings.memory_rounds,
            "warmup_s": settings.warmup().as_secs_f64(),
            "measure_s": settings.measure().as_secs_f64(),
            "baseline_prefetch": crate::lapin_baseline::PREFETCH,
            "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        },
        "baseline": Impl::BASELINE.name(),
        "modes": settings.modes.iter().map(|m| json!({
            "id": m.id, "title": m.title, "in_flight": m.in_flight, "body_bytes": m.body,
            "persistent": m.persistent, "memory": m.memory,
        })).collect::<Vec<_>>(),
        "summary": rows.iter().filter(|r| !r.ratio).map(|r| json!({
            "mode": r.mode.id, "impl": r.imp.name(), "rounds": r.rounds,
            "median": named(&r.mode, r.values.iter().copied()),
        })).collect::<Vec<_>>(),
        "ratios": rows.iter().filter(|r| r.ratio).map(|r| json!({
            "mode": r.mode.id, "impl": r.imp.name(), "baseline": Impl::BASELINE.name(),
            "paired_rounds": r.rounds,
            "median_of_paired_ratios": named(&r.mode, r.values.iter().copied()),
        })).collect::<Vec<_>>(),
        "runs": runs.iter().map(|r| json!({
            "mode": r.mode.id, "impl": r.imp.name(), "round": r.round,
            "figures": named(&r.mode, metrics(&r.mode).iter().map(|m| m.4(r))),
            "client": r.client, "client_cpu_s": r.client_cpu_s, "server_cpu_s": r.server_cpu_s,
            "broker_cpu_s": r.broker_cpu_s, "others_cpu_s": r.others_cpu_s,
            "server_hwm_kib": r.server_hwm_kib,
        })).collect::<Vec<_>>(),
        "failures": failures.iter().map(|f| json!({
            "mode": f.mode.id, "impl": f.imp.name(), "round": f.round, "error": f.error,
        })).collect::<Vec<_>>(),
        "skipped": skipped.iter().map(|(name, why)| json!({"impl": name, "reason": why})).collect::<Vec<_>>(),
        "versus_peers": crate::versus::json(runs, &settings.modes, impls, skips),
    });
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
    };
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("rpc.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")?;
    Ok(path)
}
