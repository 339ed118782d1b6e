//! A node's HTTP side: its server and its announcements, started and
//! stopped with the node.

use super::announce::{announce, Announcement};
use super::health::{state_name, Health, Probe};
use super::{HttpConfig, HttpServer};
use crate::address::{ServiceId, ServiceType};
use crate::amqp::Connection;
use crate::error::Error;
use crate::node::dispatch::Handler;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// What the HTTP side reads from the node.
pub(crate) struct NodeParts {
    pub(crate) service: ServiceType,
    pub(crate) id: ServiceId,
    pub(crate) handler: Handler,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) concurrency: usize,
    pub(crate) consumers: Arc<AtomicUsize>,
    /// The generation of the connection the node's consumers run on, if
    /// any: the announcements wait for it.
    pub(crate) consuming: watch::Receiver<Option<u64>>,
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
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| Error::Config(format!("cannot bind the HTTP server to {listen}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Config(format!("the HTTP listener has no address: {e}")))?;
        let url = config
            .url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let (stop, stopped) = watch::channel(false);
        let state = conn.state();
        let probe: Probe = {
            let (service, id) = (node.service.to_string(), node.id.to_string());
            let (permits, consumers) = (node.permits.clone(), node.consumers.clone());
            let concurrency = node.concurrency;
            Arc::new(move || Health {
                id: id.clone(),
                service: service.clone(),
                broker: state_name(&state.borrow()).to_owned(),
                consumers: consumers.load(Ordering::Relaxed),
                in_flight: concurrency.saturating_sub(permits.available_permits()),
            })
        };
        let server = HttpServer::with_handler(node.service.clone(), node.id.clone(), node.handler)
            .token(config.token.clone())
            .max_body(config.max_body.unwrap_or(conn.config().max_body))
            .node(node.permits, probe);
        let mut until = stopped.clone();
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = until.wait_for(|s| *s).await;
            };
            if let Err(e) = server.serve(listener, shutdown).await {
                warn!(error = %e, "the HTTP server stopped");
            }
        });
        let what = Announcement {
            id: node.id.to_string(),
            service: node.service.to_string(),
            http_url: url.clone(),
            interval_ms: config.announce_every.as_millis() as u64,
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
