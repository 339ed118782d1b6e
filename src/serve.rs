//! The server layer: how every transport runs a handler.
//!
//! The AMQP node, the HTTP endpoint and the in-process [`Local`] transport
//! all answer a request through the same function ([`Serve`] wraps it), so
//! a handler sees the same [`Context`], is cut off at the same deadline and
//! fails with the same statuses whichever way the request came:
//!
//! - the handler runs inside the request's [`Context`] ([`Context::current`]),
//!   in a `warren.handle` span of the trace its `traceparent` names;
//! - when the request's deadline passes first, the handler is dropped and
//!   the reply is `deadline_exceeded`;
//! - a panic is caught and answered `internal` with the message
//!   [`PANIC_MESSAGE`]; the panic's own text is logged with the method, never
//!   sent (it may say more than a caller in another service should see);
//! - an [`Error`] from the handler becomes its status ([`Error::to_status`]).
//!
//! Generated servers only decode the arguments, dispatch on the method and
//! encode the result; the policy above lives here alone.
//!
//! [`Local`]: crate::Local

use crate::context::Context;
use crate::error::Error;
use crate::message::{Request, Response};
use crate::status::{Code, Status};
use futures::future::BoxFuture;
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::task::{Context as TaskContext, Poll};
use tower::{Layer, Service, ServiceExt};
use tracing::Instrument as _;

/// A node's handler, whichever transport feeds it: every request goes
/// through it.
pub(crate) type Handler = tower::util::BoxCloneSyncService<Request, Response, Error>;

/// The message of the `internal` status a panicking handler is answered with.
pub const PANIC_MESSAGE: &str = "the handler panicked";

/// Answers `request` with `handler` under the server policy (module docs).
/// Never fails: every outcome is a [`Response`].
pub(crate) async fn answer<S>(handler: S, request: Request) -> Response
where
    S: Service<Request, Response = Response, Error = Error>,
{
    let ct = request.content_type;
    let deadline = request.deadline;
    let mut ctx = Context::from_request(&request);
    let span = tracing::info_span!("warren.handle", method = %ctx.method);
    ctx.trace = crate::tracecontext::adopt(ctx.trace, &span);
    let method = ctx.method.clone();
    let handling = crate::record::Handling::start(&method);
    let work = ctx.scope(handler.oneshot(request)).instrument(span);
    let work = AssertUnwindSafe(work).catch_unwind();
    let result = match deadline {
        Some(at) => tokio::time::timeout_at(at.into(), work).await.ok(),
        None => Some(work.await),
    };
    let resp = match result {
        Some(Ok(Ok(resp))) => resp,
        Some(Ok(Err(e))) => Response::error(ct, &e.to_status()),
        Some(Err(panic)) => {
            tracing::error!(%method, panic = panic_text(&*panic), "handler panicked");
            Response::error(ct, &Status::new(Code::Internal, PANIC_MESSAGE))
        }
        None => {
            let why = "the deadline passed while the handler ran";
            Response::error(ct, &Status::new(Code::DeadlineExceeded, why))
        }
    };
    handling.end(resp.status.as_str());
    resp
}

/// A panic's message, for the log.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string payload")
}

/// A [`Layer`] that runs a handler under the server policy (module docs):
/// what the transports wrap every handler in. Wrap your own handler in it
/// to drive it directly, as a transport would.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServeLayer;

impl<S> Layer<S> for ServeLayer {
    type Service = Serve<S>;

    fn layer(&self, inner: S) -> Serve<S> {
        Serve { inner }
    }
}

/// A handler run under the server policy: see [`ServeLayer`]. Its calls
/// never fail; a failure is a [`Response`] with an error status.
#[derive(Clone, Debug)]
pub struct Serve<S> {
    inner: S,
}

impl<S> Serve<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S> Service<Request> for Serve<S>
where
    S: Service<Request, Response = Response, Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Response, Error>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Error>> {
        // Readiness is the handler's, awaited inside the call, under the
        // request's deadline.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        Box::pin(answer(self.inner.clone(), request).map(Ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Address, ContentType};
    use std::time::{Duration, Instant};

    fn request(method: &str) -> Request {
        Request::new(Address::all(), method, ContentType::Json, "null").unwrap()
    }

    #[tokio::test]
    async fn panics_errors_and_deadlines_become_statuses() {
        let handler = tower::service_fn(|req: Request| async move {
            match req.method.as_str() {
                "panic" => panic!("secret detail"),
                "fail" => Err(Error::Unavailable {
                    reason: "busy".into(),
                }),
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok(Response::ok(ContentType::Json, "1"))
                }
                _ => {
                    let ctx = Context::current().expect("the handler runs in its context");
                    Ok(Response::ok(ContentType::Json, ctx.method))
                }
            }
        });
        let mut serve = ServeLayer.layer(handler);

        let resp = serve.call(request("who")).await.unwrap();
        assert_eq!((resp.status, &resp.body[..]), (Code::Ok, &b"who"[..]));

        let resp = serve.call(request("panic")).await.unwrap();
        assert_eq!(resp.status, Code::Internal);
        let error = resp.into_result().unwrap_err();
        assert_eq!(error.status().unwrap().message(), PANIC_MESSAGE);

        let resp = serve.call(request("fail")).await.unwrap();
        assert_eq!(resp.status, Code::Unavailable);

        let started = Instant::now();
        let slow = request("slow").with_timeout(Duration::from_millis(50));
        let resp = serve.call(slow).await.unwrap();
        assert_eq!(resp.status, Code::DeadlineExceeded);
        assert!(started.elapsed() < Duration::from_secs(4));
    }
}
