use crate::error::Error;
use crate::message::Replies;
use crate::record;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;
use tracing::Span;

pin_project! {
    /// A call running in its span; records its outcome when it ends.
    pub(crate) struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: Span,
        start: Instant,
        call: record::Call,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, span: Span, call: record::Call) -> Self {
        Self {
            inner,
            span,
            start: Instant::now(),
            call,
        }
    }
}

impl<F, T> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, Error>>,
    T: Replies,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.span.enter();
            ready!(this.inner.poll(cx))
        };
        let span = &*this.span;
        let elapsed = this.start.elapsed();
        span.record("duration_us", elapsed.as_micros() as u64);
        let (outcome, replies) = match &result {
            Ok(r) => ("ok", r.replies()),
            Err(Error::Remote(status)) => (status.code().as_str(), None),
            Err(e) => (kind(e), None),
        };
        span.record("outcome", outcome);
        this.call.end(outcome, elapsed, replies);
        Poll::Ready(result)
    }
}

/// The `outcome` of a call that failed without a reply.
fn kind(e: &Error) -> &'static str {
    match e {
        Error::NoRoute { .. } => "no_route",
        Error::Timeout { .. } => "timeout",
        Error::ConnectionLost => "connection_lost",
        Error::Unavailable { .. } => "unavailable",
        Error::Blocked { .. } => "blocked",
        Error::BodyTooLarge { .. } => "body_too_large",
        Error::MulticastCall { .. } => "multicast_call",
        _ => "error",
    }
}
