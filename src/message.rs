//! The request and response every transport carries.
//!
//! `Request -> Response` is the pair behind every [`tower::Service`] in
//! warren: the AMQP caller, the in-process transport, and server handlers.
//! Multicast calls use [`Gather`], answered by one [`Response`] per sender.

use crate::address::{check_method, Address, Peer};
use crate::codec::ContentType;
use crate::error::Error;
use crate::headers::Headers;
use crate::status::{Code, Status};
use bytes::Bytes;
use serde::Serialize;
use std::time::{Duration, Instant};

/// How a [`Request`] is delivered. Every transport takes all three
/// through the same `call`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Delivery {
    /// A call: one reply is awaited, until the deadline. Over AMQP the
    /// request is transient and not confirmed (the cheapest).
    #[default]
    Call,
    /// A call published persistent (AMQP delivery mode 2) and confirmed by
    /// the broker: queued on disk when its queue is durable, so a broker
    /// restart does not lose it before a server takes it. Slower.
    PersistentCall,
    /// No reply is wanted: the transport returns an empty ok [`Response`]
    /// once the request is delivered. Over AMQP it is published persistent
    /// with no `reply_to`, and `Ok` comes once the broker confirmed it; a
    /// send interrupted by a lost connection is published again, with the
    /// same `message_id`, as soon as the connection is back, until the
    /// deadline: it may arrive twice, and after `Ok` it is never lost. In
    /// process, the handler is started and not awaited.
    OneWay,
}

impl Delivery {
    /// Whether the request is published persistent and confirmed.
    #[must_use]
    pub const fn is_persistent(self) -> bool {
        matches!(self, Self::PersistentCall | Self::OneWay)
    }
}

/// A request: an encoded body for a method at an address.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Request {
    /// Who the request is for.
    pub address: Address,
    /// The method name on the wire, such as `Calculator.add`.
    pub method: String,
    /// The encoded arguments.
    pub body: Bytes,
    /// How `body` is encoded; replies use the same codec.
    pub content_type: ContentType,
    /// Application headers (`traceparent` and the like).
    pub headers: Headers,
    /// When the caller stops waiting. `None` takes the client's default.
    pub deadline: Option<Instant>,
    /// How it is delivered: a call, a persistent call, or one-way.
    pub delivery: Delivery,
    /// Whether running the method twice is harmless; lets a call that may
    /// have reached the broker be retried, or sent again over another
    /// transport. Separate from [`Delivery`]: it says what the method
    /// does, not how the request travels, and holds for every delivery.
    pub idempotent: bool,
    /// Who sent it (filled in on the receiving side).
    pub from: Peer,
    /// The unique id of this message: filled in on the receiving side; a
    /// one-way sender may set it, and then it stays the same each time the
    /// request is published again (the outbox does, so that a server can
    /// recognise a request it has had).
    pub message_id: Option<String>,
    /// Whether a [`Policy`](crate::layer::Policy) applies to it already:
    /// one under it leaves it alone.
    pub(crate) under_policy: bool,
}

impl Request {
    /// A request with a raw body.
    ///
    /// # Errors
    /// [`Error::Name`] if `method` is empty, longer than 255 bytes, or holds
    /// spaces or non-printable characters.
    pub fn new(
        address: Address,
        method: impl Into<String>,
        content_type: ContentType,
        body: impl Into<Bytes>,
    ) -> Result<Self, Error> {
        let method = method.into();
        check_method(&method)?;
        Ok(Self {
            address,
            method,
            body: body.into(),
            content_type,
            headers: Headers::new(),
            deadline: None,
            delivery: Delivery::Call,
            idempotent: false,
            from: Peer::default(),
            message_id: None,
            under_policy: false,
        })
    }

    /// A request whose body is `value` encoded with `content_type`.
    ///
    /// # Errors
    /// [`Error::Codec`] if `value` cannot be encoded, [`Error::Name`] for a
    /// bad method name.
    pub fn encode<T: Serialize + ?Sized>(
        address: Address,
        method: impl Into<String>,
        content_type: ContentType,
        value: &T,
    ) -> Result<Self, Error> {
        let body = content_type.encode(value)?;
        Self::new(address, method, content_type, body)
    }

