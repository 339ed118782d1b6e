//! The context of the call a handler is serving: deadline, caller, headers.
//!
//! Servers run each handler inside [`Context::scope`]; code in the handler
//! reads it with [`Context::current`]. Calls a handler makes inherit the
//! remaining deadline and the trace automatically, so a deadline set by the
//! first caller holds across every hop, and every hop is a span of one
//! trace ([`TraceContext`]).

use crate::address::Peer;
use crate::headers::Headers;
use crate::message::{setters, Request};
use crate::tracecontext::{TraceContext, TRACEPARENT};
use std::future::Future;
use std::time::{Duration, Instant};

tokio::task_local! {
    static CURRENT: Context;
}

/// What a handler knows about the call it is serving.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Context {
    /// When the caller stops waiting, if it said.
    pub deadline: Option<Instant>,
    /// Who called.
    pub caller: Peer,
    /// The method being served.
    pub method: String,
    /// The request's application headers.
    pub headers: Headers,
    /// The request's message id.
    pub message_id: Option<String>,
    /// The trace this work belongs to and its span (the parent being the
    /// sender's, from the request's `traceparent`); `None` when the
    /// request carried none and nothing started a trace.
    pub trace: Option<TraceContext>,
}

impl Context {
    /// The context of a request being served.
    #[must_use]
    pub fn from_request(request: &Request) -> Self {
        Self {
            deadline: request.deadline,
            caller: request.from.clone(),
            method: request.method.clone(),
            headers: request.headers.clone(),
            message_id: request.message_id.clone(),
            trace: request
                .headers
                .get(TRACEPARENT)
                .and_then(|tp| TraceContext::child_of(tp).ok()),
        }
    }

    setters! {
        /// This context in trace `trace`: run code in [`Context::scope`] of
        /// `Context::default().with_trace(TraceContext::new_root())` to start
        /// a trace its calls and events carry on.
        #[must_use]
        fn with_trace(trace: TraceContext) => Some(trace);
    }

    /// The context of the call being served by the current task, if any.
    #[must_use]
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Time left before the caller's deadline, if it set one.
    #[must_use]
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Runs `fut` with this context as [`Context::current`].
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }

    /// Applies the current context (if any) to an outgoing request: the
    /// earlier of the two deadlines wins, and the request carries the
    /// current trace on (a `traceparent` naming the sending span) unless
    /// it has one of its own.
    pub fn propagate(request: &mut Request) {
        if let Ok(Some(inherited)) = CURRENT.try_with(|ctx| ctx.deadline) {
            request.deadline = Some(request.deadline.map_or(inherited, |own| own.min(inherited)));
        }
        if request.headers.get(TRACEPARENT).is_none() {
            if let Some(tp) = crate::tracecontext::outgoing() {
                request.headers.insert(TRACEPARENT, tp);
            }
        }
    }
}

/// The trace of the work the current task runs, if any.
pub(crate) fn current_trace() -> Option<TraceContext> {
    CURRENT.try_with(|ctx| ctx.trace).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Address, ContentType};

    #[tokio::test]
    async fn deadlines_and_traces_propagate() {
        let outer = Instant::now() + Duration::from_secs(2);
        let received = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let request = || Request::new(Address::all(), "m", ContentType::Json, "").unwrap();
        let incoming = request().with_header(TRACEPARENT, received);
        let mut ctx = Context::from_request(&incoming);
        ctx.deadline = Some(outer);
        let trace = ctx.trace.expect("the request's traceparent is read");
        assert_eq!(trace.parent_id().unwrap().to_string(), "00f067aa0ba902b7");
        let mut req = request().with_timeout(Duration::from_secs(60));
        ctx.scope(async { Context::propagate(&mut req) }).await;
        assert_eq!(req.deadline, Some(outer));
        assert_eq!(
            req.headers.get(TRACEPARENT),
            Some(trace.traceparent().as_str())
        );
        assert!(Context::current().is_none());

        let mut untraced = request();
        Context::propagate(&mut untraced);
        assert_eq!(untraced.headers.get(TRACEPARENT), None);
    }
}
