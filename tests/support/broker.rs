//! A private RabbitMQ node that a test starts, kills and restarts itself,
//! through the repository's `scripts/broker`.
//!
//! Its port is a free one, picked when the test starts (below 45000, with
//! the Erlang distribution port, 20000 above it, and the management port,
//! 10000 above it, free too), so tests and
//! parallel checkouts never collide. Its data directory is removed when it
//! is dropped. Set `WARREN_BROKER_SCRIPT` to use a script elsewhere than
//! `scripts/broker`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A private broker node on its own port; stopped when dropped.
#[derive(Debug)]
pub struct PrivateBroker {
    port: u16,
    script: PathBuf,
}

impl PrivateBroker {
    /// A node on a free port (not started yet).
    pub fn new() -> Self {
        Self {
            port: free_port(),
            script: script("WARREN_BROKER_SCRIPT", "broker"),
        }
    }

    /// Where the node keeps its state (`scripts/broker`'s layout).
    fn dir(&self) -> PathBuf {
        self.script
            .parent()
            .and_then(|p| p.parent())
            .expect("scripts/broker sits in <repo>/scripts")
            .join(format!("target/broker/{}", self.port))
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its AMQP URL.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn command(&self, args: &[&str]) -> Command {
        command(&self.script, self.port, args)
    }

    /// Starts the node (a no-op if it runs) and waits until it has booted.
    pub async fn start(&self) {
        self.start_with(&[]).await;
    }

    /// Starts the node with more of `scripts/broker`'s environment (such
    /// as its TLS listener's settings).
    pub async fn start_with(&self, env: &[(&str, String)]) {
        let mut cmd = self.command(&["start"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = tokio::process::Command::from(cmd)
            .output()
            .await
            .expect("run scripts/broker start");
        assert!(
            out.status.success(),
            "scripts/broker start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the node again (after [`PrivateBroker::kill`]) in the
    /// background; returns when it accepts connections, with a handle that
    /// gives the broker back once it has booted.
    pub async fn restart(self) -> (Instant, tokio::task::JoinHandle<Self>) {
        let port = self.port;
        let booted = tokio::spawn(async move {
            self.start().await;
            self
        });
        (accepting(port).await, booted)
    }

    /// Stops the node cleanly (a no-op if it is not running).
    pub fn stop(&self) {
        let _ = self.command(&["stop"]).output();
    }

    /// Runs `rabbitmqctl` against the node.
    pub async fn ctl(&self, args: &[&str]) -> String {
        let mut cmd = tokio::process::Command::from(self.command(&[]));
        cmd.arg("ctl").args(args);
        let out = cmd.output().await.expect("run scripts/broker ctl");
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kills the node's Erlang VM with SIGKILL (no clean shutdown, no
    /// connection.close to anyone) and waits until its port is closed.
    pub async fn kill(&self) {
        let state = self.dir().join("pid");
        let pid =
            std::fs::read_to_string(&state).unwrap_or_else(|e| panic!("{}: {e}", state.display()));
        let status = tokio::process::Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -9 {} failed", pid.trim());
        let start = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_ok()
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the node would not die"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits until something accepts TCP connections on `port`, and says when.
pub async fn accepting(port: u16) -> Instant {
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn command(script: &Path, port: u16, args: &[&str]) -> Command {
    let mut cmd = Command::new(script);
    cmd.args(args)
        .env("WARREN_BROKER_PORT", port.to_string())
        // With it set, the script would manage nothing and print this URL.
        .env_remove("WARREN_AMQP_URL")
        // scripts/test exports the shared node's name; this node has its own.
        .env_remove("WARREN_BROKER_NODE")
        .stdin(Stdio::null());
    cmd
}

/// The repository's `scripts/<name>`, or the script the variable `var`
/// names.
pub fn script(var: &str, name: &str) -> PathBuf {
    let script = std::env::var_os(var).map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("scripts")
                .join(name)
        },
        PathBuf::from,
    );
    assert!(script.exists(), "{} not found; set {var}", script.display());
    script
}

/// A port free now below 45000 whose Erlang distribution port (20000
/// above it) and management port (10000 above it, for a node with the
/// management plugin) are free too.
pub fn free_port() -> u16 {
    let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    for _ in 0..100 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().unwrap().port();
        if port < 45_000 && free(port + 20_000) && free(port + 10_000) {
            return port;
        }
    }
    panic!("no free port below 45000 with its distribution and management ports free");
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(self.dir());
    }
}
