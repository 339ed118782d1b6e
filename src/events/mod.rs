//! Events: typed publish/subscribe over a durable topic exchange.
//!
//! An event is a `domain.action` fact (`ticket.created`,
//! `payment.failed`) published once and handled by every service that
//! subscribed to it, each from its own durable queue `<service>.q`:
//!
//! - [`Event`] (usually `#[derive(warren::Event)]`) names an event type and
//!   its schema version;
//! - [`Publisher::publish`] sends it persistent and confirmed on the events
//!   exchange ([`Config::events_exchange`](crate::Config::events_exchange),
//!   `app.events`), in the [`envelope`] `{eventId, version,
//!   eventType, timestamp, payload}`;
//! - a [`Subscription`] binds `<service>.q` with exact types and wildcards
//!   and runs a `tower::Service` per event type or pattern; a delivery is
//!   acked once its handler succeeded;
//! - a failed handler's event is retried through delay queues held in the
//!   broker ([`RetryPolicy`]: at once, then 1 s, 2 s, 4 s, 8 s), then goes
//!   to the dead-letter queue `<service>.dlq` with the reason in its headers;
//!   [`DeadLetters`] lists, replays and purges it;
//! - an [`Inbox`] makes a subscription idempotent by eventId.
//!
//! `docs/EVENTS.md` is the guide; `docs/PROTOCOL.md` the wire format for
//! peers in other languages.
//!
//! ```no_run
//! use warren::events::{Delivery, Publisher, Subscription};
//! use warren::{Config, Connection};
//!
//! #[derive(serde::Serialize, serde::Deserialize, warren::Event)]
//! #[event(name = "ticket.created", version = 1)]
//! struct TicketCreated {
//!     id: u64,
//!     title: String,
//! }
//!
//! # async fn run() -> Result<(), warren::Error> {
//! let conn = Connection::connect(Config::from_env()?).await?;
//! let search = Subscription::new("search")
//!     .on(tower::service_fn(|d: Delivery<TicketCreated>| async move {
//!         println!("index ticket {}: {}", d.payload.id, d.payload.title);
//!         Ok::<_, warren::Error>(())
//!     }))
//!     .start(&conn)
//!     .await?;
//!
//! let publisher = Publisher::new(&conn);
//! publisher.publish(&TicketCreated { id: 7, title: "Leaking tap".into() }).await?;
//! # search.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod dead_letters;
pub mod envelope;
mod handler;
mod inbox;
mod policy;
mod publisher;
mod retry;
mod runner;
mod subscriber;
mod tail;
mod topology;

pub use dead_letters::{DeadLetter, DeadLetters};
pub use envelope::{EventMeta, Format};
pub use handler::{permanent, Delivery, Permanent};
pub use inbox::{Inbox, MemoryInbox};
pub use policy::{Overflow, QueueType};
#[cfg(feature = "outbox")]
pub(crate) use publisher::Outgoing;
pub use publisher::{Publisher, Unroutable};
pub use retry::RetryPolicy;
pub use subscriber::{Subscriber, Subscription};
pub use tail::{Tail, Tailed};

pub(crate) use publisher::link;

/// The exchange, queues and bindings of a subscription of `service` bound
/// with `bindings`, retrying with `retry`, under its default policies.
pub(crate) fn layout(
    config: &crate::Config,
    service: &str,
    bindings: &[String],
    retry: &RetryPolicy,
) -> crate::Layout {
    let policy = policy::Policy::default().under(config);
    let delays = retry.delay_queues();
    topology::Queues {
        exchange: &config.events_exchange,
        service,
        bindings,
        delays: &delays,
        policy: &policy,
    }
    .layout()
}

use serde::{de::DeserializeOwned, Serialize};

/// An event type: its name (`domain.action`, lowercase) and the version of
/// its schema. Derive it with `#[derive(warren::Event)]` and
/// `#[event(name = "ticket.created", version = 1)]`, which checks the name
/// at compile time; the version defaults to 1.
pub trait Event: Serialize + DeserializeOwned + Send + 'static {
    /// The event type, such as `ticket.created`: the routing key it is
    /// published with, and the envelope's `eventType`.
    const NAME: &'static str;
    /// The schema version it is published with (the envelope's `version`).
    const VERSION: u32;
}

/// Checks an event type name at run time (the derive checks it at compile
/// time): two or more dot-separated words of lowercase ASCII letters,
/// digits and `_`, each starting with a letter.
pub(crate) fn check_name(name: &str) -> Result<(), crate::Error> {
    let word_ok = |w: &str| {
        w.starts_with(|c: char| c.is_ascii_lowercase())
            && w.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    if name.contains('.') && name.split('.').all(word_ok) {
        Ok(())
    } else {
        Err(crate::Error::InvalidRequest(format!(
            "event type `{name}` is not `domain.action` (dot-separated lowercase words)"
        )))
    }
}

/// Checks an event's type ([`check_name`]) and version (from 1), before it
/// is published or stored.
pub(crate) fn check_event(event_type: &str, version: u32) -> Result<(), crate::Error> {
    check_name(event_type)?;
    if version == 0 {
        return Err(crate::Error::InvalidRequest(
            "event versions start at 1".into(),
        ));
    }
    Ok(())
}

/// Whether a topic pattern (`*` one word, `#` zero or more) matches `key`.
pub(crate) fn matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some((&"#", rest)) => (0..=k.len()).any(|i| go(rest, &k[i..])),
            Some((&w, rest)) => k
                .split_first()
                .is_some_and(|(&kw, krest)| (w == "*" || w == kw) && go(rest, krest)),
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    go(&p, &k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns() {
        assert!(matches("ticket.created", "ticket.created"));
        assert!(matches("*.created", "ticket.created"));
        assert!(!matches("*.created", "ticket.status_changed"));
        assert!(matches("#", "a.b.c"));
        assert!(matches("audit.#", "audit"));
        assert!(matches("audit.#", "audit.user.login"));
        assert!(!matches("payment.*", "payment.card.failed"));
        assert!(matches("#.failed", "payment.card.failed"));
    }

    #[test]
    fn names() {
        assert!(check_name("ticket.status_changed").is_ok());
        assert!(check_name("audit.user.login2").is_ok());
        for bad in [
            "ticket",
            "Ticket.created",
            "ticket..created",
            "ticket.2x",
            "a.b-c",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
