//! The HTTP transport: sends a request to a known peer's `POST /rpc/<method>`.
//!
//! `instance(id)` goes to that peer; `any(type)` to one live instance of the
//! type, the next one on each call, passing over those that refuse the
//! connection; `every`/`all` ([`Gather`]) to each known one.

use super::outgoing;
use super::wire::{self};
use super::Token;
use crate::address::{Peer, ServiceId};
use crate::discovery::{Peers, Target};
use crate::error::Error;
use crate::layer::{Policy, PolicyLayer};
use crate::message::{Gather, Request, Response};
use axum::http::StatusCode;
use futures::stream::{FuturesUnordered, StreamExt};
use std::time::{Duration, Instant};
use tower::Layer;

/// Sends requests over HTTP to the peers in a [`Peers`] registry.
///
/// A [`tower::Service`] of [`Request`] (one reply) and of [`Gather`] (one
/// reply per known instance). Clones share the connection pool. Calls
/// pass through the caller's [`Policy`] first (deadline, span, limits).
#[derive(Clone, Debug)]
pub struct HttpClient {
    stack: Policy<Http>,
    default_timeout: Duration,
}

/// The HTTP transport below the policy: picks peers and posts.
#[derive(Clone, Debug)]
pub(crate) struct Http {
    http: reqwest::Client,
    peers: Peers,
    token: Option<Token>,
    identity: Peer,
    max_body: usize,
}

/// How one attempt at one peer ended.
enum Attempt {
    /// A reply (ok or not).
    Replied(Response),
    /// The peer did not take the request; another may.
    NotTaken(String),
    /// The call failed in a way another peer cannot fix.
    Failed(Error),
}

impl HttpClient {
    /// A client for the peers in `peers`, with a random identity.
    ///
    /// # Errors
    /// [`Error::Config`] if the HTTP stack cannot be set up (no TLS roots).
    pub fn new(peers: Peers) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| Error::Config(format!("cannot set up the HTTP client: {e}")))?;
        let defaults = crate::Config::default();
        let http = Http {
            http,
            peers,
            token: None,
            identity: Peer {
                id: Some(ServiceId::random()),
                service: None,
            },
            max_body: defaults.max_body,
        };
        Ok(Self {
            stack: PolicyLayer::from_config(&defaults).layer(http),
            default_timeout: defaults.default_timeout,
        })
    }

    /// The same client with its policy built again after a builder change.
    fn with(mut self, change: impl FnOnce(&mut Http)) -> Self {
        change(self.stack.get_mut());
        let layer = PolicyLayer::new(self.default_timeout, self.stack.get_ref().max_body);
        self.stack = layer.layer(self.stack.get_ref().clone());
        self
    }

    /// Sends this bearer token (`WARREN_HTTP_TOKEN`).
    #[must_use]
    pub fn token(self, token: Option<Token>) -> Self {
        self.with(|h| h.token = token)
    }

    /// Names itself `identity` in the requests it sends.
    #[must_use]
    pub fn identity(self, identity: Peer) -> Self {
        self.with(|h| h.identity = identity)
    }

    /// The deadline of calls that set none.
    #[must_use]
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self.with(|_| ())
    }

    /// The largest request or reply body, in bytes.
    #[must_use]
    pub fn max_body(self, bytes: usize) -> Self {
        self.with(|h| h.max_body = bytes)
    }

    /// The peers this client sends to.
    #[must_use]
    pub fn peers(&self) -> &Peers {
        &self.stack.get_ref().peers
    }

    /// Sends `request` to one peer and waits for its reply.
    ///
    /// # Errors
    /// [`Error::NoRoute`] if no peer is known for the address,
    /// [`Error::Unavailable`] if none took the request (nothing ran),
    /// [`Error::Timeout`] at the deadline, [`Error::Remote`] for an error
    /// reply, [`Error::ConnectionLost`] if the connection broke after the
    /// request was sent (it may have run); [`Error::MulticastCall`] and
    /// [`Error::BodyTooLarge`] before anything is sent.
    pub async fn call(&self, request: Request) -> Result<Response, Error> {
        tower::ServiceExt::oneshot(self.stack.clone(), request).await
    }

    /// Sends the request to every known instance at its (multicast)
    /// address and collects replies until `expect` came or the deadline.
    ///
    /// # Errors
    /// [`Error::NoRoute`] if no peer is known; [`Error::Unavailable`] if
    /// none took it. Error replies are returned among the replies.
    pub async fn gather(&self, gather: Gather) -> Result<Vec<Response>, Error> {
        tower::ServiceExt::oneshot(self.stack.clone(), gather).await
    }
}

