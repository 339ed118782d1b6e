//! Peers: implementations in other ecosystems, whose server and client are
//! not this binary but a program of their own under `benches/peers/<name>/`
//! (`server.*`, `client.*`), run by that ecosystem's runtime.
//!
//! The driver spawns them directly (no shell in between, so the pid it reads
//! CPU time and memory from is the runtime's own) with the same environment
//! as its own children (`proto::{ROLE, IMPL, MODE}`, `WARREN_AMQP_URL`), plus
//! what the mode and the settings mean, so the peers need no copy of
//! `mode.rs`: `WARREN_BENCH_IN_FLIGHT`, `WARREN_BENCH_BODY`,
//! `WARREN_BENCH_PERSISTENT` (`0`/`1`), `WARREN_BENCH_WARMUP_S`,
//! `WARREN_BENCH_MEASURE_S`. They speak `proto.rs`: JSON events on stdout,
//! the server stops at the end of its stdin.
//!
//! A peer is set up by `scripts/bench-peers`, which installs its packages and
//! names its runtime in an environment variable; without it the peer is
//! unavailable and skipped (plain `cargo bench --bench rpc` never needs one).

use crate::mode::{Mode, Settings};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A program under `benches/peers/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// Nameko 2.14 (Python, eventlet): `ClusterRpcProxy` and an `@rpc` service.
    Nameko,
    /// node's `rabbitmq-client`: `createRPCClient` and `createConsumer`.
    Node,
}

impl Peer {
    fn dir_name(self) -> &'static str {
        match self {
            Peer::Nameko => "nameko",
            Peer::Node => "node",
        }
    }

    /// The environment variable naming its runtime.
    pub(crate) fn runtime_var(self) -> &'static str {
        match self {
            Peer::Nameko => "WARREN_BENCH_NAMEKO_PYTHON",
            Peer::Node => "WARREN_BENCH_NODE",
        }
    }

    fn script(self, role: &str) -> PathBuf {
        let ext = match self {
            Peer::Nameko => "py",
            Peer::Node => "js",
        };
        dir(self).join(format!("{role}.{ext}"))
    }

    fn runtime(self) -> Option<String> {
        std::env::var(self.runtime_var())
            .ok()
            .filter(|v| !v.trim().is_empty())
    }

    /// Why it cannot run here, if it cannot: no runtime named, or its
    /// packages are not installed.
    pub(crate) fn unavailable(self) -> Option<String> {
        let Some(runtime) = self.runtime() else {
            return Some(format!(
                "{} is not set (scripts/bench-peers installs the peer and sets it)",
                self.runtime_var()
            ));
        };
        // Whether the runtime finds the library, as the peer's programs would.
        let probe = match self {
            Peer::Nameko => vec!["-c", "import nameko.standalone.rpc"],
            Peer::Node => vec!["-e", "require.resolve('rabbitmq-client')"],
        };
        let found = Command::new(&runtime)
            .args(probe)
            .current_dir(dir(self))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match found {
            Ok(status) if status.success() => None,
            Ok(_) => Some(format!(
                "{}={runtime} does not find its packages (run scripts/bench-peers to install them)",
                self.runtime_var()
            )),
            Err(error) => Some(format!(
                "{}={runtime} cannot be run: {error}",
                self.runtime_var()
            )),
        }
    }

    /// Why it does not run `mode`, if it does not.
    pub(crate) fn skips(self, mode: &Mode) -> Option<&'static str> {
        if mode.memory {
            return Some(
                "the memory mode's held replies (the server's gate) are not in the peer programs",
            );
        }
        match self {
            // Nameko's default delivery is persistent with confirms, its
            // service queue durable: mode e is what it always does.
            Peer::Nameko => None,
            Peer::Node if mode.persistent => Some(
                "rabbitmq-client 5.0.8's RPCClient with `confirm: true` registers a call's reply \
                 only after its publish confirm: a reply that comes first is dropped and the call \
                 times out after 30 s (most calls, with persistent requests)",
            ),
            Peer::Node => None,
        }
    }

    /// The command that runs its server or client (`role`) for `mode`.
    pub(crate) fn command(self, role: &str, mode: &Mode, settings: &Settings) -> Command {
        let runtime = self.runtime().unwrap_or_default();
        let mut command = Command::new(runtime);
        command
            .arg(self.script(role))
            .current_dir(dir(self))
            .env("WARREN_AMQP_URL", &settings.url)
            .env("WARREN_BENCH_IN_FLIGHT", mode.in_flight.to_string())
            .env("WARREN_BENCH_BODY", mode.body.to_string())
            .env(
                "WARREN_BENCH_PERSISTENT",
                if mode.persistent { "1" } else { "0" },
            )
            .env(
                "WARREN_BENCH_WARMUP_S",
                settings.warmup().as_secs_f64().to_string(),
            )
            .env(
                "WARREN_BENCH_MEASURE_S",
                settings.measure().as_secs_f64().to_string(),
            );
        if self == Peer::Nameko {
            // No __pycache__ in the source tree.
            command.env("PYTHONDONTWRITEBYTECODE", "1");
        }
        command
    }
}

/// `benches/peers/<name>/`.
fn dir(peer: Peer) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("benches/peers")
        .join(peer.dir_name())
}
