use crate::error::Error;
use crate::layer::{deadline, trace, validate};
use futures::future::Either;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

type Stacked<F> = trace::ResponseFuture<deadline::ResponseFuture<validate::ResponseFuture<F>>>;

pin_project! {
    /// The future of a call through a [`Policy`](super::Policy).
    pub struct PolicyFuture<F> {
        // Left: the call passes through the policy here; right: an outer
        // policy has it already.
        #[pin]
        inner: Either<Stacked<F>, F>,
    }
}

impl<F> PolicyFuture<F> {
    pub(super) fn stacked(inner: Stacked<F>) -> Self {
        Self {
            inner: Either::Left(inner),
        }
    }

    pub(super) fn bypassed(inner: F) -> Self {
        Self {
            inner: Either::Right(inner),
        }
    }
}

impl<F, T> Future for PolicyFuture<F>
where
    F: Future<Output = Result<T, Error>>,
    T: crate::message::Replies,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

impl<F> std::fmt::Debug for PolicyFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyFuture").finish_non_exhaustive()
    }
}
