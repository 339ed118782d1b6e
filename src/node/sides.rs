//! What a node runs beside its queues. Each part comes with its cargo
//! feature, and this file is the one place where the node meets them: a
//! new part adds a field to [`SidesConfig`] and [`Sides`], and its builder
//! method lives beside it (`NodeBuilder::http` is in `node/http.rs`). The
//! parts know nothing of the node: `http` and `discovery` import nothing
//! from it.

use crate::address::{ServiceId, ServiceType};
use crate::amqp::Connection;
use crate::error::Error;
use crate::serve::Handler;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// What the parts beside the queues read from the node.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
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
    /// The methods it announces.
    pub(crate) methods: Vec<String>,
}

/// Which parts a node runs beside its queues, and their settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct SidesConfig {
    /// The HTTP endpoint and its announcements.
    #[cfg(feature = "http")]
    pub(crate) http: Option<crate::http::HttpConfig>,
}

/// The parts running beside a node's queues; stopped when dropped.
#[derive(Debug)]
pub(crate) struct Sides {
    #[cfg(feature = "http")]
    pub(crate) http: Option<super::http::Serving>,
}

// Without any part, the two methods below have nothing to await.
#[cfg_attr(not(feature = "http"), allow(clippy::unused_async))]
impl Sides {
    /// Starts the configured parts, once the node takes requests.
    pub(crate) async fn start(
        config: SidesConfig,
        conn: &Connection,
        node: NodeParts,
    ) -> Result<Self, Error> {
        #[cfg(not(feature = "http"))]
        let _ = (config, conn, node);
        Ok(Self {
            #[cfg(feature = "http")]
            http: match config.http {
                Some(http) => Some(super::http::Serving::start(http, conn, node).await?),
                None => None,
            },
        })
    }

    /// Stops the parts, waiting up to `grace` for the calls they run.
    pub(crate) async fn shutdown(self, grace: Duration) {
        #[cfg(not(feature = "http"))]
        let _ = grace;
        #[cfg(feature = "http")]
        if let Some(http) = self.http {
            http.shutdown(grace).await;
        }
    }
}
