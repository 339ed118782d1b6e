//! The client role: the same load generator for every implementation, which
//! only has to provide a [`Caller`].

use crate::mode::{Mode, Settings};
use crate::procfs;
use crate::proto::{emit, percentile, ClientResult, Event};
use bytes::Bytes;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One implementation's client, connected.
pub(crate) trait Caller: Send + Sync + 'static {
    /// Makes one call with `body` and returns the reply's body (the server
    /// echoes it). Many calls run at once on the same `&self`.
    fn call(&self, body: Bytes) -> impl Future<Output = Result<Bytes, BoxError>> + Send;

    /// Calls registered as waiting for their reply (each is registered
    /// before its request is published): the memory mode's "all made".
    fn waiting(&self) -> usize;
}

/// What an implementation's client connects with.
#[derive(Debug)]
pub(crate) struct ClientCtx {
    pub(crate) url: String,
    pub(crate) mode: Mode,
    pub(crate) settings: Settings,
}

/// Runs the mode's load through `caller` and returns the figures.
pub(crate) async fn run<C: Caller>(caller: C, ctx: &ClientCtx) -> Result<ClientResult, BoxError> {
    let body = Bytes::from((0..ctx.mode.body).map(|i| i as u8).collect::<Vec<u8>>());
    let caller = Arc::new(caller);
    if ctx.mode.memory {
        crate::memory::run(caller, body, ctx).await
    } else {
        throughput(caller, body, ctx).await
    }
}

// The phases of a run; it starts in warm-up (0, the default).
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// State shared by the callers of one run.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    phase: AtomicU8,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    pub(crate) fn error(&self, error: String) {
        if self.errors.fetch_add(1, Ordering::Relaxed) == 0 {
            *self.first_error.lock().unwrap() = Some(error);
        }
    }

    /// Checks one call's outcome; true if it succeeded.
    pub(crate) fn check(&self, sent: usize, outcome: Result<Bytes, BoxError>) -> bool {
        match outcome {
            Ok(reply) if reply.len() == sent => true,
            Ok(reply) => {
                self.error(format!(
                    "{}-byte reply to a {sent}-byte request",
                    reply.len()
                ));
                false
            }
            Err(error) => {
                self.error(error.to_string());
                false
            }
        }
    }

    pub(crate) fn errors(&self) -> (u64, Option<String>) {
        let first = self.first_error.lock().unwrap().clone();
        (self.errors.load(Ordering::Relaxed), first)
    }
}

/// `in_flight` callers, each making one call after another: warm-up, then
/// the measured window, announced to the driver with `Start` and `End`.
async fn throughput<C: Caller>(
    caller: Arc<C>,
    body: Bytes,
    ctx: &ClientCtx,
) -> Result<ClientResult, BoxError> {
    let shared = Arc::new(Shared::default());
    let workers: Vec<_> = (0..ctx.mode.in_flight)
        .map(|_| tokio::spawn(worker(caller.clone(), body.clone(), shared.clone())))
        .collect();

    tokio::time::sleep(ctx.settings.warmup()).await;
    let start = Instant::now();
    shared.phase.store(MEASURE, Ordering::Relaxed);
    emit(&Event::Start);
    tokio::time::sleep(ctx.settings.measure()).await;
    shared.phase.store(STOP, Ordering::Relaxed);
    let seconds = start.elapsed().as_secs_f64();
    emit(&Event::End);

    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await?);
    }
    latencies.sort_unstable();
    let (errors, first_error) = shared.errors();
    Ok(ClientResult {
        calls: latencies.len() as u64,
        seconds,
        errors,
        first_error,
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
        p999_us: percentile(&latencies, 0.999),
        max_us: latencies.last().copied().unwrap_or(0),
        hwm_kib: procfs::own_kib("VmHWM"),
        memory: None,
    })
}

/// One caller: calls until told to stop; keeps the latency (µs) of each
/// call that completed inside the measured window. Stops at the first error.
async fn worker<C: Caller>(caller: Arc<C>, body: Bytes, shared: Arc<Shared>) -> Vec<u32> {
    let mut latencies = Vec::new();
    while shared.phase.load(Ordering::Relaxed) != STOP {
        let started = Instant::now();
        let outcome = caller.call(body.clone()).await;
        let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        if !shared.check(body.len(), outcome) {
            break;
        }
        if shared.phase.load(Ordering::Relaxed) == MEASURE {
            latencies.push(micros);
        }
    }
    latencies
}

/// Warm-up for the memory mode: exactly `calls` calls, 16 at a time.
pub(crate) async fn warm_up<C: Caller>(
    caller: &Arc<C>,
    body: &Bytes,
    calls: u64,
    shared: &Arc<Shared>,
) {
    let issued = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (caller, body, shared, issued) =
                (caller.clone(), body.clone(), shared.clone(), issued.clone());
            tokio::spawn(async move {
                while issued.fetch_add(1, Ordering::Relaxed) < calls {
                    let outcome = caller.call(body.clone()).await;
                    shared.check(body.len(), outcome);
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
}
