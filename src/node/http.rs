//! A node's HTTP side: its server and its announcements, started and
//! stopped with the node, and the node's methods that set and read it.

use super::sides::NodeParts;
use super::{Node, NodeBuilder};
use crate::amqp::connection::until_closed;
use crate::amqp::Connection;
use crate::discovery::{announce, Announcement};
use crate::error::Error;
use crate::http::health::{state_name, Health, Probe};
use crate::http::{HttpConfig, HttpServer};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl NodeBuilder {
    /// Also serves HTTP (`POST /rpc/<method>`, `GET /health`) with the same
    /// handler, if `config.listen` is set, and announces the node's URL on
    /// the broker. See `docs/FALLBACK.md`. The listener also answers
    /// `GET /health/live`, `GET /health/ready` ([`crate::health`]) and,
    /// with the `metrics` feature, `GET /metrics`.
    pub fn http(mut self, config: HttpConfig) -> Self {
        self.sides.http = config.listen.is_some().then_some(config);
        self
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl Node {
    /// The address the node's HTTP server is bound to, if it serves HTTP.
    #[must_use]
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.sides.http.as_ref().map(|h| h.addr)
    }

    /// The URL the node announces for its HTTP server, if it serves HTTP.
    #[must_use]
    pub fn http_url(&self) -> Option<&str> {
        self.sides.http.as_ref().map(|h| h.url.as_str())
    }
}

/// The running HTTP side of a node; stopped when dropped.
#[derive(Debug)]
pub(crate) struct Serving {
    pub(crate) addr: SocketAddr,
    pub(crate) url: String,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl Serving {
    /// Binds `config.listen` (and nothing else), serves, and announces.
    pub(crate) async fn start(
        config: HttpConfig,
        conn: &Connection,
        node: NodeParts,
    ) -> Result<Self, Error> {
        let Some(listen) = config.listen else {
            return Err(Error::Config("no HTTP listen address".into()));
        };
        let prepared = config.listener.prepare("node")?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| Error::Config(format!("cannot bind the HTTP server to {listen}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Config(format!("the HTTP listener has no address: {e}")))?;
        let url = config
            .url
            .clone()
            .unwrap_or_else(|| format!("{}://{addr}", prepared.scheme()));
        let (stop, stopped) = watch::channel(false);
        let state = conn.state();
        let checks = crate::health::Checks::default()
            .connection(conn)
            .node(node.service.to_string(), node.consumers.clone());
        let probe: Probe = {
            let (service, id) = (node.service.to_string(), node.id.to_string());
            let (permits, consumers) = (node.permits.clone(), node.consumers.clone());
            Arc::new(move || Health {
                id: id.clone(),
                service: service.clone(),
                broker: state_name(&state.borrow()).to_owned(),
                consumers: consumers.load(Ordering::Relaxed),
                in_flight: node.concurrency.saturating_sub(permits.available_permits()),
            })
        };
        let server = HttpServer::with_handler(node.service.clone(), node.id.clone(), node.handler)
            .token(config.token.clone())
            .max_body(config.max_body.unwrap_or(conn.config().max_body))
            .node(node.permits, probe, checks);
        let mut until = stopped.clone();
        let server = tokio::spawn(async move {
            let shutdown = async move { until_closed(&mut until).await };
            if let Err(e) = server.serve_prepared(prepared, listener, shutdown).await {
                warn!(error = %e, "the HTTP server stopped");
            }
        });
        let what = Announcement {
            id: node.id.to_string(),
            service: node.service.to_string(),
            http_url: url.clone(),
            interval_ms: config.announce_every.as_millis() as u64,
            methods: node.methods,
        };
        tokio::spawn(announce(
            conn.clone(),
            what,
            config.announce_every,
            node.consuming,
            stopped,
        ));
        info!(%addr, %url, "node serving HTTP");
        Ok(Self {
            addr,
            url,
            stop,
            server: Some(server),
        })
    }

    /// Stops taking HTTP calls and waits (up to `grace`) for those running.
    pub(crate) async fn shutdown(mut self, grace: Duration) {
        self.stop.send_replace(true);
        if let Some(mut server) = self.server.take() {
            if tokio::time::timeout(grace, &mut server).await.is_err() {
                warn!(
                    ?grace,
                    "HTTP calls still running at the end of the grace period"
                );
                server.abort();
            }
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}
