//! The server's side of generated code: decoding arguments, dispatching on
//! the method and encoding the result as a reply in the request's codec.
//! Context, deadline and panics are the transports' server layer
//! ([`crate::serve`]).

use crate::codec::ContentType;
use crate::error::Error;
use crate::message::{Request, Response};
use crate::status::{Code, Status};
use futures::future::{self, BoxFuture};
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Display;
use std::future::Future;

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
/// runs `handler` and encodes its result.
///
/// Never fails: undecodable arguments give a `bad_request` reply.
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
        Ok(args) => Box::pin(async move { Ok(handler(args).await.into_response(content_type)) }),
        Err(e) => bad_arguments(request, &e),
    }
}

fn bad_arguments(request: &Request, error: &Error) -> BoxFuture<'static, Result<Response, Error>> {
    let message = format!("bad arguments for `{}`: {error}", request.method);
    refuse(request, Code::BadRequest, message)
}

/// The reply to a method the service does not have.
pub fn unknown_method(
    request: &Request,
    service: &str,
    methods: &[&str],
) -> BoxFuture<'static, Result<Response, Error>> {
    let message = format!(
        "service `{service}` has no method `{}`; it has: {}",
        request.method,
        methods.join(", ")
    );
    refuse(request, Code::UnknownMethod, message)
}

/// An error reply to `request`, ready at once.
fn refuse(
    request: &Request,
    code: Code,
    message: String,
) -> BoxFuture<'static, Result<Response, Error>> {
    let response = Response::error(request.content_type, &Status::new(code, message));
    Box::pin(future::ready(Ok(response)))
}
