//! "Memory per in-flight call": the client makes `in_flight` calls at once
//! while the server holds every reply; bytes per pending call = (VmRSS with
//! all of them pending − VmRSS before) / calls.
//!
//! All pending calls are futures in one `FuturesUnordered` polled by one
//! task (no task per call: what is measured is the call, not tokio's task).
//! "All pending" is decided by what the client wrote and the broker read,
//! never by the client's CPU going quiet (which made the reading hang on a
//! client that keeps a timer running): every call is registered as waiting
//! for its reply ([`Caller::waiting`]; each registers before it publishes),
//! no TCP connection to the broker's port has bytes queued in the kernel
//! (the requests are all out of the client and read by the broker) and the
//! client's RSS stopped growing, for [`QUIET_SAMPLES`] samples in a row.
//!
//! Then the client's CPU is read over [`WAITING`]: what calls that only
//! wait cost (timers, polling), in percent of one core.

use crate::client::{warm_up, BoxError, Caller, ClientCtx, Shared};
use crate::proto::{emit, ClientResult, Event, Pending};
use crate::{heap, procfs};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SAMPLE: Duration = Duration::from_millis(250);
const QUIET_SAMPLES: u32 = 3;
/// How long the client's CPU is read while every call waits.
const WAITING: Duration = Duration::from_secs(5);
/// Give up if the calls are not all pending, or not all answered, by then.
const LIMIT: Duration = Duration::from_secs(300);

pub(crate) async fn run<C: Caller>(
    caller: Arc<C>,
    body: Bytes,
    ctx: &ClientCtx,
) -> Result<ClientResult, BoxError> {
    let shared = Arc::new(Shared::default());
    warm_up(&caller, &body, ctx.settings.memory_warmup_calls(), &shared).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before_kib = procfs::own_kib("VmRSS");

    let calls = ctx.mode.in_flight;
    let port = ctx
        .settings
        .url
        .parse::<lapin::uri::AMQPUri>()?
        .authority
        .port;
    let heap_before = heap::snapshot();
    let started = Instant::now();
    let mut pending: FuturesUnordered<_> = (0..calls).map(|_| caller.call(body.clone())).collect();
    let future_bytes = future_size(&pending);
    let mut early = 0u64;
    let mut sampler = tokio::time::interval(SAMPLE);
    let (mut rss, mut quiet) = (rss_before_kib, 0);
    while quiet < QUIET_SAMPLES {
        tokio::select! {
            Some(outcome) = pending.next() => {
                // The server holds replies: only failures finish this early.
                shared.check(body.len(), outcome);
                early += 1;
            }
            _ = sampler.tick() => {
                let rss_now = procfs::own_kib("VmRSS");
                let all_out = caller.waiting() as u64 + early >= calls as u64
                    && procfs::tcp_queued_bytes(port) == 0
                    && rss_now <= rss;
                quiet = if all_out { quiet + 1 } else { 0 };
                rss = rss_now;
                if started.elapsed() > LIMIT {
                    return Err(format!("{calls} calls not all pending after {LIMIT:?}").into());
                }
            }
        }
    }
    let seconds_to_pending =
        started.elapsed().as_secs_f64() - f64::from(QUIET_SAMPLES - 1) * SAMPLE.as_secs_f64();
    let rss_pending_kib = procfs::own_kib("VmRSS");
    let (heap_bytes, heap_items) = heap::snapshot().per_call(&heap_before, calls as u64 - early);
    // What waiting costs: the client's CPU while nothing happens but the
    // calls' timers (the futures are not polled meanwhile; a client's own
    // tasks run regardless).
    let cpu = procfs::own_cpu_seconds();
    let waited = Instant::now();
    tokio::time::sleep(WAITING).await;
    let waiting_cpu_pct =
        100.0 * (procfs::own_cpu_seconds() - cpu) / waited.elapsed().as_secs_f64();
    if early > 0 {
        shared.error(format!(
            "{early} calls finished before the server released them"
        ));
    }
    let memory = Pending {
        pending: calls as u64 - early,
        rss_before_kib,
        rss_pending_kib,
        seconds_to_pending,
        future_bytes: future_bytes as u64,
        waiting_cpu_pct,
        heap_bytes,
        heap_items,
    };
    emit(&Event::Pending(memory.clone()));

    // The driver releases the server now: every call must get its reply.
    let released = Instant::now();
    let mut answered = 0u64;
    let drain = async {
        while let Some(outcome) = pending.next().await {
            answered += u64::from(shared.check(body.len(), outcome));
        }
    };
    if tokio::time::timeout(LIMIT, drain).await.is_err() {
        shared.error(format!("replies still missing after {LIMIT:?}"));
    }
    let (errors, first_error) = shared.errors();
    Ok(ClientResult {
        calls: answered,
        seconds: released.elapsed().as_secs_f64(),
        errors,
        first_error,
        hwm_kib: procfs::own_kib("VmHWM"),
        memory: Some(memory),
        ..ClientResult::default()
    })
}

/// The size of one call's future (each pending call holds one).
fn future_size<F>(_: &FuturesUnordered<F>) -> usize {
    std::mem::size_of::<F>()
}
