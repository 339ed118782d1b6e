use super::SLACK;
use crate::error::Error;
use crate::status::Code;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

pin_project! {
    /// A call under a deadline: a `deadline_exceeded` reply at the deadline
    /// becomes [`Error::Timeout`], as the caller's own timer would.
    pub(crate) struct ResponseFuture<F> {
        #[pin]
        inner: F,
        deadline: Instant,
        after: Duration,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, deadline: Instant) -> Self {
        let after = deadline.saturating_duration_since(Instant::now());
        Self {
            inner,
            deadline,
            after,
        }
    }
}

impl<F, T> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, Error>>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        Poll::Ready(match ready!(this.inner.poll(cx)) {
            Err(Error::Remote(status))
                if *status.code() == Code::DeadlineExceeded
                    && Instant::now() + SLACK >= *this.deadline =>
            {
                Err(Error::Timeout { after: *this.after })
            }
            other => other,
        })
    }
}
