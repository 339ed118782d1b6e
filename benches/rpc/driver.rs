//! The driver: every (round, mode, implementation) is one server process and
//! one client process (this same binary, re-executed with a role, or a peer's
//! program: `peers.rs`); the driver reads their CPU time at the start and end
//! of the client's measured window and the server's peak memory before it
//! stops.

use crate::impls::Impl;
use crate::mode::{Mode, Settings};
use crate::procfs;
use crate::proto::{self, ClientResult, Event};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// One measured run.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) imp: Impl,
    pub(crate) mode: Mode,
    pub(crate) round: usize,
    pub(crate) client: ClientResult,
    /// CPU seconds of each process inside the measured window.
    pub(crate) client_cpu_s: f64,
    pub(crate) server_cpu_s: f64,
    /// The broker's, if it runs here and we could find it.
    pub(crate) broker_cpu_s: Option<f64>,
    /// Everything else the machine ran in the window (other people's work:
    /// the noise), in CPU seconds.
    pub(crate) others_cpu_s: f64,
    pub(crate) server_hwm_kib: u64,
}

impl Run {
    pub(crate) fn calls_per_s(&self) -> f64 {
        self.client.calls as f64 / self.client.seconds.max(1e-9)
    }

    /// CPU seconds per 1,000 calls.
    pub(crate) fn cpu_per_1k(&self, cpu_s: f64) -> f64 {
        cpu_s * 1000.0 / (self.client.calls.max(1) as f64)
    }

    /// How busy the rest of the machine was in the window, in percent of
    /// all its cores.
    pub(crate) fn others_busy_pct(&self) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        100.0 * self.others_cpu_s / (self.client.seconds.max(1e-9) * cores as f64)
    }

    /// The memory mode's bytes per pending call.
    pub(crate) fn bytes_per_pending(&self) -> Option<f64> {
        let m = self.client.memory.as_ref()?;
        let grown = m.rss_pending_kib as f64 - m.rss_before_kib as f64;
        Some(grown * 1024.0 / (m.pending.max(1) as f64))
    }
}

/// A run that did not produce figures.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) imp: Impl,
    pub(crate) mode: Mode,
    pub(crate) round: usize,
    pub(crate) error: String,
}

/// A mode an implementation does not run, and why.
#[derive(Debug, Clone)]
pub(crate) struct Skip {
    pub(crate) imp: Impl,
    pub(crate) mode: Mode,
    pub(crate) why: &'static str,
}

/// Runs every (round, mode, implementation): implementations alternate
/// within a round, in reverse order every other round.
pub(crate) fn drive(settings: &Settings, impls: &[Impl]) -> (Vec<Run>, Vec<Failure>, Vec<Skip>) {
    let (mut runs, mut failures, mut skips) = (Vec::new(), Vec::new(), Vec::new());
    let port = settings
        .url
        .parse::<lapin::uri::AMQPUri>()
        .map(|uri| uri.authority.port);
    let broker = port.ok().and_then(procfs::listener_pid);
    match broker {
        Some(pid) => println!("broker process: {pid} (its CPU time is reported too)"),
        None => println!("broker process: not found on this machine (no broker CPU figures)"),
    }
    for mode in &settings.modes {
        for &imp in impls {
            if let Some(why) = imp.skips(mode) {
                println!("  mode {:<4} {:<7} skipped: {why}", mode.id, imp.name());
                skips.push(Skip {
                    imp,
                    mode: *mode,
                    why,
                });
            }
        }
        let rounds = if mode.memory {
            settings.memory_rounds
        } else {
            settings.rounds
        };
        for round in 1..=rounds {
            let mut order = impls.to_vec();
            if round % 2 == 0 {
                order.reverse();
            }
            for &imp in order.iter().filter(|imp| imp.skips(mode).is_none()) {
                match run_one(settings, imp, *mode, round, broker) {
                    Ok(run) => {
                        crate::report::progress(&run);
                        runs.push(run);
                    }
                    Err(error) => {
                        println!(
                            "  round {round} {:<4} {:<7} FAILED: {error}",
                            mode.id,
                            imp.name()
                        );
                        failures.push(Failure {
                            imp,
                            mode: *mode,
                            round,
                            error,
                        });
                    }
                }
            }
        }
    }
    (runs, failures, skips)
}

