//! Keeping the broker's credentials out of every log.

use std::fmt;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer};

/// A [`tracing_subscriber`] layer and filter that drops the AMQP client
/// library's log events holding credentials.
///
/// warren never logs a password: broker URLs print with `***` in its place
/// ([`BrokerUrl`](crate::BrokerUrl)). The AMQP client library underneath
/// logs, at `TRACE`, every frame it writes, and the frames that open a
/// connection carry the credentials: `Connection.StartOk` (the SASL
/// response, user and password as a list of bytes), `Connection.SecureOk`
/// and `Connection.UpdateSecret`. Those events come from the library's own
/// I/O thread, which logs to the process's global subscriber, so warren
/// cannot filter them itself: add [`RedactSecrets`] to the subscriber.
///
/// ```
/// use tracing_subscriber::prelude::*;
///
/// tracing_subscriber::registry()
///     .with(warren::RedactSecrets)
///     // .with(tracing_subscriber::fmt::layer()) and any filter
///     .init();
/// ```
///
/// As a layer it is a global filter: the events it drops reach no layer
/// of that subscriber. It is also a per-layer
/// [`Filter`](tracing_subscriber::layer::Filter), for a subscriber whose
/// layers filter one by one (`fmt::layer().with_filter(RedactSecrets)`).
/// Only the client library's events that name one of those frames are
/// dropped; every other event passes untouched, and nothing is examined
/// unless the subscriber has enabled the library's `TRACE` events.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedactSecrets;

/// The methods whose fields carry a credential: the SASL response, the
/// answer to a challenge, and a refreshed secret.
const SECRET_METHODS: [&str; 3] = ["StartOk", "SecureOk", "UpdateSecret"];

/// The crates whose events can print frames.
const FRAME_LOGGERS: [&str; 2] = ["lapin", "amq_protocol"];

/// Whether events of this callsite can print a frame, and so are examined.
fn examined(metadata: &Metadata<'_>) -> bool {
    metadata.is_event()
        && FRAME_LOGGERS.iter().any(|c| {
            metadata
                .target()
                .strip_prefix(c)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

/// Whether `event` may be logged: not when one of its fields prints a
/// frame that carries a credential.
fn allowed(event: &Event<'_>) -> bool {
    if !examined(event.metadata()) {
        return true;
    }
    let mut finder = SecretFinder::default();
    event.record(&mut finder);
    !finder.found
}

/// Formats each field and looks for a method that carries a credential.
#[derive(Default)]
struct SecretFinder {
    found: bool,
    text: String,
}

impl Visit for SecretFinder {
    fn record_debug(&mut self, _field: &Field, value: &dyn fmt::Debug) {
        if self.found {
            return;
        }
        use fmt::Write;
        self.text.clear();
        let _ = write!(self.text, "{value:?}");
        self.found = SECRET_METHODS.iter().any(|m| self.text.contains(m));
    }
}

fn interest(metadata: &Metadata<'_>) -> Interest {
    if examined(metadata) {
        // Asked again for each event, so `event_enabled` sees it.
        Interest::sometimes()
    } else {
        Interest::always()
    }
}

impl<S: Subscriber> Layer<S> for RedactSecrets {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        interest(metadata)
    }

    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        allowed(event)
    }
}

impl<S> Filter<S> for RedactSecrets {
    fn enabled(&self, _metadata: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn callsite_enabled(&self, metadata: &'static Metadata<'static>) -> Interest {
        interest(metadata)
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        allowed(event)
    }
}
