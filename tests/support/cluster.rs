//! A private three-node RabbitMQ cluster that a test starts, kills nodes of
//! and restarts, through the repository's `scripts/cluster`.
//!
//! Its three ports are free ones picked when the test starts (below 45000,
//! each with its distribution port, 20000 above, free too). Its data
//! directory is removed when it is dropped. Set `WARREN_CLUSTER` to use a
//! script elsewhere than `scripts/cluster`.

use super::broker::{free_port, script};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Three nodes joined into one cluster; stopped when dropped.
#[derive(Debug)]
pub struct Cluster {
    ports: [u16; 3],
    script: PathBuf,
}

impl Cluster {
    /// Starts the three nodes and joins them; returns once all have booted.
    pub async fn start() -> Self {
        let script = script("WARREN_CLUSTER", "cluster");
        let mut ports = [0; 3];
        for i in 0..3 {
            ports[i] = loop {
                let p = free_port();
                if !ports[..i].contains(&p) {
                    break p;
                }
            };
        }
        let cluster = Self { ports, script };
        let started = Instant::now();
        cluster.run(&["start"]).await;
        println!("cluster of three nodes up in {:?}", started.elapsed());
        cluster
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.script);
        cmd.args(args)
            .env(
                "WARREN_CLUSTER_PORTS",
                self.ports.map(|p| p.to_string()).join(","),
            )
            .stdin(Stdio::null());
        cmd
    }

    async fn run(&self, args: &[&str]) -> String {
        let out = self
            .command(args)
            .output()
            .await
            .expect("run scripts/cluster");
        assert!(
            out.status.success(),
            "scripts/cluster {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Node `n`'s AMQP URL (`n` in 1..=3).
    pub fn url(&self, n: usize) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.ports[n - 1])
    }

    /// The URLs of nodes `order`, in that order.
    pub fn urls(&self, order: [usize; 3]) -> Vec<String> {
        order.iter().map(|&n| self.url(n)).collect()
    }

    /// Node `n`'s Erlang node name.
    pub fn node(&self, n: usize) -> String {
        format!("warren-cluster-{}@localhost", self.ports[n - 1])
    }

    /// The node (1..=3) each client connection is on now, by its
    /// `Config::connection_name` (a connection's pid names its node:
    /// `<node.x.y.z>`).
    pub async fn clients(&self, via: usize) -> Vec<(String, usize)> {
        let out = self
            .ctl(
                via,
                &[
                    "list_connections",
                    "-q",
                    "--no-table-headers",
                    "pid",
                    "client_properties",
                ],
            )
            .await;
        out.lines()
            .filter_map(|l| {
                let (pid, props) = l.split_once('\t')?;
                let node = pid.trim_start_matches('<').rsplitn(4, '.').last()?;
                let name = props.split("{\"connection_name\",\"").nth(1)?;
                let name = name.split('"').next()?;
                Some((name.to_owned(), self.number(node)))
            })
            .collect()
    }

    /// Which node (1..=3) has this Erlang name.
    pub fn number(&self, node: &str) -> usize {
        (1..=3)
            .find(|&n| self.node(n) == node.trim())
            .unwrap_or_else(|| panic!("no node named {node}"))
    }

    /// Kills node `n`'s Erlang VM with SIGKILL; returns once its port is closed.
    pub async fn kill(&self, n: usize) {
        self.run(&["kill", &n.to_string()]).await;
    }

    /// Starts node `n` again (it rejoins); returns once it has booted.
    pub async fn restart(&self, n: usize) {
        self.run(&["restart", &n.to_string()]).await;
    }

    /// Runs `rabbitmqctl` against node `n`.
    pub async fn ctl(&self, n: usize, args: &[&str]) -> String {
        let n = n.to_string();
        let mut all = vec!["ctl", n.as_str()];
        all.extend_from_slice(args);
        self.run(&all).await
    }

    /// The node (1..=3) hosting the leader of quorum queue `queue`, asked
    /// of node `via`.
    pub async fn leader(&self, via: usize, queue: &str) -> usize {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self
                .ctl(
                    via,
                    &["list_queues", "-q", "--no-table-headers", "name", "leader"],
                )
                .await;
            let leader = out.lines().find_map(|l| {
                let mut cols = l.split_whitespace();
                (cols.next() == Some(queue)).then(|| cols.next().map(str::to_owned))?
            });
            // (Right after a loss the leader may still be being elected.)
            if let Some(leader) = leader.filter(|l| l.contains('@')) {
                return self.number(&leader);
            }
            assert!(Instant::now() < until, "no leader for {queue}: {out}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The type of queue `queue` (`classic`, `quorum`), asked of node `via`.
    pub async fn queue_type(&self, via: usize, queue: &str) -> String {
        let out = self
            .ctl(
                via,
                &["list_queues", "-q", "--no-table-headers", "name", "type"],
            )
            .await;
        out.lines()
            .find_map(|l| {
                let mut cols = l.split_whitespace();
                (cols.next() == Some(queue)).then(|| cols.next().unwrap_or("").to_owned())
            })
            .unwrap_or_else(|| panic!("no queue {queue}: {out}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command(&["stop"])
            .into_std()
            .stdout(Stdio::null())
            .status();
        let dir = self
            .script
            .parent()
            .and_then(|p| p.parent())
            .expect("scripts/cluster sits in <repo>/scripts")
            .join(format!("target/cluster/{}", self.ports[0]));
        if std::env::var_os("WARREN_CLUSTER_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
