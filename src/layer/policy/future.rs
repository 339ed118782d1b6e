use crate::error::Error;
use crate::layer::{deadline, trace, validate};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

type Stacked<F> = trace::ResponseFuture<deadline::ResponseFuture<validate::ResponseFuture<F>>>;

pin_project! {
    /// The future of a call through a [`Policy`](super::Policy).
    pub struct PolicyFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        // The call passes through the policy here.
        Stacked { #[pin] inner: Stacked<F> },
        // An outer policy has it already.
        Bypassed { #[pin] inner: F },
    }
}

impl<F> PolicyFuture<F> {
    pub(super) fn stacked(inner: Stacked<F>) -> Self {
        Self {
            kind: Kind::Stacked { inner },
        }
    }

    pub(super) fn bypassed(inner: F) -> Self {
        Self {
            kind: Kind::Bypassed { inner },
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
        match self.project().kind.project() {
            KindProj::Stacked { inner } => inner.poll(cx),
            KindProj::Bypassed { inner } => inner.poll(cx),
        }
    }
}

impl<F> std::fmt::Debug for PolicyFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyFuture").finish_non_exhaustive()
    }
}
