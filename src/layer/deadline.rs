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

use crate::context::Context;
use crate::error::Error;
use crate::message::Request;
use crate::status::Code;
use std::time::{Duration, Instant};

/// How close to the caller's deadline a `deadline_exceeded` reply counts as
/// that deadline passing: more than the wire's rounding to whole
/// milliseconds and a timer's resolution.
const SLACK: Duration = Duration::from_millis(10);

/// A call's deadline, and the time it was given when it was fixed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline {
    at: Instant,
    after: Duration,
}

impl Deadline {
    /// Fixes `request`'s deadline: inherited, its own, or `default` from now.
    pub(super) fn fix(request: &mut Request, default: Duration) -> Self {
        Context::propagate(request);
        let now = Instant::now();
        let at = *request.deadline.get_or_insert(now + default);
        Self {
            at,
            after: at.saturating_duration_since(now),
        }
    }

    /// `result`, with a `deadline_exceeded` reply at the deadline as
    /// [`Error::Timeout`].
    pub(super) fn outcome<T>(self, result: Result<T, Error>) -> Result<T, Error> {
        match result {
            Err(Error::Remote(status))
                if *status.code() == Code::DeadlineExceeded
                    && Instant::now() + SLACK >= self.at =>
            {
                Err(Error::Timeout { after: self.after })
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::layer::PolicyLayer;
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
        PolicyLayer::default().layer(server).oneshot(request).await
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
