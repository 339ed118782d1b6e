//! The server role: what an implementation's server gets from the harness.

use crate::client::BoxError;
use crate::impls::Impl;
use crate::mode::{Mode, Settings};
use crate::proto::{emit, Event};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

/// Everything a server implementation needs. It must: declare what it
/// consumes, call [`ServerCtx::ready`] once clients may call, echo each
/// request's body as the reply (after [`Gate::pass`] if there is a gate),
/// and return after shutting down cleanly once [`ServerCtx::stopped`]
/// resolves.
#[derive(Debug)]
pub(crate) struct ServerCtx {
    pub(crate) url: String,
    pub(crate) mode: Mode,
    /// Memory mode only: the handler passes it before replying.
    pub(crate) gate: Option<Arc<Gate>>,
    stop: watch::Receiver<bool>,
}

impl ServerCtx {
    /// Tells the driver that clients may call now.
    pub(crate) fn ready(&self) {
        emit(&Event::Ready);
    }

    /// Resolves when the driver asks the server to stop.
    pub(crate) async fn stopped(&self) {
        let mut stop = self.stop.clone();
        // An error means the sender is gone: stop too.
        let _ = stop.wait_for(|stop| *stop).await;
    }
}

/// Holds replies in the memory mode: the first `free` requests pass (the
/// client's warm-up), later ones wait until the driver releases the gate
/// (all the client's calls are pending by then).
#[derive(Debug)]
pub(crate) struct Gate {
    free: u64,
    passed: AtomicU64,
    open: watch::Sender<bool>,
}

impl Gate {
    fn new(free: u64) -> Gate {
        Gate {
            free,
            passed: AtomicU64::new(0),
            open: watch::Sender::new(false),
        }
    }

    /// Waits, if this request must be held.
    pub(crate) async fn pass(&self) {
        if self.passed.fetch_add(1, Ordering::Relaxed) < self.free {
            return;
        }
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
    }

    fn release(&self) {
        self.open.send_replace(true);
    }
}

/// Runs the server of `imp` until the driver closes our stdin.
pub(crate) async fn main(imp: Impl, settings: &Settings, mode: Mode) -> Result<(), BoxError> {
    let gate = mode
        .memory
        .then(|| Arc::new(Gate::new(settings.memory_warmup_calls())));
    let (stop_tx, stop) = watch::channel(false);
    let control = gate.clone();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let ("release", Some(gate)) = (line.trim(), &control) {
                gate.release();
            }
        }
        let _ = stop_tx.send(true);
    });
    let ctx = ServerCtx {
        url: settings.url.clone(),
        mode,
        gate,
        stop,
    };
    imp.serve(ctx).await
}
