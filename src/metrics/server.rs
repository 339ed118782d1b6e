//! A small HTTP listener for `/metrics` and the health endpoints, for
//! processes without a node serving HTTP (clients, event consumers, nodes
//! without the fallback).

use crate::amqp::Connection;
use crate::error::Error;
use crate::health::Checks;
use crate::listen::ListenConfig;
use crate::node::Node;
use std::net::SocketAddr;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Serves `GET /metrics`, `GET /health/live` and `GET /health/ready` on an
/// address of its own; stopped by [`MetricsServer::shutdown`] or when
/// dropped. Readiness covers the connections and nodes given to the
/// builder (ready with none).
///
/// ```no_run
/// use warren::metrics::MetricsServer;
/// use warren::{Client, Config, Connection};
///
/// # async fn run() -> Result<(), warren::Error> {
/// let conn = Connection::connect(Config::from_env()?).await?;
/// let client = Client::new(&conn); // its calls are counted
/// let server = MetricsServer::builder()
///     .connection(&conn)
///     .bind("127.0.0.1:9464".parse().unwrap())
///     .await?;
/// println!("scrape http://{}/metrics", server.addr());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

/// Settings of a [`MetricsServer`]: what its readiness watches, and how
/// its listener bounds connections ([`ListenConfig`]).
#[derive(Debug, Default)]
#[must_use]
pub struct MetricsServerBuilder {
    checks: Checks,
    listen: ListenConfig,
}

impl MetricsServer {
    /// A server whose readiness watches nothing yet.
    pub fn builder() -> MetricsServerBuilder {
        MetricsServerBuilder::default()
    }

    /// The address it listens on (with the port the system chose for `:0`).
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening and waits for the server to end.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

impl MetricsServerBuilder {
    /// Not ready while `conn` is not connected, or blocked by the broker.
    pub fn connection(mut self, conn: &Connection) -> Self {
        self.checks = self.checks.connection(conn);
        self
    }

    /// Not ready while `node` does not consume from both its queues.
    pub fn node(mut self, node: &Node) -> Self {
        self.checks = self
            .checks
            .node(node.service().to_string(), node.consumers.clone());
        self
    }

    /// Bounds connections (header-read and idle timeouts, their number)
    /// and serves HTTPS as `listen` says; the default is
    /// [`ListenConfig::default`]. `ListenConfig::default().with_env_from("WARREN_METRICS_", …)`
    /// reads it from the environment.
    pub fn listen(mut self, listen: ListenConfig) -> Self {
        self.listen = listen;
        self
    }

    /// Binds `addr` (port 0: any free port), starts recording, and serves.
    ///
    /// # Errors
    /// [`Error::Config`] if the address cannot be bound or the
    /// [`ListenConfig`] cannot work (a zero limit, an unreadable
    /// certificate).
    pub async fn bind(self, addr: SocketAddr) -> Result<MetricsServer, Error> {
        let prepared = self.listen.prepare("metrics")?;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Error::Config(format!("cannot bind the metrics listener to {addr}: {e}"))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Config(format!("the metrics listener has no address: {e}")))?;
        let app = crate::health::routes(self.checks);
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = prepared.serve(listener, app, shutdown).await {
                tracing::warn!(error = %e, "the metrics listener stopped");
            }
        });
        tracing::info!(%addr, "serving /metrics and /health/*");
        Ok(MetricsServer {
            addr,
            stop,
            task: Some(task),
        })
    }
}
