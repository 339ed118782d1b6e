//! One span per call, `warren.call` (or `warren.gather`), with its method,
//! address and delivery; the transport below records what it knows
//! (`transport`, `correlation_id`, `peer`) and the span ends with the call's
//! `outcome` (`ok`, the reply's status code, or the transport error's
//! kind) and `duration_us`, which the call's metrics take too.

use crate::error::Error;
use crate::message::{Message, Replies};
use crate::record;
use std::time::Instant;
use tracing::field::Empty;
use tracing::Span;

/// A call's span and metrics, from its start to its outcome.
#[derive(Debug)]
pub(crate) struct Traced {
    pub(super) span: Span,
    start: Instant,
    call: record::Call,
}

impl Traced {
    /// Opens the span of `message`, a child of the current trace context.
    pub(super) fn start<M: Message>(message: &M) -> Self {
        let r = message.request();
        let span = if message.single_reply() {
            tracing::info_span!("warren.call", method = %r.method, address = %r.address,
                delivery = ?r.delivery, transport = Empty, correlation_id = Empty,
                peer = Empty, outcome = Empty, duration_us = Empty)
        } else {
            tracing::info_span!("warren.gather", method = %r.method, address = %r.address,
                transport = Empty, correlation_id = Empty, outcome = Empty, duration_us = Empty)
        };
        crate::tracecontext::follow_context(&span);
        Self {
            span,
            start: Instant::now(),
            call: record::Call::start(&r.method, !message.single_reply()),
        }
    }

    /// Records the call's outcome and duration.
    pub(super) fn end<T: Replies>(&self, result: &Result<T, Error>) {
        let elapsed = self.start.elapsed();
        self.span.record("duration_us", elapsed.as_micros() as u64);
        let (outcome, replies) = match result {
            Ok(r) => ("ok", r.replies()),
            Err(Error::Remote(status)) => (status.code().as_str(), None),
            Err(e) => (kind(e), None),
        };
        self.span.record("outcome", outcome);
        self.call.end(outcome, elapsed, replies);
    }
}

/// The `outcome` of a call that failed without a reply.
fn kind(e: &Error) -> &'static str {
    match e {
        Error::NoRoute { .. } => "no_route",
        Error::Timeout { .. } => "timeout",
        Error::ConnectionLost => "connection_lost",
        Error::Unavailable { .. } => "unavailable",
        Error::Blocked { .. } => "blocked",
        Error::BodyTooLarge { .. } => "body_too_large",
        Error::MulticastCall { .. } => "multicast_call",
        _ => "error",
    }
}
