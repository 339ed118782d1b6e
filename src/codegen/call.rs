//! The caller's side: options of a generated client, building its
//! requests, sending them over any transport and decoding the replies.

use crate::address::{Address, Peer, ServiceType};
use crate::codec::{CodecError, ContentType};
use crate::error::Error;
use crate::headers::Headers;
use crate::message::{setters, Delivery, Gather, Request, Response};
use crate::status::Code;
use bytes::Bytes;
use futures::future::Either;
use futures::FutureExt;
use serde::{de::DeserializeOwned, Serialize};
use std::future::Future;
use std::time::Duration;
use tower::{Service, ServiceExt};

/// What a generated client puts on every request it sends.
#[derive(Clone, Debug)]
pub struct CallOptions {
    service: ServiceType,
    address: Address,
    timeout: Option<Duration>,
    headers: Headers,
    content_type: ContentType,
    /// Whether these are a gather's options (many replies).
    gather: bool,
}

impl CallOptions {
    /// Calls to any one instance of `service`, MessagePack, no headers, the
    /// transport's default deadline.
    ///
    /// # Panics
    /// If `service` is not a valid [`ServiceType`]; the macro checks the
    /// name at compile time, so generated code never passes a bad one.
    #[must_use]
    pub fn new(service: &'static str) -> Self {
        let service =
            ServiceType::new(service).expect("service type checked by #[warren::service]");
        Self {
            address: Address::Any(service.clone()),
            service,
            timeout: None,
            headers: Headers::new(),
            content_type: ContentType::default(),
            gather: false,
        }
    }

    /// The same options, addressed to every instance of the service: where
    /// a typed gather goes unless told otherwise.
    #[must_use]
    pub fn every(mut self) -> Self {
        self.address = Address::Every(self.service.clone());
        self.gather = true;
        self
    }

    /// The service type these calls are for.
    #[must_use]
    pub fn service(&self) -> &ServiceType {
        &self.service
    }

    setters! {
        /// Sends to `address` instead.
        #[must_use]
        fn address(address: Address);
        /// Gives each call `timeout` from the moment it is made.
        #[must_use]
        fn timeout(timeout: Duration) => Some(timeout);
        /// Encodes requests (and so gets replies) in `content_type`.
        #[must_use]
        fn content_type(content_type: ContentType);
    }

    /// Adds a header to every request.
    #[must_use]
    pub fn header(mut self, name: String, value: String) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// The request for one call of `method` with `args` (a map of argument
    /// names to values). The deadline starts now; the transport's policy
    /// carries over the deadline and `traceparent` of the call being
    /// served (if any).
    ///
    /// # Errors
    /// [`Error::MulticastCall`] for a single-reply call to an `every`/`all`
    /// address, [`Error::Codec`] if `args` cannot be encoded.
    pub fn request<A: Serialize>(
        &self,
        method: &'static str,
        idempotent: bool,
        oneway: bool,
        args: &A,
    ) -> Result<Request, Error> {
        if !self.gather {
            crate::layer::single_reply(&self.address)?;
        }
        let mut request = self.build(method, idempotent, self.content_type.encode(args))?;
        if oneway {
            request.delivery = Delivery::OneWay;
        }
        Ok(request)
    }

    fn build(
        &self,
        method: &'static str,
        idempotent: bool,
        body: Result<Bytes, CodecError>,
    ) -> Result<Request, Error> {
        let mut request = Request::new(self.address.clone(), method, self.content_type, body?)?;
        request.headers = self.headers.clone();
        request.idempotent = idempotent;
        if let Some(timeout) = self.timeout {
            request = request.with_timeout(timeout);
        }
        Ok(request)
    }
}

/// Sends `request` over `transport` (waiting for it to be ready) and
/// decodes the reply with `decode`.
///
/// Not an `async fn`: one keeps its arguments for as long as it runs, and a
/// pending call would carry its request twice (here and in the transport's
/// future). tower's `Oneshot` holds the request only until the transport
/// takes it.
///
/// # Errors
/// Whatever building the request, the transport or `decode` reported.
pub fn unary<T, R>(
    transport: T,
    request: Result<Request, Error>,
    decode: fn(Result<Response, Error>) -> Result<R, Error>,
) -> impl Future<Output = Result<R, Error>>
where
    T: Service<Request, Response = Response, Error = Error>,
{
    match request {
        Ok(request) => Either::Left(transport.oneshot(request).map(decode)),
        Err(error) => Either::Right(std::future::ready(Err(error))),
    }
}

/// Sends `request` to many instances and decodes each reply with `decode`,
/// keeping who sent it.
///
/// # Errors
/// Whatever building the request or the transport reported; a failure of
/// one instance is in that instance's entry instead.
pub async fn gather<T, R>(
    transport: T,
    service: ServiceType,
    request: Result<Request, Error>,
    expect: Option<usize>,
    decode: fn(Result<Response, Error>) -> Result<R, Error>,
) -> Result<Vec<(Peer, Result<R, Error>)>, Error>
where
    T: Service<Gather, Response = Vec<Response>, Error = Error>,
{
    let gather = Gather {
        request: request?,
        expect,
    };
    let replies = transport.oneshot(gather).await?;
    Ok(replies
        .into_iter()
        .filter(|reply| !other_service(&service, reply))
        .map(|reply| (reply.from.clone(), decode(reply.into_result())))
        .collect())
}

/// Whether `reply` is an instance of another service type saying it does
/// not have the method: what every other service answers to a typed gather
/// sent to [`Address::All`]. Such a reply is not a failure of this service,
/// so the gather leaves it out. An instance of this service answering
/// `unknown_method` (another version of it) stays in, as the error it is.
fn other_service(service: &ServiceType, reply: &Response) -> bool {
    reply.status == Code::UnknownMethod && reply.from.service.as_ref().is_some_and(|s| s != service)
}

/// Decodes the reply of a method that returns a plain value.
///
/// # Errors
/// The transport's error, or [`Error::Codec`] for a body that is not an `R`.
pub fn decode<R: DeserializeOwned>(reply: Result<Response, Error>) -> Result<R, Error> {
    reply?.decode()
}

/// Decodes the reply of a method that returns `Result<R, E>`: an
/// [`Error::Remote`] with code `application` whose details are an `E` is
/// the method's own error, `Ok(Err(e))`; anything else stays an [`Error`].
///
/// # Errors
/// The transport's error (including an application error whose details are
/// not an `E`, kept as the [`Error::Remote`] it came as), or
/// [`Error::Codec`] for a body that is not an `R`.
pub fn decode_fallible<R: DeserializeOwned, E: DeserializeOwned>(
    reply: Result<Response, Error>,
) -> Result<Result<R, E>, Error> {
    match reply {
        Ok(reply) => reply.decode().map(Ok),
        Err(Error::Remote(status)) if *status.code() == Code::Application => {
            match status.details::<E>() {
                Ok(Some(err)) => Ok(Err(err)),
                _ => Err(Error::Remote(status)),
            }
        }
        Err(e) => Err(e),
    }
}

/// The reply of a oneway method: only whether the server took the call.
///
/// # Errors
/// The transport's error.
pub fn decode_unit(reply: Result<Response, Error>) -> Result<(), Error> {
    reply.map(drop)
}
