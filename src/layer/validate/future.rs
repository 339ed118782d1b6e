use crate::error::Error;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project! {
    /// A request sent on, or refused before it was.
    #[project = Proj]
    pub(crate) enum ResponseFuture<F> {
        Sent { #[pin] inner: F },
        // Boxed: the error is rare, and the future of every call carries
        // the room of its largest variant.
        Refused { error: Option<Box<Error>> },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn sent(inner: F) -> Self {
        Self::Sent { inner }
    }

    pub(super) fn refused(error: Error) -> Self {
        Self::Refused {
            error: Some(Box::new(error)),
        }
    }
}

impl<F, T> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, Error>>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Sent { inner } => inner.poll(cx),
            Proj::Refused { error } => {
                Poll::Ready(Err(*error.take().expect("polled after completion")))
            }
        }
    }
}
