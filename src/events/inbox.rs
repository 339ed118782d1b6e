//! Idempotent consumption: an inbox of the eventIds a subscription has
//! handled, so that a duplicate delivery runs the handler's effects once.

use futures::future::BoxFuture;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Where a subscription remembers the events it handled.
///
/// Before a handler runs, the subscription [claims](Inbox::claim) the
/// eventId; it [completes](Inbox::complete) it once the handler succeeded
/// and [releases](Inbox::release) it if the handler failed (the retry
/// claims it again). A delivery whose claim is refused (handled already,
/// or running now in another delivery) is acked without running the
/// handler. A persistent store (a table keyed by service and eventId)
/// makes this hold across restarts; [`MemoryInbox`] is the bounded
/// in-memory default.
pub trait Inbox: Send + Sync + 'static {
    /// Claims `event_id` for `service`: `true` if it was neither handled
    /// nor running, and is running now.
    fn claim<'a>(&'a self, service: &'a str, event_id: &'a str) -> BoxFuture<'a, bool>;
    /// Records that the handler of `event_id` succeeded.
    fn complete<'a>(&'a self, service: &'a str, event_id: &'a str) -> BoxFuture<'a, ()>;
    /// Gives up the claim on `event_id` (its handler failed).
    fn release<'a>(&'a self, service: &'a str, event_id: &'a str) -> BoxFuture<'a, ()>;
}

/// An [`Inbox`] in memory that remembers the last `capacity` handled
/// eventIds of each service (10 000 by default): duplicates that arrive
/// further apart, or after a restart, run again.
#[derive(Debug)]
pub struct MemoryInbox {
    capacity: usize,
    state: Mutex<HashMap<String, Seen>>,
}

#[derive(Debug, Default)]
struct Seen {
    /// eventId → whether it is done (else running).
    ids: HashMap<String, bool>,
    /// Done ids, oldest first, for eviction.
    order: VecDeque<String>,
}

impl Default for MemoryInbox {
    fn default() -> Self {
        Self::new(10_000)
    }
}

impl MemoryInbox {
    /// An inbox remembering the last `capacity` eventIds per service.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::default(),
        }
    }

    fn with<R>(&self, service: &str, f: impl FnOnce(&mut Seen) -> R) -> R {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(state.entry(service.to_owned()).or_default())
    }
}

impl Inbox for MemoryInbox {
    fn claim<'a>(&'a self, service: &'a str, event_id: &'a str) -> BoxFuture<'a, bool> {
        let first = self.with(service, |seen| {
            if seen.ids.contains_key(event_id) {
                false
            } else {
                seen.ids.insert(event_id.to_owned(), false);
                true
            }
        });
        Box::pin(std::future::ready(first))
    }

    fn complete<'a>(&'a self, service: &'a str, event_id: &'a str) -> BoxFuture<'a, ()> {
        self.with(service, |seen| {
            seen.ids.insert(event_id.to_owned(), true);
            seen.order.push_back(event_id.to_owned());
            while seen.order.len() > self.capacity {
                if let Some(old) = seen.order.pop_front() {
                    seen.ids.remove(&old);
                }
            }
        });
        Box::pin(std::future::ready(()))
    }

    fn release<'a>(&'a self, service: &'a str, event_id: &'a str) -> BoxFuture<'a, ()> {
        self.with(service, |seen| {
            if seen.ids.get(event_id) == Some(&false) {
                seen.ids.remove(event_id);
            }
        });
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn claims_once_and_forgets_the_oldest() {
        let inbox = MemoryInbox::new(2);
        assert!(inbox.claim("s", "a").await);
        assert!(!inbox.claim("s", "a").await, "running");
        inbox.release("s", "a").await;
        assert!(inbox.claim("s", "a").await, "released");
        inbox.complete("s", "a").await;
        assert!(!inbox.claim("s", "a").await, "done");
        assert!(inbox.claim("other", "a").await, "per service");
        for id in ["b", "c"] {
            assert!(inbox.claim("s", id).await);
            inbox.complete("s", id).await;
        }
        assert!(inbox.claim("s", "a").await, "evicted");
    }
}