    /// Sets the deadline to `timeout` from now.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.deadline = Some(Instant::now() + timeout);
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name, value);
        self
    }

    setters! {
        /// Sets an absolute deadline.
        #[must_use]
        fn with_deadline(deadline: Instant) => Some(deadline);
        /// Sets how the request is delivered (see [`Delivery`]).
        #[must_use]
        fn with_delivery(delivery: Delivery);
        /// Marks the request as safe to run twice.
        #[must_use]
        fn idempotent(idempotent: bool);
    }

    /// Time left before the deadline; `None` when there is no deadline.
    #[must_use]
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Decodes the body.
    ///
    /// # Errors
    /// [`Error::Codec`] if the body is not a valid `T`.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(self.content_type.decode(&self.body)?)
    }

    /// The deadline the [`Policy`](crate::layer::Policy) fixed before the
    /// request reached a transport.
    pub(crate) fn fixed_deadline(&self) -> Instant {
        self.deadline
            .expect("the policy fixes the deadline of every call a transport is given")
    }
}

/// A reply: a status and, when the status is [`Code::Ok`], the encoded result.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Response {
    /// The outcome. A caller's transport turns any non-ok status into
    /// [`Error::Remote`], so an `Ok(Response)` a caller sees is always ok.
    pub status: Code,
    /// The encoded result (ok) or the status object (error).
    pub body: Bytes,
    /// How `body` is encoded.
    pub content_type: ContentType,
    /// Application headers sent back.
    pub headers: Headers,
    /// Who answered.
    pub from: Peer,
    /// Which transport carried the reply.
    pub transport: Transport,
}

/// A way a call travels: over the broker, over HTTP, or in process.
///
/// It prints as its lower-case name (`amqp`), and compares equal to it:
/// `reply.transport == "http"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// Over RabbitMQ ([`Client`](crate::Client)).
    Amqp,
    /// Over HTTP (`http::HttpClient`, feature `http`).
    Http,
    /// In process ([`Local`](crate::Local)).
    Local,
}

