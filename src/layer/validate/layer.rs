use super::{body_size, single_reply, ResponseFuture};
use crate::error::Error;
use crate::message::Message;
use std::task::{Context as TaskContext, Poll};
use tower::{Layer, Service};

/// Refuses what cannot be sent: see [the module](super).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ValidateLayer {
    max_body: usize,
}

impl ValidateLayer {
    /// Refuses request bodies over `max_body` bytes.
    pub(crate) fn new(max_body: usize) -> Self {
        Self { max_body }
    }
}

impl<S> Layer<S> for ValidateLayer {
    type Service = Validate<S>;

    fn layer(&self, inner: S) -> Validate<S> {
        Validate {
            inner,
            max_body: self.max_body,
        }
    }
}

/// A transport that is given only what it can send: see [`ValidateLayer`].
#[derive(Clone, Debug)]
pub(crate) struct Validate<S> {
    inner: S,
    max_body: usize,
}

impl<S: Service<M, Error = Error>, M: Message> Service<M> for Validate<S> {
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, message: M) -> Self::Future {
        let request = message.request();
        // A one-way request awaits no reply, so any address takes it.
        let one_reply = request.delivery != crate::message::Delivery::OneWay;
        let checked = if message.single_reply() && one_reply {
            single_reply(&request.address)
        } else {
            Ok(())
        };
        match checked.and_then(|()| body_size(request.body.len(), self.max_body)) {
            Ok(()) => ResponseFuture::sent(self.inner.call(message)),
            Err(e) => ResponseFuture::refused(e),
        }
    }
}