impl Http {
    async fn call(&self, request: Request) -> Result<Response, Error> {
        let deadline = request.fixed_deadline();
        let targets = self.peers.targets(&request.address);
        if targets.is_empty() {
            return Err(Error::NoRoute {
                address: request.address,
            });
        }
        let mut refused = Vec::new();
        for target in targets {
            tracing::Span::current().record("peer", target.id.as_str());
            match self.attempt(&target, &request, deadline).await {
                Attempt::Replied(resp) => return resp.into_result(),
                Attempt::NotTaken(why) => refused.push(why),
                Attempt::Failed(e) => return Err(e),
            }
        }
        Err(Error::Unavailable {
            reason: format!(
                "no HTTP peer of {} took the call ({})",
                request.address,
                refused.join("; ")
            ),
        })
    }

    async fn gather(&self, gather: Gather) -> Result<Vec<Response>, Error> {
        let Gather { request, expect } = gather;
        let deadline = request.fixed_deadline();
        let targets = self.peers.targets(&request.address);
        if targets.is_empty() {
            return Err(Error::NoRoute {
                address: request.address,
            });
        }
        let mut pending: FuturesUnordered<_> = targets
            .iter()
            .map(|t| self.attempt(t, &request, deadline))
            .collect();
        let (mut replies, mut refused) = (Vec::new(), Vec::new());
        let expect = expect.unwrap_or(usize::MAX);
        let sleep = tokio::time::sleep_until(deadline.into());
        tokio::pin!(sleep);
        while replies.len() < expect {
            tokio::select! {
                next = pending.next() => match next {
                    Some(Attempt::Replied(r)) => replies.push(r),
                    Some(Attempt::NotTaken(why)) => refused.push(why),
                    Some(Attempt::Failed(e)) => tracing::debug!(error = %e, "a peer failed during a gather"),
                    None => break,
                },
                () = &mut sleep => break,
            }
        }
        if replies.is_empty() && refused.len() == targets.len() {
            return Err(Error::Unavailable {
                reason: format!(
                    "no HTTP peer of {} took the call ({})",
                    request.address,
                    refused.join("; ")
                ),
            });
        }
        Ok(replies)
    }

    async fn attempt(&self, target: &Target, request: &Request, deadline: Instant) -> Attempt {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Attempt::Failed(Error::Timeout { after: remaining });
        }
        let headers =
            match outgoing::headers(request, remaining, &self.identity, self.token.as_ref()) {
                Ok(h) => h,
                Err(e) => return Attempt::Failed(e),
            };
        let url = format!(
            "{}/rpc/{}",
            target.url,
            wire::encode_method(&request.method)
        );
        let sent = self
            .http
            .post(&url)
            .headers(headers)
            .timeout(remaining)
            .body(request.body.clone())
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                self.peers.mark_down(&target.id);
                return Attempt::NotTaken(format!("{}: {e}", target.url));
            }
            Err(e) if e.is_timeout() => {
                return Attempt::Failed(Error::Timeout { after: remaining })
            }
            // Sent, then the connection broke: the peer may have run it.
            Err(_) => return Attempt::Failed(Error::ConnectionLost),
        };
        self.peers.mark_up(&target.id);
        if resp.status() == StatusCode::MISDIRECTED_REQUEST {
            return Attempt::NotTaken(format!(
                "{} is no longer instance {}",
                target.url, target.id
            ));
        }
        match outgoing::read(resp, self.max_body, remaining).await {
            Ok(r) => Attempt::Replied(r),
            Err(e) => Attempt::Failed(e),
        }
    }
}

crate::message::transport_services!(Http);
crate::message::policy_services!(HttpClient);
