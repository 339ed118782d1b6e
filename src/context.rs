//! The context of the call a handler is serving: deadline, caller, headers.
//!
//! Servers run each handler inside [`Context::scope`]; code in the handler
//! reads it with [`Context::current`]. Calls a handler makes inherit the
//! remaining deadline and the `traceparent` automatically, so a deadline set
//! by the first caller holds across every hop.

use crate::address::Peer;
use crate::headers::Headers;
use crate::message::Request;
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
        }
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
    /// earlier of the two deadlines wins and `traceparent` is carried on.
    pub fn propagate(request: &mut Request) {
        let _ = CURRENT.try_with(|ctx| {
            if let Some(inherited) = ctx.deadline {
                request.deadline = Some(match request.deadline {
                    Some(own) => own.min(inherited),
                    None => inherited,
                });
            }
            if request.headers.get("traceparent").is_none() {
                if let Some(tp) = ctx.headers.get("traceparent") {
                    request.headers.insert("traceparent", tp);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Address, ContentType};

    #[tokio::test]
    async fn deadlines_and_traceparent_propagate() {
        let outer = Instant::now() + Duration::from_secs(2);
        let ctx = Context {
            deadline: Some(outer),
            headers: [("traceparent", "00-abc-def-01")].into_iter().collect(),
            ..Context::default()
        };
        let mut req = Request::new(Address::all(), "m", ContentType::Json, "")
            .unwrap()
            .with_timeout(Duration::from_secs(60));
        ctx.scope(async { Context::propagate(&mut req) }).await;
        assert_eq!(req.deadline, Some(outer));
        assert_eq!(req.headers.get("traceparent"), Some("00-abc-def-01"));
        assert!(Context::current().is_none());
    }
}
