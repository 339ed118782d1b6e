//! Settings of the HTTP side, from code or from the environment.
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `WARREN_HTTP_ADDR` | address a node's HTTP server binds (`127.0.0.1:8080`) | off |
//! | `WARREN_HTTP_URL` | the URL a node announces for itself | `http://<bound address>` (`https://` with TLS) |
//! | `WARREN_HTTP_TOKEN` | bearer token the server requires and the client sends | none |
//! | `WARREN_HTTP_PEERS` | known peers: `type/id=url`, comma-separated | none |
//! | `WARREN_HTTP_ANNOUNCE_S` | seconds between a node's announcements | `10` |
//! | `WARREN_HTTP_HEADER_TIMEOUT_MS` | time a client has to send a request's headers (and its TLS handshake) | `10000` |
//! | `WARREN_HTTP_IDLE_TIMEOUT_MS` | a connection with nothing in flight is closed after | `60000` |
//! | `WARREN_HTTP_MAX_CONNECTIONS` | connections the server holds at once; more are refused | `1024` |
//! | `WARREN_HTTP_TLS_CERT`, `WARREN_HTTP_TLS_KEY` | PEM files of the server's certificate chain and key: serve HTTPS (feature `tls`); both or neither | none |
//! | `WARREN_HTTP_TLS_CLIENT_CA` | PEM file of the CAs client certificates must be signed by (mutual TLS) | none |
//! | `WARREN_HTTP_TLS_CA` | PEM file of CAs the client trusts for `https://` peers, besides the platform's | none |
//!
//! A zero timeout or limit is an error, not a default: see
//! [`crate::listen`].

use crate::address::{ServiceId, ServiceType};
use crate::error::Error;
use crate::listen::ListenConfig;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// A bearer token. It never appears in `Debug` output, and
/// [`Token::matches`] compares in constant time.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// Wraps a token.
    ///
    /// # Errors
    /// [`Error::Config`] if it is empty or holds anything but visible ASCII
    /// (it travels in an HTTP header).
    pub fn new(token: impl Into<String>) -> Result<Self, Error> {
        let token = token.into();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Config(
                "an HTTP token must be non-empty visible ASCII without spaces".into(),
            ));
        }
        Ok(Self(token))
    }

    /// Whether `presented` is this token. The time taken does not depend on
    /// where the two differ (only on their lengths).
    #[must_use]
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(presented).into()
    }

    /// The token itself, for the `Authorization` header. Do not log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

/// A peer known by configuration: an instance of a type at a URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerUrl {
    /// The peer's service type.
    pub service: ServiceType,
    /// The peer's instance id.
    pub id: ServiceId,
    /// Its HTTP base URL (`http://10.0.0.5:8080`).
    pub url: String,
}

impl PeerUrl {
    /// Parses `type/id=url`.
    ///
    /// # Errors
    /// [`Error::Config`] naming what is wrong with the entry (an `https://`
    /// URL needs the `tls` feature).
    pub fn parse(entry: &str) -> Result<Self, Error> {
        let bad = |why: &str| {
            Error::Config(format!(
                "WARREN_HTTP_PEERS entry `{entry}` {why}; write type/id=http://host:port"
            ))
        };
        let (name, url) = entry
            .trim()
            .split_once('=')
            .ok_or_else(|| bad("has no `=`"))?;
        let (service, id) = name.split_once('/').ok_or_else(|| bad("has no `/`"))?;
        let url = url.trim().trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(bad("has a URL that is not http:// or https://"));
        }
        if url.starts_with("https://") && !cfg!(feature = "tls") {
            return Err(bad("is https://, which needs warren's `tls` feature"));
        }
        Ok(Self {
            service: ServiceType::new(service.trim())?,
            id: ServiceId::new(id.trim())?,
            url: url.to_owned(),
        })
    }
}

/// How a node serves HTTP, and what a caller knows about HTTP peers.
#[derive(Clone, Debug)]
#[must_use]
#[non_exhaustive]
pub struct HttpConfig {
    /// The address a node's HTTP server binds; `None` (the default) serves
    /// no HTTP. Only this address is bound.
    pub listen: Option<SocketAddr>,
    /// The URL a node announces; by default `http://` (`https://` with TLS)
    /// and the bound address.
    pub url: Option<String>,
    /// The bearer token the server requires and the client sends.
    pub token: Option<Token>,
    /// Peers known by configuration.
    pub peers: Vec<PeerUrl>,
    /// The largest request body the server reads; `None` takes the
    /// connection's `Config::max_body`.
    pub max_body: Option<usize>,
    /// Time between a node's announcements; peers forget an instance not
    /// heard from in three times this.
    pub announce_every: Duration,
    /// How the server bounds its connections, and its TLS
    /// ([`crate::listen`]).
    pub listener: ListenConfig,
    /// PEM file of CAs the client trusts for `https://` peers, besides the
    /// platform's (feature `tls`): see [`HttpClient::tls_ca`](crate::http::HttpClient::tls_ca).
    #[cfg(feature = "tls")]
    pub tls_ca: Option<std::path::PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: None,
            url: None,
            token: None,
            peers: Vec::new(),
            max_body: None,
            announce_every: Duration::from_secs(10),
            listener: ListenConfig::default(),
            #[cfg(feature = "tls")]
            tls_ca: None,
        }
    }
}

impl HttpConfig {
    /// The defaults, overridden by the environment.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable whose value cannot be used.
    pub fn from_env() -> Result<Self, Error> {
        Self::default().with_env_from(|k| std::env::var(k).ok())
    }

