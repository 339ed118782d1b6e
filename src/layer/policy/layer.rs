use super::PolicyFuture;
use crate::layer::deadline::Deadline;
use crate::layer::trace::Traced;
use crate::layer::validate;
use crate::message::Message;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tower::{Layer, Service};

/// The caller's policy over a transport: one span per call with its
/// outcome, the deadline fixed (the current [`Context`]'s, the request's
/// own, or `default_timeout`), and requests refused before they are sent
/// when their body is over `max_body` or when they are single-reply calls
/// to a multicast address.
///
/// Every warren transport ([`Client`], [`Local`], and with the `http`
/// feature `HttpClient` and the fallback) is built with this layer already,
/// from its configuration; it is public for transports of your own. A
/// request passes through it once: a transport under another one (the
/// fallback's AMQP and HTTP transports) leaves it to the outer one.
///
/// [`Context`]: crate::Context
/// [`Client`]: crate::Client
/// [`Local`]: crate::Local
#[derive(Clone, Copy, Debug)]
pub struct PolicyLayer {
    default_timeout: Duration,
    max_body: usize,
}

impl PolicyLayer {
    /// Calls with no deadline get `default_timeout`; request bodies over
    /// `max_body` bytes are refused.
    #[must_use]
    pub fn new(default_timeout: Duration, max_body: usize) -> Self {
        Self {
            default_timeout,
            max_body,
        }
    }

    /// With the defaults and limits of `config`.
    pub(crate) fn from_config(config: &crate::Config) -> Self {
        Self::new(config.default_timeout, config.max_body)
    }
}

impl Default for PolicyLayer {
    /// The defaults of [`Config`](crate::Config): 30 s, 16 MiB.
    fn default() -> Self {
        Self::from_config(&crate::Config::default())
    }
}

impl<S> Layer<S> for PolicyLayer {
    type Service = Policy<S>;

    fn layer(&self, inner: S) -> Policy<S> {
        Policy {
            inner,
            layer: *self,
        }
    }
}

/// A transport under the caller's policy: see [`PolicyLayer`].
#[derive(Clone, Debug)]
pub struct Policy<S> {
    inner: S,
    layer: PolicyLayer,
}

impl<S> Policy<S> {
    /// The transport below.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The transport below, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S, M> Service<M> for Policy<S>
where
    S: Service<M, Error = crate::Error>,
    S::Response: crate::message::Replies,
    M: Message,
{
    type Response = S::Response;
    type Error = crate::Error;
    type Future = PolicyFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), crate::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut message: M) -> Self::Future {
        if std::mem::replace(&mut message.request_mut().under_policy, true) {
            return PolicyFuture::bypassed(self.inner.call(message));
        }
        // Outermost the span, then the deadline, then what is refused
        // before anything is sent.
        let traced = Traced::start(&message);
        let (sent, deadline) = traced.span.in_scope(|| {
            let deadline = Deadline::fix(message.request_mut(), self.layer.default_timeout);
            let sent =
                validate::check(&message, self.layer.max_body).map(|()| self.inner.call(message));
            (sent, deadline)
        });
        PolicyFuture::applied(sent, traced, deadline)
    }
}
