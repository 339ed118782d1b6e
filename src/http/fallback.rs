//! Degraded mode: calls go over AMQP while the broker connection is up and
//! over HTTP while it is down, and back to AMQP by themselves when it
//! returns.
//!
//! No call runs twice because of the switch. A call that never reached the
//! broker (the AMQP transport answered [`Error::Unavailable`]) goes over
//! HTTP. A call that may have reached it ([`Error::ConnectionLost`]:
//! published, then the connection died) goes over HTTP only if its method
//! is idempotent; otherwise the caller gets the `ConnectionLost`. Both
//! attempts share one deadline: whatever AMQP used is gone for HTTP.

use super::HttpClient;
use crate::address::Address;
use crate::amqp::{Connection, ConnectionState};
use crate::discovery::{Peers, Route};
use crate::error::Error;
use crate::layer::{Policy, PolicyFuture, PolicyLayer};
use crate::message::{Gather, Message, Request, Response};
use futures::future::BoxFuture;
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use tokio::sync::watch;
use tower::{Layer, Service, ServiceExt};
use tracing::info;

/// Wraps an AMQP transport `A` with an HTTP transport `H`: AMQP while the
/// broker connection is up, HTTP while it is down. Built by
/// [`FallbackLayer`].
///
/// A call the AMQP transport did not send ([`Error::Unavailable`]) goes
/// over HTTP; one that may have reached the broker
/// ([`Error::ConnectionLost`]) only if its method is idempotent. Both
/// attempts share the call's deadline. [`Response::transport`] tells which
/// transport answered, and so does the `transport` field of the call's
/// `warren.call` span.
///
/// The caller's [`Policy`] (deadline, span, limits) applies once, here,
/// with the connection's [`Config`](crate::Config): both attempts share
/// the deadline it fixed, and the transports below leave the policy to it.
///
/// For a prompt switch the connection should use
/// [`WhenDisconnected::FailFast`](crate::config::WhenDisconnected): with
/// `Wait`, a call made in the instant the connection drops waits for the
/// broker until its deadline instead of going over HTTP.
#[derive(Clone)]
pub struct Fallback<A, H> {
    stack: Policy<Switch<A, H>>,
}

/// The fallback below the policy: picks the transport.
#[derive(Clone)]
pub(crate) struct Switch<A, H> {
    amqp: A,
    http: H,
    policy: Choice,
}

#[derive(Clone)]
struct Choice {
    state: watch::Receiver<ConnectionState>,
    idempotent: Arc<BTreeSet<String>>,
    /// The HTTP transport's peers, when it is an [`HttpClient`]: after a
    /// reconnection, calls to peers not yet consuming again stay on HTTP.
    peers: Option<Peers>,
}

impl<A, H> std::fmt::Debug for Fallback<A, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let policy = &self.stack.get_ref().policy;
        f.debug_struct("Fallback")
            .field("state", &*policy.state.borrow())
            .field("idempotent", &policy.idempotent)
            .finish_non_exhaustive()
    }
}

/// A [`tower::Layer`] that wraps an AMQP transport in a [`Fallback`] to `H`.
#[derive(Clone)]
#[must_use]
pub struct FallbackLayer<H> {
    http: H,
    policy: Choice,
    layer: PolicyLayer,
}

impl<H> std::fmt::Debug for FallbackLayer<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackLayer")
            .field("idempotent", &self.policy.idempotent)
            .finish_non_exhaustive()
    }
}

impl<H: 'static> FallbackLayer<H> {
    /// Falls back to `http` while `conn` is not connected.
    ///
    /// When `http` is an [`HttpClient`], calls also stay on HTTP for a
    /// while after the connection came back, so that they are not sent to
    /// queues nobody consumes yet: to an address none of whose peers has
    /// announced itself since (a node announces only while it consumes),
    /// then, once one has, all but one call at a time until the broker
    /// answered one; for up to [`Config::settle`](crate::Config::settle).
    pub fn new(conn: &Connection, http: H) -> Self {
        let peers = (&http as &dyn std::any::Any)
            .downcast_ref::<HttpClient>()
            .map(|h| h.peers().clone());
        Self {
            http,
            policy: Choice {
                state: conn.state(),
                idempotent: Arc::default(),
                peers,
            },
            layer: PolicyLayer::from_config(conn.config()),
        }
    }
}

impl<H> FallbackLayer<H> {
    /// Declares methods (`Service.method`) safe to run twice: a call to one
    /// of them that may have reached the broker is sent again over HTTP.
    /// A request can also say so itself ([`Request::idempotent`]).
    pub fn idempotent<I, S>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let set = Arc::make_mut(&mut self.policy.idempotent);
        set.extend(methods.into_iter().map(Into::into));
        self
    }
}

