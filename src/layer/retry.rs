//! Which failures a caller may retry, and how long it waits in between.

use crate::config::Backoff;
use crate::error::Error;
use crate::message::{Request, Response};
use std::time::{Duration, Instant};
use tower::retry::Policy;

/// A `tower::retry::Policy` that retries only what cannot run a call twice,
/// with exponential backoff and jitter, never past the call's deadline.
///
/// | failure | retried |
/// | --- | --- |
/// | [`Error::NoRoute`]: nobody was listening | always |
/// | [`Error::Unavailable`]: the request was not sent | always |
/// | [`Error::ConnectionLost`]: sent, then the connection broke | only for idempotent requests ([`Request::idempotent`], `#[warren(idempotent)]`) |
/// | anything else (a reply with an error status, a timeout, ...) | never |
///
/// Use it with `tower::retry::RetryLayer`; put a deadline outside it (the
/// request's own, or [`TimeoutLayer`](super::TimeoutLayer)) so that every
/// attempt shares one deadline: see [the module docs](super).
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    backoff: Backoff,
    attempts: u32,
    done: u32,
}

impl Default for RetryPolicy {
    /// Up to 3 more attempts, after 50 ms, then 100 ms, then 200 ms (each
    /// with jitter), capped at 1 s.
    fn default() -> Self {
        Self::new(
            3,
            Backoff {
                initial: Duration::from_millis(50),
                factor: 2.0,
                max: Duration::from_secs(1),
                max_attempts: None,
            },
        )
    }
}

impl RetryPolicy {
    /// Up to `attempts` more attempts after the first, waiting as `backoff`
    /// says before each (its `max_attempts` is not used).
    #[must_use]
    pub fn new(attempts: u32, backoff: Backoff) -> Self {
        Self {
            backoff,
            attempts,
            done: 0,
        }
    }

    /// Whether `error` may be retried for `request`.
    #[must_use]
    pub fn is_safe(request: &Request, error: &Error) -> bool {
        match error {
            Error::NoRoute { .. } | Error::Unavailable { .. } => true,
            Error::ConnectionLost => request.idempotent,
            _ => false,
        }
    }
}

impl Policy<Request, Response, Error> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        request: &mut Request,
        result: &mut Result<Response, Error>,
    ) -> Option<Self::Future> {
        let Err(error) = result else { return None };
        if self.done >= self.attempts || !Self::is_safe(request, error) {
            return None;
        }
        let delay = self.backoff.delay(self.done);
        if request
            .deadline
            .is_some_and(|deadline| Instant::now() + delay >= deadline)
        {
            // The wait alone would use up the deadline: keep the error.
            return None;
        }
        self.done += 1;
        tracing::debug!(method = %request.method, error = %error, attempt = self.done, ?delay, "retrying");
        Some(tokio::time::sleep(delay))
    }

    fn clone_request(&mut self, request: &Request) -> Option<Request> {
        Some(request.clone())
    }
}
