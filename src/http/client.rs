//! The HTTP transport: sends a request to a known peer's `POST /rpc/<method>`.
//!
//! `instance(id)` goes to that peer; `any(type)` to one live instance of the
//! type, the next one on each call, passing over those that refuse the
//! connection; `every`/`all` ([`Gather`]) to each known one.

use super::outgoing;
use super::wire;
use super::Token;
use crate::address::{Address, Peer, ServiceId};
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
    #[cfg(feature = "tls")]
    tls: ClientTls,
    peers: Peers,
    token: Option<Token>,
    identity: Peer,
    max_body: usize,
}

/// What the client trusts and shows over TLS, besides the platform's
/// roots.
#[cfg(feature = "tls")]
#[derive(Clone, Debug, Default)]
struct ClientTls {
    /// Where the settings came from, for the errors.
    setting: Option<String>,
    ca: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
}

/// How one attempt at one peer ended.
enum Attempt {
    /// A reply (ok or not).
    Replied(Response),
    /// The peer did not take the request; another may.
    NotTaken(String),
    /// The TLS handshake with the peer failed (nothing was sent); another
    /// peer may take it.
    #[cfg(feature = "tls")]
    TlsRefused(Error),
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
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| Error::Config(format!("cannot set up the HTTP client: {e}")))?;
        let defaults = crate::Config::default();
        let http = Http {
            http,
            #[cfg(feature = "tls")]
            tls: ClientTls::default(),
            peers,
            token: None,
            identity: Peer::new(None, Some(ServiceId::random())),
            max_body: defaults.max_body,
        };
        Ok(Self {
            stack: PolicyLayer::from_config(&defaults).layer(http),
            default_timeout: defaults.default_timeout,
        })
    }

    /// A client for the peers in `peers` with the client side of `config`:
    /// its token and (feature `tls`) the CA it trusts for `https://` peers.
    ///
    /// # Errors
    /// As [`HttpClient::new`], and [`HttpClient::tls_ca`]'s.
    pub fn from_config(peers: Peers, config: &super::HttpConfig) -> Result<Self, Error> {
        let client = Self::new(peers)?.token(config.token.clone());
        #[cfg(feature = "tls")]
        if let Some(ca) = &config.tls_ca {
            return client.tls_ca(ca);
        }
        Ok(client)
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

    /// Trusts the CA certificates in the PEM file `ca` for `https://`
    /// peers, besides the platform's roots (`WARREN_HTTP_TLS_CA`, see
    /// [`HttpConfig::tls_ca`](crate::http::HttpConfig::tls_ca)).
    ///
    /// # Errors
    /// [`Error::Config`] naming the file if it cannot be read or holds no
    /// certificate.
    #[cfg(feature = "tls")]
    pub fn tls_ca(self, ca: impl AsRef<std::path::Path>) -> Result<Self, Error> {
        let path = ca.as_ref();
        let setting = "HttpClient::tls_ca";
        let pem = crate::config::read_file(setting, "CA file", path)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                Error::Config(format!(
                    "{setting}: the CA file `{}` holds no PEM certificate",
                    path.display()
                ))
            })?;
        self.with_tls(|t| {
            t.ca.extend(certs);
            t.setting = Some(format!("{setting} `{}`", path.display()));
        })
    }

    /// Shows the certificate chain in the PEM file `cert`, with its key in
    /// `key`, to peers that ask for one (mutual TLS).
    ///
    /// # Errors
    /// [`Error::Config`] naming the files if they cannot be read or do not
    /// hold a certificate and its key.
    #[cfg(feature = "tls")]
    pub fn tls_identity(
        self,
        cert: impl AsRef<std::path::Path>,
        key: impl AsRef<std::path::Path>,
    ) -> Result<Self, Error> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let setting = "HttpClient::tls_identity";
        let mut pem = crate::config::read_file(setting, "certificate file", cert)?;
        pem.push(b'\n');
        pem.extend(crate::config::read_file(setting, "key file", key)?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
            Error::Config(format!(
                "{setting}: `{}` and `{}` are not a PEM certificate and its key: {e}",
                cert.display(),
                key.display()
            ))
        })?;
        self.with_tls(|t| t.identity = Some(identity))
    }

    /// The same client with its TLS settings changed, and its HTTP stack
    /// built again with them.
    #[cfg(feature = "tls")]
    fn with_tls(self, change: impl FnOnce(&mut ClientTls)) -> Result<Self, Error> {
        let mut tls = self.stack.get_ref().tls.clone();
        change(&mut tls);
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tls_certs_merge(tls.ca.iter().cloned());
        if let Some(identity) = &tls.identity {
            builder = builder.identity(identity.clone());
        }
        let http = builder
            .build()
            .map_err(|e| Error::Config(format!("cannot set up the HTTP client's TLS: {e}")))?;
        Ok(self.with(|h| {
            h.http = http;
            h.tls = tls;
        }))
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
        let mut refused = Vec::new();
        #[cfg(feature = "tls")]
        let mut tls_refused = None;
        for target in self.peers.targets(&request.address)? {
            tracing::Span::current().record("peer", target.id.as_str());
            match self.attempt(&target, &request, deadline).await {
                Attempt::Replied(resp) => return resp.into_result(),
                Attempt::NotTaken(why) => refused.push(why),
                #[cfg(feature = "tls")]
                Attempt::TlsRefused(e) => {
                    refused.push(e.to_string());
                    tls_refused.get_or_insert(e);
                }
                Attempt::Failed(e) => return Err(e),
            }
        }
        // No peer took it and a handshake failed: that is what to fix.
        #[cfg(feature = "tls")]
        if let Some(e) = tls_refused {
            return Err(e);
        }
        Err(not_taken(&request.address, &refused))
    }

    async fn gather(&self, gather: Gather) -> Result<Vec<Response>, Error> {
        let Gather { request, expect } = gather;
        let deadline = request.fixed_deadline();
        let targets = self.peers.targets(&request.address)?;
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
                    #[cfg(feature = "tls")]
                    Some(Attempt::TlsRefused(e)) => refused.push(e.to_string()),
                    Some(Attempt::Failed(e)) => tracing::debug!(error = %e, "a peer failed during a gather"),
                    None => break,
                },
                () = &mut sleep => break,
            }
        }
        if replies.is_empty() && refused.len() == targets.len() {
            return Err(not_taken(&request.address, &refused));
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
        let Target { id, url } = target;
        let method = wire::encode_method(&request.method);
        let sent = self
            .http
            .post(format!("{url}/rpc/{method}"))
            .headers(headers)
            .timeout(remaining)
            .body(request.body.clone())
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            // A failed handshake, at connect or (TLS 1.3: a refused client
            // certificate) at the first read: the request never reached
            // the peer's handler.
            #[cfg(feature = "tls")]
            Err(e) if self.tls_failure(&e).is_some() => {
                let reason = self.tls_failure(&e).unwrap_or_default();
                return Attempt::TlsRefused(Error::Tls {
                    url: url.clone(),
                    setting: self.tls.setting.clone().unwrap_or_else(|| {
                        "the platform's roots (no HttpClient::tls_ca / WARREN_HTTP_TLS_CA)".into()
                    }),
                    reason,
                    source: std::sync::Arc::new(e),
                });
            }
            Err(e) if e.is_connect() => {
                self.peers.mark_down(id);
                return Attempt::NotTaken(format!("{url}: {e}"));
            }
            Err(e) if e.is_timeout() => {
                return Attempt::Failed(Error::Timeout { after: remaining })
            }
            // Sent, then the connection broke: the peer may have run it.
            Err(_) => return Attempt::Failed(Error::ConnectionLost),
        };
        self.peers.mark_up(id);
        if resp.status() == StatusCode::MISDIRECTED_REQUEST {
            return Attempt::NotTaken(format!("{url} is no longer instance {id}"));
        }
        let read = outgoing::read(resp, self.max_body, remaining).await;
        read.map_or_else(Attempt::Failed, Attempt::Replied)
    }

    /// What the TLS library said, if `e` is a failed TLS handshake.
    #[cfg(feature = "tls")]
    fn tls_failure(&self, e: &reqwest::Error) -> Option<String> {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(mut err) = source {
            // An io::Error's source is its inner error's source: look at
            // the inner error itself.
            while let Some(inner) = err
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
            {
                err = inner;
            }
            if let Some(tls) = err.downcast_ref::<tokio_rustls::rustls::Error>() {
                let what = match tls {
                    tokio_rustls::rustls::Error::InvalidCertificate(_) => {
                        "the peer's certificate is not signed by a trusted CA or not valid for its address: "
                    }
                    tokio_rustls::rustls::Error::AlertReceived(_) => {
                        "the peer refused the handshake (it may ask for a client certificate): "
                    }
                    _ => "",
                };
                return Some(format!("{what}{tls}"));
            }
            source = err.source();
        }
        None
    }
}

/// No peer of `address` took the call; `refused` says why, peer by peer.
fn not_taken(address: &Address, refused: &[String]) -> Error {
    let refused = refused.join("; ");
    Error::Unavailable {
        reason: format!("no HTTP peer of {address} took the call ({refused})"),
    }
}

/// How long connecting to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

crate::message::transport_services!(Http);
crate::message::policy_services!(HttpClient);
