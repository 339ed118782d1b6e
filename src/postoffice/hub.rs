//! The connections a PostOffice holds, each with its bounded send queue,
//! and the counters of what happened to them.

use super::push::Target;
use axum::extract::ws::{Message, Utf8Bytes};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, watch};

/// Where a connection's frames go: a bounded queue to its writer. A full
/// queue means the client does not read: the connection is told to close.
#[derive(Clone, Debug)]
pub(crate) struct Outbox {
    queue: mpsc::Sender<Message>,
    slow: Arc<watch::Sender<bool>>,
    stats: Arc<Counters>,
}

impl Outbox {
    pub(crate) fn new(
        capacity: usize,
        stats: Arc<Counters>,
    ) -> (Self, mpsc::Receiver<Message>, watch::Receiver<bool>) {
        let (queue, rx) = mpsc::channel(capacity.max(1));
        let (slow, slow_rx) = watch::channel(false);
        (
            Self {
                queue,
                slow: Arc::new(slow),
                stats,
            },
            rx,
            slow_rx,
        )
    }

    /// Queues `message`; `false` if the connection is gone or too slow
    /// (then it is closed).
    pub(crate) fn send(&self, message: Message) -> bool {
        match self.queue.try_send(message) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.slow.send_replace(true) {
                    self.stats.slow_readers.fetch_add(1, Ordering::Relaxed);
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a text frame.
    pub(crate) fn text(&self, frame: impl Into<Utf8Bytes>) -> bool {
        self.send(Message::Text(frame.into()))
    }
}

/// What happened since the PostOffice started.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) pushes_delivered: AtomicU64,
    pub(crate) pushes_dropped: AtomicU64,
    pub(crate) slow_readers: AtomicU64,
    pub(crate) refused: AtomicU64,
}

struct Entry {
    user: String,
    outbox: Outbox,
}

/// The connections held, by connection id.
#[derive(Default)]
pub(crate) struct Hub {
    connections: RwLock<HashMap<String, Entry>>,
    pub(crate) stats: Arc<Counters>,
}

impl Hub {
    pub(crate) fn insert(&self, id: String, user: String, outbox: Outbox) {
        self.write().insert(id, Entry { user, outbox });
    }

    pub(crate) fn remove(&self, id: &str) {
        self.write().remove(id);
    }

    pub(crate) fn len(&self) -> usize {
        self.connections
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.connections.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `frame` for every connection `target` names here; counts a
    /// push that found none as dropped.
    pub(crate) fn push(&self, target: &Target, frame: &Utf8Bytes) {
        let map = self.connections.read().unwrap_or_else(|e| e.into_inner());
        let outboxes: Vec<Outbox> = match target {
            Target::Connection(id) => map.get(id).map(|e| e.outbox.clone()).into_iter().collect(),
            Target::User(user) => map
                .values()
                .filter(|e| e.user == *user)
                .map(|e| e.outbox.clone())
                .collect(),
            Target::All => map.values().map(|e| e.outbox.clone()).collect(),
        };
        drop(map);
        let delivered = outboxes
            .iter()
            .filter(|o| o.send(Message::Text(frame.clone())))
            .count() as u64;
        self.stats
            .pushes_delivered
            .fetch_add(delivered, Ordering::Relaxed);
        if delivered == 0 {
            self.stats.pushes_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
