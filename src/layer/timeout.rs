//! A timeout that travels with the request.

use crate::message::Message;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};
use tower::{Layer, Service};

/// Gives every call at most `timeout` from the moment it is made: the
/// request's deadline becomes the earlier of its own and now + `timeout`.
/// The transport sends the deadline with the request (the server cuts its
/// handler off then) and fails the call with [`Error::Timeout`] when it
/// passes. See [the module docs](super).
///
/// [`Error::Timeout`]: crate::Error::Timeout
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    /// Calls of at most `timeout`.
    #[must_use]
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            timeout: self.timeout,
        }
    }
}

/// A transport whose calls take at most a given time: see [`TimeoutLayer`].
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    timeout: Duration,
}

impl<S: Service<M>, M: Message> Service<M> for Timeout<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut message: M) -> S::Future {
        let at = Instant::now() + self.timeout;
        let request = message.request_mut();
        request.deadline = Some(request.deadline.map_or(at, |own| own.min(at)));
        self.inner.call(message)
    }
}
