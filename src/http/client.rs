//! The HTTP transport: sends a request to a known peer's `POST /rpc/<method>`.
//!
//! `instance(id)` goes to that peer; `any(type)` to one live instance of the
//! type, the next one on each call, passing over those that refuse the
//! connection; `every`/`all` ([`Gather`]) to each known one.

use super::outgoing;
use super::wire::{self};
use super::Token;
use crate::address::{Peer, ServiceId};
use crate::context::Context;
use crate::discovery::{Peers, Target};
use crate::error::Error;
use crate::message::{Gather, Request, Response};
use axum::http::StatusCode;
use futures::stream::{FuturesUnordered, StreamExt};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Sends requests over HTTP to the peers in a [`Peers`] registry.
///
/// A [`tower::Service`] of [`Request`] (one reply) and of [`Gather`] (one
/// reply per known instance). Clones share the connection pool.
#[derive(Clone, Debug)]
pub struct HttpClient {
    http: reqwest::Client,
    peers: Peers,
    token: Option<Token>,
    identity: Peer,
    default_timeout: Duration,
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
        Ok(Self {
            http,
            peers,
            token: None,
            identity: Peer {
                id: Some(ServiceId::random()),
                service: None,
            },
            default_timeout: defaults.default_timeout,
            max_body: defaults.max_body,
        })
    }

    /// Sends this bearer token (`WARREN_HTTP_TOKEN`).
    #[must_use]
    pub fn token(mut self, token: Option<Token>) -> Self {
        self.token = token;
        self
    }

    /// Names itself `identity` in the requests it sends.
    #[must_use]
    pub fn identity(mut self, identity: Peer) -> Self {
        self.identity = identity;
        self
    }

    /// The deadline of calls that set none.
    #[must_use]
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// The largest request or reply body, in bytes.
    #[must_use]
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The peers this client sends to.
    #[must_use]
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Sends `request` to one peer and waits for its reply.
    ///
    /// # Errors
    /// [`Error::NoRoute`] if no peer is known for the address,
    /// [`Error::Unavailable`] if none took the request (nothing ran),
    /// [`Error::Timeout`] at the deadline, [`Error::Remote`] for an error
    /// reply, [`Error::ConnectionLost`] if the connection broke after the
    /// request was sent (it may have run).
    pub async fn call(&self, mut request: Request) -> Result<Response, Error> {
        let deadline = self.deadline(&mut request);
        let span = tracing::info_span!("warren.http.call", method = %request.method,
            address = %request.address, transport = "http", peer = tracing::field::Empty,
            outcome = tracing::field::Empty, duration_us = tracing::field::Empty);
        let start = Instant::now();
        let result = self
            .call_inner(request, deadline)
            .instrument(span.clone())
            .await;
        span.record("duration_us", start.elapsed().as_micros() as u64);
        span.record(
            "outcome",
            match &result {
                Ok(_) => "ok",
                Err(Error::Remote(s)) => s.code().as_str(),
                Err(_) => "error",
            },
        );
        result
    }

    async fn call_inner(&self, request: Request, deadline: Instant) -> Result<Response, Error> {
        if request.address.is_multicast() {
            return Err(Error::InvalidRequest(format!(
                "{} may answer many times; send a Gather instead",
                request.address
            )));
        }
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

    /// Sends the request to every known instance at its (multicast)
    /// address and collects replies until `expect` came or the deadline.
    ///
    /// # Errors
    /// [`Error::NoRoute`] if no peer is known; [`Error::Unavailable`] if
    /// none took it. Error replies are returned among the replies.
    pub async fn gather(&self, gather: Gather) -> Result<Vec<Response>, Error> {
        let Gather {
            mut request,
            expect,
        } = gather;
        let deadline = self.deadline(&mut request);
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

    fn deadline(&self, request: &mut Request) -> Instant {
        Context::propagate(request);
        *request
            .deadline
            .get_or_insert_with(|| Instant::now() + self.default_timeout)
    }

    async fn attempt(&self, target: &Target, request: &Request, deadline: Instant) -> Attempt {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Attempt::Failed(Error::Timeout { after: remaining });
        }
        if request.body.len() > self.max_body {
            return Attempt::Failed(Error::BodyTooLarge {
                size: request.body.len(),
                limit: self.max_body,
            });
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

crate::message::transport_services!(HttpClient);
