use super::ResponseFuture;
use crate::error::Error;
use crate::message::Message;
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

impl<S, M> Service<M> for Trace<S>
where
    S: Service<M, Error = Error>,
    S::Response: crate::message::Replies,
    M: Message,
{
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, message: M) -> Self::Future {
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
        let call = crate::record::Call::start(&r.method, !message.single_reply());
        let inner = span.in_scope(|| self.inner.call(message));
        ResponseFuture::new(inner, span, call)
    }
}
