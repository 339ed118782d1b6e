//! The server's side: decoding arguments, running a handler in the call's
//! [`Context`], surviving its panics, and encoding its result as a reply in
//! the request's codec.

use crate::codec::ContentType;
use crate::context::Context;
use crate::error::Error;
use crate::message::{Request, Response};
use crate::status::{Code, Status};
use futures::future::{self, BoxFuture, FutureExt};
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;

/// A handler's result, turned into a reply.
pub trait Reply {
    /// The reply carrying this result, encoded with `content_type`.
    fn into_response(self, content_type: ContentType) -> Response;
}

/// The result of a method that returns a plain value (or nothing).
#[derive(Debug)]
pub struct Value<T>(pub T);

/// The result of a method that returns `Result<T, E>`: an `Err` is sent as
/// a status with code `application` and the error value as its details.
#[derive(Debug)]
pub struct Fallible<T, E>(pub Result<T, E>);

impl<T: Serialize> Reply for Value<T> {
    fn into_response(self, content_type: ContentType) -> Response {
        Response::encode(content_type, &self.0)
            .unwrap_or_else(|e| internal(content_type, &format!("cannot encode the result: {e}")))
    }
}

impl<T: Serialize, E: Serialize + Display> Reply for Fallible<T, E> {
    fn into_response(self, content_type: ContentType) -> Response {
        match self.0 {
            Ok(value) => Value(value).into_response(content_type),
            Err(err) => match Status::application(&err, content_type) {
                Ok(status) => Response::error(content_type, &status),
                Err(e) => internal(
                    content_type,
                    &format!("cannot encode the error `{err}`: {e}"),
                ),
            },
        }
    }
}

fn internal(content_type: ContentType, message: &str) -> Response {
    Response::error(content_type, &Status::new(Code::Internal, message))
}

/// Serves one call: decodes the arguments `A` from the request body, then
/// runs `handler` inside [`Context::scope`], catching its panics.
///
/// Never fails and never panics: undecodable arguments give a
/// `bad_request` reply, a panic an `internal` one.
pub fn serve<A, F, Fut>(
    request: &Request,
    handler: F,
) -> BoxFuture<'static, Result<Response, Error>>
where
    A: DeserializeOwned + Send + 'static,
    F: FnOnce(A) -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: Reply,
{
    let content_type = request.content_type;
    match request.decode::<A>() {
        Ok(args) => run(
            request,
            Box::pin(async move { handler(args).await.into_response(content_type) }),
        ),
        Err(e) => bad_arguments(request, &e),
    }
}

/// The non-generic part of [`serve`].
fn run(
    request: &Request,
    handler: BoxFuture<'static, Response>,
) -> BoxFuture<'static, Result<Response, Error>> {
    let content_type = request.content_type;
    let method = request.method.clone();
    // The node and the HTTP server already run handlers in the request's
    // context; the in-process transport and direct callers do not.
    let work: BoxFuture<'static, Response> = if Context::serving(request) {
        handler
    } else {
        Box::pin(Context::from_request(request).scope(handler))
    };
    Box::pin(async move {
        match AssertUnwindSafe(work).catch_unwind().await {
            Ok(reply) => Ok(reply),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("a non-string payload");
                // The panic message stays here: it may say more than a
                // caller in another service should see.
                tracing::error!(%method, panic = what, "handler panicked");
                Ok(internal(content_type, "handler panicked"))
            }
        }
    })
}

fn bad_arguments(request: &Request, error: &Error) -> BoxFuture<'static, Result<Response, Error>> {
    let status = Status::new(
        Code::BadRequest,
        format!("bad arguments for `{}`: {error}", request.method),
    );
    Box::pin(future::ready(Ok(Response::error(
        request.content_type,
        &status,
    ))))
}

/// The reply to a method the service does not have.
pub fn unknown_method(
    request: &Request,
    service: &str,
    methods: &[&str],
) -> BoxFuture<'static, Result<Response, Error>> {
    let status = Status::new(
        Code::UnknownMethod,
        format!(
            "service `{service}` has no method `{}`; it has: {}",
            request.method,
            methods.join(", ")
        ),
    );
    Box::pin(future::ready(Ok(Response::error(
        request.content_type,
        &status,
    ))))
}