impl<A, H: Clone> Layer<A> for FallbackLayer<H> {
    type Service = Fallback<A, H>;

    fn layer(&self, amqp: A) -> Fallback<A, H> {
        Fallback {
            stack: self.layer.layer(Switch {
                amqp,
                http: self.http.clone(),
                policy: self.policy.clone(),
            }),
        }
    }
}

impl Choice {
    /// Whether the HTTP transport may take a request the AMQP transport
    /// failed with `err`.
    fn may_resend(&self, request: &Request, err: &Error) -> bool {
        match err {
            Error::Unavailable { .. } => true,
            // Both may have reached the handler: only a method that can
            // run twice is sent again.
            Error::ConnectionLost | Error::Blocked { .. } => {
                request.idempotent || self.idempotent.contains(&request.method)
            }
            _ => false,
        }
    }

    /// Runs `amqp` while connected, and `http` when it is down or the AMQP
    /// attempt allows a resend.
    async fn run<M, T, FA, FH>(
        self,
        message: M,
        amqp: impl FnOnce(M) -> FA,
        http: impl FnOnce(M) -> FH,
    ) -> Result<T, Error>
    where
        M: Message + Clone,
        FA: Future<Output = Result<T, Error>>,
        FH: Future<Output = Result<T, Error>>,
    {
        let request = message.request();
        let span = tracing::Span::current();
        // Back from a loss, the broker may not deliver to the address yet
        // (its nodes reconnect after us): HTTP still can.
        let route = if self.state.borrow().is_connected() {
            self.peers
                .as_ref()
                .map_or(Route::Amqp, |p| p.route(&request.address))
        } else {
            Route::Http
        };
        if route != Route::Http {
            span.record("transport", "amqp");
            let mut probe = self
                .peers
                .as_ref()
                .filter(|_| route == Route::Probe)
                .map(|peers| Probe {
                    peers,
                    address: &request.address,
                    answered: false,
                });
            let result = amqp(message.clone()).await;
            if let Some(probe) = &mut probe {
                probe.answered = matches!(result, Ok(_) | Err(Error::Remote(_)));
            }
            drop(probe);
            match result {
                Err(e) if self.may_resend(request, &e) => {
                    info!(error = %e, method = %request.method, "sending over HTTP instead");
                }
                other => {
                    crate::record::fallback(false);
                    return other;
                }
            }
        }
        span.record("transport", "http");
        crate::record::fallback(true);
        let address = request.address.clone();
        http(message).await.map_err(|e| match e {
            Error::NoRoute { .. } => Error::Unavailable {
                reason: format!(
                    "the broker connection is {} and no HTTP peer is known for {address} \
                     (set WARREN_HTTP_PEERS, or let the peers announce themselves)",
                    super::health::state_name(&self.state.borrow())
                ),
            },
            other => other,
        })
    }
}

/// A [`Route::Probe`] call in flight; reports its outcome when dropped,
/// however the call ends.
struct Probe<'a> {
    peers: &'a Peers,
    address: &'a Address,
    answered: bool,
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        self.peers.probed(self.address, self.answered);
    }
}

impl<A, H, M> Service<M> for Switch<A, H>
where
    M: Message + Clone + Send + 'static,
    A: Service<M, Error = Error> + Clone + Send + 'static,
    A::Future: Send,
    A::Response: Send,
    H: Service<M, Response = A::Response, Error = Error> + Clone + Send + 'static,
    H::Future: Send,
{
    type Response = A::Response;
    type Error = Error;
    type Future = BoxFuture<'static, Result<A::Response, Error>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Error>> {
        // Each call readies its own clone of the transport it uses.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, message: M) -> Self::Future {
        let (amqp, http, policy) = (self.amqp.clone(), self.http.clone(), self.policy.clone());
        Box::pin(policy.run(message, |m| amqp.oneshot(m), |m| http.oneshot(m)))
    }
}

/// The public face of [`Switch`]: the same services under the policy.
macro_rules! fallback_services {
    ($msg:ty, $resp:ty) => {
        impl<A, H> Service<$msg> for Fallback<A, H>
        where
            A: Service<$msg, Response = $resp, Error = Error> + Clone + Send + 'static,
            A::Future: Send,
            H: Service<$msg, Response = $resp, Error = Error> + Clone + Send + 'static,
            H::Future: Send,
        {
            type Response = $resp;
            type Error = Error;
            type Future = PolicyFuture<BoxFuture<'static, Result<$resp, Error>>>;

            fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Error>> {
                Service::<$msg>::poll_ready(&mut self.stack, cx)
            }

            fn call(&mut self, message: $msg) -> Self::Future {
                self.stack.call(message)
            }
        }
    };
}

fallback_services!(Request, Response);
fallback_services!(Gather, Vec<Response>);
