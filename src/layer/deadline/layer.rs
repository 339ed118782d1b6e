use super::ResponseFuture;
use crate::context::Context;
use crate::error::Error;
use crate::message::{Message, Request};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};
use tower::{Layer, Service};

/// Fixes each call's deadline: see [the module](super).
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeadlineLayer {
    default: Duration,
}

impl DeadlineLayer {
    /// Calls that set no deadline get `default` from the moment they are made.
    pub(crate) fn new(default: Duration) -> Self {
        Self { default }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            default: self.default,
        }
    }
}

/// A transport whose calls all carry a deadline: see [`DeadlineLayer`].
#[derive(Clone, Debug)]
pub(crate) struct Deadline<S> {
    inner: S,
    default: Duration,
}

impl<S> Deadline<S> {
    /// The request's deadline, fixed: inherited, its own, or the default.
    fn fix(&self, request: &mut Request) -> Instant {
        Context::propagate(request);
        *request
            .deadline
            .get_or_insert_with(|| Instant::now() + self.default)
    }
}

impl<S: Service<M, Error = Error>, M: Message> Service<M> for Deadline<S> {
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut message: M) -> Self::Future {
        let deadline = self.fix(message.request_mut());
        ResponseFuture::new(self.inner.call(message), deadline)
    }
}
