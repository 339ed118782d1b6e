//! RPC benchmark: warren against a hand-written lapin baseline, over a real
//! RabbitMQ (and against Nameko and node's `rabbitmq-client`, when
//! `scripts/bench-peers` has set them up: `peers.rs`).
//!
//! Run with: `cargo bench --bench rpc` (broker from `WARREN_AMQP_URL`,
//! default `amqp://guest:guest@127.0.0.1:5672/%2f`; e.g. `WARREN_AMQP_URL=$(scripts/broker start)`).
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `WARREN_BENCH_IMPLS` | implementations (`lapin`, `lapin-wire` (the baseline sending warren's request properties), `warren`, `warren-metrics` (warren recording Prometheus metrics), `warren-tracing` (warren under a `tracing_subscriber` fmt subscriber at INFO writing to `io::sink`), `nameko`, `node`), the baseline first | `lapin,warren` |
//! | `WARREN_BENCH_MODES` | modes (see `mode.rs`) | `a,b,c,d,e,mem1k,mem10k,mem` |
//! | `WARREN_BENCH_SCALE` | multiplies the measured window (2.5 s) | `1` |
//! | `WARREN_BENCH_ROUNDS` | rounds per mode and implementation | `3` |
//! | `WARREN_BENCH_MEMORY_ROUNDS` | rounds of the memory mode | `1` |
//! | `WARREN_BENCH_NAMEKO_PYTHON`, `WARREN_BENCH_NODE` | the peers' runtimes (`peers.rs`; set by `scripts/bench-peers`) | unset: no peers |
//!
//! Every run is a server process and a client process (this binary again,
//! with `WARREN_BENCH_ROLE`), so each one's CPU time and peak memory are its
//! own. Results: a table on stdout and `target/bench/rpc.json`.

mod client;
mod driver;
mod heap;
mod impls;
mod json;
mod lapin_baseline;
mod memory;
mod mode;
mod peers;
mod procfs;
mod proto;
mod report;
mod server;
mod versus;
mod warren_impl;

use impls::Impl;
use mode::{Mode, Settings};
use std::process::ExitCode;
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("rpc bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    match std::env::var(proto::ROLE).ok().as_deref() {
        None => driver_main(&settings),
        Some(role) => match child_main(role, settings) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("rpc bench {role}: {error}");
                ExitCode::FAILURE
            }
        },
    }
}

/// The process `cargo bench` starts.
fn driver_main(settings: &Settings) -> ExitCode {
    // `cargo test --benches` runs bench targets without `--bench`: do nothing then.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("rpc bench: not running the benchmark (run it with `cargo bench --bench rpc`)");
        return ExitCode::SUCCESS;
    }
    let mut impls = Vec::new();
    let mut skipped = Vec::new();
    for name in &settings.impls {
        match Impl::parse(name) {
            None => skipped.push((name.clone(), "unknown implementation".to_owned())),
            Some(imp) => match imp.unavailable() {
                Some(why) => skipped.push((name.clone(), why)),
                None if !impls.contains(&imp) => impls.push(imp),
                None => {}
            },
        }
    }
    for (name, why) in &skipped {
        println!("SKIPPED {name}: {why} (no figures for it in this run)");
    }
    if !impls.contains(&Impl::BASELINE) {
        println!(
            "note: the baseline ({}) is not in WARREN_BENCH_IMPLS: no ratios",
            Impl::BASELINE.name()
        );
    }
    if impls.is_empty() {
        eprintln!("rpc bench: nothing to run");
        return ExitCode::FAILURE;
    }
    println!(
        "rpc bench: broker {}, {} round(s), warm-up {:?}, measured {:?} per run, implementations: {}",
        warren::BrokerUrl::new(settings.url.clone()).map_or_else(|e| e.to_string(), |u| u.to_string()),
        settings.rounds,
        settings.warmup(),
        settings.measure(),
        impls.iter().map(|i| i.name()).collect::<Vec<_>>().join(", "),
    );
    let (runs, failures, skips) = driver::drive(settings, &impls);
    report::print(settings, &runs, &failures, &impls);
    versus::print(settings, &runs, &impls, &skips);
    match json::write(settings, &runs, &failures, &impls, &skipped, &skips) {
        Ok(path) => println!("\nwritten: {}", path.display()),
        Err(error) => eprintln!("rpc bench: writing the JSON results: {error}"),
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A server or client process.
fn child_main(role: &str, settings: Settings) -> Result<(), client::BoxError> {
    let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    let imp = var(proto::IMPL)?;
    let imp = Impl::parse(&imp).ok_or_else(|| format!("unknown implementation `{imp}`"))?;
    let mode = var(proto::MODE)?;
    let mode = Mode::by_id(&mode).ok_or_else(|| format!("unknown mode `{mode}`"))?;
    if role == "client" && mode.memory {
        heap::switch_on();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async {
        match role {
            "server" => server::main(imp, &settings, mode).await,
            "client" => {
                let limit = settings.warmup() + settings.measure() + Duration::from_secs(600);
                let ctx = client::ClientCtx {
                    url: settings.url.clone(),
                    mode,
                    settings,
                };
                let result = tokio::time::timeout(limit, imp.client(&ctx))
                    .await
                    .map_err(|_| format!("the client did not finish in {limit:?}"))??;
                proto::emit(&proto::Event::Result(result));
                Ok(())
            }
            other => Err(format!("{}={other}: expected server or client", proto::ROLE).into()),
        }
    });
    // Don't wait for tasks still parked on the broker (replies to calls that
    // ended with the window, the stdin reader).
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}
