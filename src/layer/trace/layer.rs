use super::ResponseFuture;
use crate::error::Error;
use crate::message::{Gather, Request};
use std::task::{Context as TaskContext, Poll};
use tower::{Layer, Service};
use tracing::field::Empty;

/// Runs each call in a span of its own: see [the module](super).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Trace<S> {
        Trace { inner }
    }
}

/// A transport whose calls are traced: see [`TraceLayer`].
#[derive(Clone, Debug)]
pub(crate) struct Trace<S> {
    inner: S,
}

impl<S> Trace<S> {
    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: Service<Request, Error = Error>> Service<Request> for Trace<S> {
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let span = tracing::info_span!("warren.call", method = %request.method,
            address = %request.address, delivery = ?request.delivery, transport = Empty,
            correlation_id = Empty, peer = Empty, outcome = Empty, duration_us = Empty);
        let inner = span.in_scope(|| self.inner.call(request));
        ResponseFuture::new(inner, span)
    }
}

impl<S: Service<Gather, Error = Error>> Service<Gather> for Trace<S> {
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, gather: Gather) -> Self::Future {
        let request = &gather.request;
        let span = tracing::info_span!("warren.gather", method = %request.method,
            address = %request.address, expect = ?gather.expect, transport = Empty,
            correlation_id = Empty, outcome = Empty, duration_us = Empty);
        let inner = span.in_scope(|| self.inner.call(gather));
        ResponseFuture::new(inner, span)
    }
}
