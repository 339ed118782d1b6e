use crate::error::Error;
use crate::layer::deadline::Deadline;
use crate::layer::trace::Traced;
use crate::message::Replies;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

pin_project! {
    /// The future of a call through a [`Policy`](super::Policy).
    pub struct PolicyFuture<F> {
        #[pin]
        inner: Sent<F>,
        // None: an outer policy has the call already.
        applied: Option<Applied>,
    }
}

/// What the policy keeps of a call until its outcome.
struct Applied {
    traced: Traced,
    deadline: Deadline,
}

pin_project! {
    /// A request sent on, or refused before it was.
    #[project = SentProj]
    enum Sent<F> {
        Sent { #[pin] inner: F },
        // Boxed: the error is rare, and the future of every call carries
        // the room of its largest variant.
        Refused { error: Option<Box<Error>> },
    }
}

impl<F> PolicyFuture<F> {
    pub(super) fn applied(sent: Result<F, Error>, traced: Traced, deadline: Deadline) -> Self {
        let inner = match sent {
            Ok(inner) => Sent::Sent { inner },
            Err(error) => Sent::Refused {
                error: Some(Box::new(error)),
            },
        };
        Self {
            inner,
            applied: Some(Applied { traced, deadline }),
        }
    }

    pub(super) fn bypassed(inner: F) -> Self {
        Self {
            inner: Sent::Sent { inner },
            applied: None,
        }
    }
}

impl<F, T> Future for Sent<F>
where
    F: Future<Output = Result<T, Error>>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            SentProj::Sent { inner } => inner.poll(cx),
            SentProj::Refused { error } => {
                Poll::Ready(Err(*error.take().expect("polled after completion")))
            }
        }
    }
}

impl<F, T> Future for PolicyFuture<F>
where
    F: Future<Output = Result<T, Error>>,
    T: Replies,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(applied) = this.applied else {
            return this.inner.poll(cx);
        };
        let result = {
            let _entered = applied.traced.span.enter();
            ready!(this.inner.poll(cx))
        };
        let result = applied.deadline.outcome(result);
        applied.traced.end(&result);
        Poll::Ready(result)
    }
}

impl<F> std::fmt::Debug for PolicyFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyFuture").finish_non_exhaustive()
    }
}