    /// Applies settings from `lookup` (the environment, or a map in tests).
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable whose value cannot be used.
    pub fn with_env_from(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        if let Some(v) = lookup("WARREN_HTTP_ADDR").filter(|v| !v.trim().is_empty()) {
            let addr = v.trim().parse().map_err(|_| {
                Error::Config(format!(
                    "WARREN_HTTP_ADDR=`{v}` is not an address such as 127.0.0.1:8080"
                ))
            })?;
            self.listen = Some(addr);
        }
        if let Some(v) = lookup("WARREN_HTTP_URL").filter(|v| !v.trim().is_empty()) {
            self.url = Some(v.trim().trim_end_matches('/').to_owned());
        }
        if let Some(v) = lookup("WARREN_HTTP_TOKEN").filter(|v| !v.is_empty()) {
            self.token = Some(Token::new(v).map_err(|_| {
                Error::Config("WARREN_HTTP_TOKEN must be visible ASCII without spaces".into())
            })?);
        }
        if let Some(v) = lookup("WARREN_HTTP_PEERS") {
            for entry in v.split(',').filter(|e| !e.trim().is_empty()) {
                self.peers.push(PeerUrl::parse(entry)?);
            }
        }
        if let Some(v) = lookup("WARREN_HTTP_ANNOUNCE_S") {
            let secs: u64 = v.trim().parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                Error::Config(format!(
                    "WARREN_HTTP_ANNOUNCE_S=`{v}` is not a positive number"
                ))
            })?;
            self.announce_every = Duration::from_secs(secs);
        }
        self.listener = self.listener.with_env_from("WARREN_HTTP_", &lookup)?;
        if let Some(v) = lookup("WARREN_HTTP_TLS_CA").filter(|v| !v.trim().is_empty()) {
            #[cfg(feature = "tls")]
            {
                self.tls_ca = Some(v.trim().into());
            }
            #[cfg(not(feature = "tls"))]
            return Err(Error::Config(format!(
                "WARREN_HTTP_TLS_CA=`{v}` needs warren's `tls` feature"
            )));
        }
        Ok(self)
    }

    crate::message::setters! {
        /// Serves HTTP on `listen`.
        fn listen(listen: SocketAddr) => Some(listen);
        /// Requires (server) and sends (client) this bearer token.
        fn token(token: Token) => Some(token);
        /// Sets the largest request body the server reads.
        fn max_body(max_body: usize) => Some(max_body);
        /// Trusts the CAs in the PEM file `tls_ca` for `https://` peers
        /// (client side), besides the platform's.
        #[cfg(feature = "tls")]
        fn tls_ca(tls_ca: impl Into<std::path::PathBuf>) => Some(tls_ca.into());
        /// Sets the time between announcements (10 ms at least).
        fn announce_every(announce_every: Duration) => announce_every.max(Duration::from_millis(10));
    }

    /// Adds a known peer.
    pub fn peer(mut self, peer: PeerUrl) -> Self {
        self.peers.push(peer);
        self
    }

    /// Sets the time a client has to send a request's headers.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.listener = self.listener.header_read_timeout(timeout);
        self
    }

    /// Sets the time after which a connection with nothing in flight is
    /// closed.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.listener = self.listener.idle_timeout(timeout);
        self
    }

    /// Sets the most connections the server holds at once.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.listener = self.listener.max_connections(n);
        self
    }

    /// Serves HTTPS with `tls`; the node announces an `https://` URL.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::listen::ServerTls) -> Self {
        self.listener = self.listener.tls(tls);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn reads_the_environment() {
        let env: HashMap<&str, &str> = [
            ("WARREN_HTTP_ADDR", "127.0.0.1:8080"),
            ("WARREN_HTTP_TOKEN", "s3cret"),
            (
                "WARREN_HTTP_PEERS",
                "calc/calc-1=http://10.0.0.5:8080/, calc/calc-2=http://h:1",
            ),
            ("WARREN_HTTP_ANNOUNCE_S", "3"),
        ]
        .into_iter()
        .collect();
        let cfg = HttpConfig::default()
            .with_env_from(|k| env.get(k).map(|v| (*v).to_owned()))
            .unwrap();
        assert_eq!(cfg.listen, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(cfg.peers.len(), 2);
        assert_eq!(cfg.peers[0].url, "http://10.0.0.5:8080");
        assert_eq!(cfg.peers[1].id.as_str(), "calc-2");
        assert_eq!(cfg.announce_every, Duration::from_secs(3));
        assert!(!format!("{cfg:?}").contains("s3cret"));
    }

    #[test]
    fn bad_entries_say_what_to_write() {
        for bad in [
            "calc=http://h",
            "calc/1",
            "calc/1=ftp://h",
            "c.a/1=http://h",
        ] {
            assert!(PeerUrl::parse(bad).is_err(), "{bad}");
        }
        let err = PeerUrl::parse("calc/1").unwrap_err().to_string();
        assert!(err.contains("type/id=http://host:port"), "{err}");
    }

    #[test]
    fn https_needs_the_tls_feature() {
        let peer = PeerUrl::parse("calc/1=https://h:1");
        assert_eq!(peer.is_ok(), cfg!(feature = "tls"));
        if let Err(err) = peer {
            assert!(err.to_string().contains("`tls` feature"), "{err}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        let t = Token::new("abc").unwrap();
        assert!(t.matches(b"abc"));
        assert!(!t.matches(b"abd"));
        assert!(!t.matches(b"ab"));
        assert!(!t.matches(b"abcd"));
        assert!(Token::new("a b").is_err());
        assert!(Token::new("").is_err());
    }
}
