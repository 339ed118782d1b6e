//! The call's deadline, fixed once: the earlier of the request's own and
//! that of the call being served ([`Context::propagate`]), else the
//! transport's default. Every transport below enforces it and sends it
//! with the request, so the server stops when the caller does.
//!
//! A caller sees one outcome when its deadline passes, [`Error::Timeout`]:
//! the server cuts its handler off at the same deadline and answers
//! `deadline_exceeded`, and that reply can come in just before the caller's
//! own timer fires (the deadline travels in whole milliseconds, and a busy
//! caller handles its reply before its timer). Such a reply, within
//! [`SLACK`] of the deadline, is the deadline passing, and reported as
//! such. A `deadline_exceeded` long before the deadline (a handler whose
//! own shorter call timed out) stays [`Error::Remote`].
//!
//! [`Context::propagate`]: crate::Context::propagate
//! [`Error::Timeout`]: crate::Error::Timeout
//! [`Error::Remote`]: crate::Error::Remote

mod future;
mod layer;

pub(crate) use future::ResponseFuture;
pub(crate) use layer::DeadlineLayer;

use std::time::Duration;

/// How close to the caller's deadline a `deadline_exceeded` reply counts as
/// that deadline passing: more than the wire's rounding to whole
/// milliseconds and a timer's resolution.
pub(crate) const SLACK: Duration = Duration::from_millis(10);

#[cfg(test)]
mod tests {
    use super::DeadlineLayer;
    use crate::{Address, Code, ContentType, Error, Request, Response, Status};
    use std::time::{Duration, Instant};
    use tower::{service_fn, Layer, ServiceExt};

    /// A server that answers `deadline_exceeded` `early` before the
    /// deadline, as a node whose copy of the deadline is a little ahead.
    async fn cut_off(early: Duration, timeout: Duration) -> Result<Response, Error> {
        let server = service_fn(move |request: Request| async move {
            let at = request.deadline.unwrap() - early;
            tokio::time::sleep_until(at.into()).await;
            Err::<Response, _>(Error::Remote(Status::new(
                Code::DeadlineExceeded,
                "the deadline passed while the handler ran",
            )))
        });
        let request = Request::new(Address::any("t").unwrap(), "T.m", ContentType::Json, "")
            .unwrap()
            .with_timeout(timeout);
        DeadlineLayer::new(Duration::from_secs(30))
            .layer(server)
            .oneshot(request)
            .await
    }

    #[tokio::test]
    async fn the_servers_deadline_exceeded_at_the_deadline_is_a_timeout() {
        for early in [Duration::ZERO, Duration::from_millis(2)] {
            let err = cut_off(early, Duration::from_millis(100))
                .await
                .unwrap_err();
            assert!(
                matches!(err, Error::Timeout { after } if after <= Duration::from_millis(100)),
                "{early:?} early: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_deadline_exceeded_long_before_the_deadline_stays_remote() {
        let start = Instant::now();
        let err = cut_off(Duration::from_secs(5), Duration::from_secs(6))
            .await
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(
            matches!(&err, Error::Remote(s) if *s.code() == Code::DeadlineExceeded),
            "{err:?}"
        );
    }
}