impl Transport {
    /// Its lower-case name: `amqp`, `http` or `local`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Amqp => "amqp",
            Self::Http => "http",
            Self::Local => "local",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl PartialEq<str> for Transport {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Transport {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Response {
    /// An ok reply with a raw body.
    #[must_use]
    pub fn ok(content_type: ContentType, body: impl Into<Bytes>) -> Self {
        Self {
            status: Code::Ok,
            body: body.into(),
            content_type,
            headers: Headers::new(),
            from: Peer::default(),
            transport: Transport::Local,
        }
    }

    /// An ok reply whose body is `value` encoded with `content_type`.
    ///
    /// # Errors
    /// [`Error::Codec`] if `value` cannot be encoded.
    pub fn encode<T: Serialize + ?Sized>(
        content_type: ContentType,
        value: &T,
    ) -> Result<Self, Error> {
        Ok(Self::ok(content_type, content_type.encode(value)?))
    }

    /// An error reply carrying `status` as its body.
    #[must_use]
    pub fn error(content_type: ContentType, status: &Status) -> Self {
        // Encoding a status object of strings cannot fail in either codec.
        let body = status.to_body(content_type).unwrap_or_default();
        Self {
            status: status.code().clone(),
            ..Self::ok(content_type, body)
        }
    }

    /// `Ok(self)` for an ok reply, otherwise the [`Error::Remote`] it carries.
    ///
    /// # Errors
    /// [`Error::Remote`] with the decoded status for a non-ok reply.
    pub fn into_result(self) -> Result<Self, Error> {
        if self.status == Code::Ok {
            Ok(self)
        } else {
            Err(Error::Remote(Status::from_body(
                self.status,
                self.content_type,
                self.body,
            )))
        }
    }

    /// Decodes the body.
    ///
    /// # Errors
    /// [`Error::Codec`] if the body is not a valid `T`.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(self.content_type.decode(&self.body)?)
    }
}

/// A multicast request: sent to an [`Address::Every`] or [`Address::All`]
/// address, it gathers replies until `expect` have come or the deadline
/// passes, and returns each sender's [`Response`] (ok or not).
#[derive(Clone, Debug)]
pub struct Gather {
    /// The request to send.
    pub request: Request,
    /// Stop as soon as this many replies came; `None` waits for the deadline.
    pub expect: Option<usize>,
}

impl Gather {
    /// Gathers replies to `request` until the deadline.
    #[must_use]
    pub fn new(request: Request) -> Self {
        Self {
            request,
            expect: None,
        }
    }

    setters! {
        /// Stops as soon as `expect` replies came.
        #[must_use]
        fn expect(expect: usize) => Some(expect);
    }
}

/// What a transport takes: a [`Request`] (one reply) or a [`Gather`]
/// (every reply). The caller's layers read and fix the request through it.
#[allow(unreachable_pub)] // Sealed: public only for the layers' bounds.
pub trait Message {
    /// The request sent.
    fn request(&self) -> &Request;
    /// The request sent, to fix before it is.
    fn request_mut(&mut self) -> &mut Request;
    /// Whether one reply is awaited.
    fn single_reply(&self) -> bool;
}

/// What a transport answers: one [`Response`], or a gather's replies.
#[allow(unreachable_pub)] // Sealed: public only for the layers' bounds.
pub trait Replies {
    /// How many replies it holds, for a gather (`None` for one response).
    fn replies(&self) -> Option<usize>;
}

impl Replies for Response {
    fn replies(&self) -> Option<usize> {
        None
    }
}

impl Replies for Vec<Response> {
    fn replies(&self) -> Option<usize> {
        Some(self.len())
    }
}

impl Message for Request {
    fn request(&self) -> &Request {
        self
    }
    fn request_mut(&mut self) -> &mut Request {
        self
    }
    fn single_reply(&self) -> bool {
        true
    }
}

impl Message for Gather {
    fn request(&self) -> &Request {
        &self.request
    }
    fn request_mut(&mut self) -> &mut Request {
        &mut self.request
    }
    fn single_reply(&self) -> bool {
        false
    }
}

/// Builder methods that each set one field: `fn name(field: Type);` makes
/// `pub fn name(mut self, field: Type) -> Self` setting `self.field` to
/// the argument, or to the expression after `=>` (`=> Some(field)`).
macro_rules! setters {
    ($($(#[$attr:meta])* fn $name:ident($field:ident: $ty:ty) $(=> $value:expr)?;)*) => {$(
        $(#[$attr])*
        pub fn $name(mut self, $field: $ty) -> Self {
            self.$field = $crate::message::setters!(@value $field $($value)?);
            self
        }
    )*};
    (@value $field:ident) => { $field };
    (@value $field:ident $value:expr) => { $value };
}
pub(crate) use setters;

/// Implements `tower::Service<Request>` and `tower::Service<Gather>` for a
/// cloneable transport whose inherent `call` and `gather` do the work: the
/// service clones the handle into a `'static` future.
macro_rules! transport_services {
    // `owned`: the type's `call` returns a `'static` future, boxed as it is
    // (wrapping it in another `async` block would hold the request twice).
    ($ty:ty, owned) => {
        $crate::message::transport_services!(@gather $ty);
        $crate::message::transport_services!(@one $ty, Request, $crate::message::Response,
            |this, request| Box::pin(this.call(request)));
    };
    ($ty:ty) => {
        $crate::message::transport_services!(@gather $ty);
        $crate::message::transport_services!(@one $ty, Request, $crate::message::Response,
            |this, request| Box::pin(async move { this.call(request).await }));
    };
    (@gather $ty:ty) => {
        $crate::message::transport_services!(@one $ty, Gather, Vec<$crate::message::Response>,
            |this, gather| Box::pin(async move { this.gather(gather).await }));
    };
    (@one $ty:ty, $message:ident, $reply:ty, |$this:ident, $m:ident| $call:expr) => {
        impl tower::Service<$crate::message::$message> for $ty {
            type Response = $reply;
            type Error = $crate::error::Error;
            type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

            fn poll_ready(
                &mut self,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Result<(), Self::Error>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn call(&mut self, $m: $crate::message::$message) -> Self::Future {
                let $this = self.clone();
                $call
            }
        }
    };
}
pub(crate) use transport_services;

/// Implements `tower::Service<Request>` and `tower::Service<Gather>` for a
/// public transport whose `stack` field is its raw transport (a
/// `transport_services!` one) under the caller's
/// [`Policy`](crate::layer::Policy).
macro_rules! policy_services {
    ($ty:ty) => {
        $crate::message::policy_services!($ty, $crate::message::Request, $crate::message::Response);
        $crate::message::policy_services!(
            $ty,
            $crate::message::Gather,
            Vec<$crate::message::Response>
        );
    };
    ($ty:ty, $message:ty, $reply:ty) => {
        impl tower::Service<$message> for $ty {
            type Response = $reply;
            type Error = $crate::error::Error;
            type Future = $crate::layer::PolicyFuture<
                futures::future::BoxFuture<'static, Result<$reply, Self::Error>>,
            >;

            fn poll_ready(
                &mut self,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Result<(), Self::Error>> {
                tower::Service::<$message>::poll_ready(&mut self.stack, cx)
            }

            fn call(&mut self, message: $message) -> Self::Future {
                self.stack.call(message)
            }
        }
    };
}
pub(crate) use policy_services;
