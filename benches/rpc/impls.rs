//! The seam: the implementations under test. Adding one is a variant here,
//! a name in [`Impl::parse`], and one arm in each of [`Impl::serve`] and
//! [`Impl::client`] (or, for a program of another ecosystem, a
//! [`Peer`](crate::peers::Peer): see `peers.rs`):
//!
//! - its server takes a [`ServerCtx`] (declare, `ctx.ready()`, echo each
//!   body, `ctx.gate` before replying if present, return after
//!   `ctx.stopped()`);
//! - its client is a [`Caller`](crate::client::Caller) (one call with a body, the echoed reply
//!   back), connected from a [`ClientCtx`]; the harness does the rest.
//!
//! Both sides run in their own process, on a multi-threaded tokio runtime
//! with the default number of workers (one per core). What each mode asks of
//! an implementation (see `mode.rs`):
//!
//! - `e` (persistent): requests published persistent (delivery mode 2) into
//!   a durable queue with publisher confirms; a call is done when both its
//!   confirm and its reply have arrived;
//! - `mem`: 100,000 calls pending at once for tens of seconds (the server
//!   holds replies at the gate): deadlines long enough, and no per-call task
//!   needed (the harness polls all calls from one task);
//! - the baseline's server prefetch is 64 (`lapin_baseline::PREFETCH`), warren's
//!   default too: keep them equal, or say so.

use crate::client::{self, BoxError, ClientCtx};
use crate::lapin_baseline;
use crate::mode::Mode;
use crate::peers::Peer;
use crate::proto::ClientResult;
use crate::server::ServerCtx;
use crate::warren_impl;

/// What this binary says when asked to be a peer's server or client.
const PEER: &str = "a peer runs as its own program (benches/peers), not as this binary";

/// An implementation under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Impl {
    /// The hand-written lapin baseline.
    Lapin,
    /// The same baseline sending what warren's protocol puts on each
    /// request (`lapin_baseline::Wire::Warren`): what the protocol costs,
    /// apart from the code.
    LapinWire,
    /// warren's typed client and server.
    Warren,
    /// The same, recording Prometheus metrics on both sides (feature
    /// `metrics`): against `warren`, what recording costs.
    WarrenMetrics,
    /// The same with a `tracing_subscriber` fmt subscriber at INFO
    /// installed in both processes, writing to `io::sink`: against
    /// `warren`, what warren's spans cost under a real subscriber.
    WarrenTracing,
    /// Nameko (Python), a peer program.
    Nameko,
    /// node's `rabbitmq-client`, a peer program.
    Node,
}

impl Impl {
    /// The implementation the others are divided by.
    pub(crate) const BASELINE: Impl = Impl::Lapin;

    pub(crate) fn parse(name: &str) -> Option<Impl> {
        match name {
            "lapin" => Some(Impl::Lapin),
            "lapin-wire" => Some(Impl::LapinWire),
            "warren" => Some(Impl::Warren),
            "warren-metrics" => Some(Impl::WarrenMetrics),
            "warren-tracing" => Some(Impl::WarrenTracing),
            "nameko" => Some(Impl::Nameko),
            "node" => Some(Impl::Node),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Impl::Lapin => "lapin",
            Impl::LapinWire => "lapin-wire",
            Impl::Warren => "warren",
            Impl::WarrenMetrics => "warren-metrics",
            Impl::WarrenTracing => "warren-tracing",
            Impl::Nameko => "nameko",
            Impl::Node => "node",
        }
    }

    /// The program of another ecosystem it is, if it is one (its processes
    /// are that program, not this binary).
    pub(crate) fn peer(self) -> Option<Peer> {
        match self {
            Impl::Lapin
            | Impl::LapinWire
            | Impl::Warren
            | Impl::WarrenMetrics
            | Impl::WarrenTracing => None,
            Impl::Nameko => Some(Peer::Nameko),
            Impl::Node => Some(Peer::Node),
        }
    }

    /// Why it cannot run here, if it cannot.
    pub(crate) fn unavailable(self) -> Option<String> {
        self.peer().and_then(Peer::unavailable)
    }

    /// Why it does not run `mode`, if it does not.
    pub(crate) fn skips(self, mode: &Mode) -> Option<&'static str> {
        self.peer().and_then(|peer| peer.skips(mode))
    }

    /// Runs its server (the server process).
    pub(crate) async fn serve(self, ctx: ServerCtx) -> Result<(), BoxError> {
        match self {
            Impl::Lapin | Impl::LapinWire => lapin_baseline::serve(ctx).await,
            Impl::Warren => warren_impl::serve(ctx).await,
            Impl::WarrenMetrics => {
                warren_impl::enable_metrics()?;
                warren_impl::serve(ctx).await
            }
            Impl::WarrenTracing => {
                warren_impl::install_tracing();
                warren_impl::serve(ctx).await
            }
            Impl::Nameko | Impl::Node => Err(PEER.into()),
        }
    }

    /// Connects its client and runs the load (the client process).
    pub(crate) async fn client(self, ctx: &ClientCtx) -> Result<ClientResult, BoxError> {
        match self {
            Impl::Lapin => {
                let client =
                    lapin_baseline::Client::connect(ctx, lapin_baseline::Wire::Bare).await?;
                client::run(client, ctx).await
            }
            Impl::LapinWire => {
                let client =
                    lapin_baseline::Client::connect(ctx, lapin_baseline::Wire::Warren).await?;
                client::run(client, ctx).await
            }
            Impl::Warren => client::run(warren_impl::Client::connect(ctx).await?, ctx).await,
            Impl::WarrenMetrics => {
                warren_impl::enable_metrics()?;
                client::run(warren_impl::Client::connect(ctx).await?, ctx).await
            }
            Impl::WarrenTracing => {
                warren_impl::install_tracing();
                client::run(warren_impl::Client::connect(ctx).await?, ctx).await
            }
            Impl::Nameko | Impl::Node => Err(PEER.into()),
        }
    }
}