/// A child process killed if we give up on it.
struct Proc {
    child: Child,
    name: &'static str,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Proc {
    fn spawn(
        settings: &Settings,
        role: &str,
        imp: Impl,
        mode: Mode,
        stdin: Stdio,
    ) -> Result<(Proc, BufReader<ChildStdout>), String> {
        let mut command = match imp.peer() {
            Some(peer) => peer.command(role, &mode, settings),
            None => Command::new(std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?),
        };
        let mut child = command
            .env(proto::ROLE, role)
            .env(proto::IMPL, imp.name())
            .env(proto::MODE, mode.id)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawning the {role} of {}: {e}", imp.name()))?;
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let name = if role == "server" { "server" } else { "client" };
        Ok((Proc { child, name }, out))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next event the child prints; an error if it exits first.
    fn next_event(&mut self, out: &mut BufReader<ChildStdout>) -> Result<Event, String> {
        let mut line = String::new();
        loop {
            line.clear();
            if out.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                let status = self.child.wait().map_err(|e| e.to_string())?;
                return Err(format!(
                    "the {} exited ({status}) before finishing",
                    self.name
                ));
            }
            match serde_json::from_str(&line) {
                Ok(event) => return Ok(event),
                Err(_) => eprint!("{}: {line}", self.name),
            }
        }
    }

    /// Closes its stdin (its signal to stop) and waits a while for it.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("the {} did not stop in 10 s; killing it", self.name);
    }
}

/// CPU seconds so far of the client, the server, the broker, the machine.
#[derive(Debug, Clone, Copy, Default)]
struct Sample([f64; 4]);

impl Sample {
    fn take(client: u32, server: u32, broker: Option<u32>) -> Sample {
        let cpu = |pid| procfs::cpu_seconds(pid).unwrap_or(f64::NAN);
        let broker = broker.map_or(0.0, cpu);
        let machine = procfs::machine_busy_seconds().unwrap_or(f64::NAN);
        Sample([cpu(client), cpu(server), broker, machine])
    }

    fn since(self, start: Sample) -> [f64; 4] {
        std::array::from_fn(|i| self.0[i] - start.0[i])
    }
}

/// One run: start the server, wait until it is ready, run the client,
/// read both processes' figures, stop the server.
pub(crate) fn run_one(
    settings: &Settings,
    imp: Impl,
    mode: Mode,
    round: usize,
    broker: Option<u32>,
) -> Result<Run, String> {
    let (mut server, mut server_out) = Proc::spawn(settings, "server", imp, mode, Stdio::piped())?;
    match server.next_event(&mut server_out)? {
        Event::Ready => {}
        other => return Err(format!("server: expected ready, got {other:?}")),
    }
    let (mut client, mut client_out) = Proc::spawn(settings, "client", imp, mode, Stdio::null())?;
    let (mut at_start, mut at_end) = (Sample::default(), Sample::default());
    let sample = |client: &Proc, server: &Proc| Sample::take(client.pid(), server.pid(), broker);
    let result = loop {
        match client.next_event(&mut client_out)? {
            Event::Start => at_start = sample(&client, &server),
            Event::End => at_end = sample(&client, &server),
            Event::Pending(_) => {
                let stdin = server.child.stdin.as_mut().expect("piped stdin");
                writeln!(stdin, "release").map_err(|e| format!("releasing the server: {e}"))?;
            }
            Event::Result(result) => break result,
            Event::Ready => return Err("client: unexpected ready".into()),
        }
    };
    let status = client.child.wait().map_err(|e| e.to_string())?;
    let server_hwm_kib = procfs::status_kib(server.pid(), "VmHWM").unwrap_or(0);
    server.stop();
    if !status.success() {
        return Err(format!("the client exited with {status}"));
    }
    if result.errors > 0 {
        let first = result.first_error.as_deref().unwrap_or("?");
        return Err(format!("{} failed calls; first: {first}", result.errors));
    }
    let [client_cpu_s, server_cpu_s, broker_cpu_s, machine_s] = at_end.since(at_start);
    Ok(Run {
        imp,
        mode,
        round,
        client: result,
        client_cpu_s,
        server_cpu_s,
        broker_cpu_s: broker.map(|_| broker_cpu_s),
        others_cpu_s: machine_s - client_cpu_s - server_cpu_s - broker_cpu_s,
        server_hwm_kib,
    })
}
