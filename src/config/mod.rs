//! Configuration, from code or from the environment.
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `RABBITMQ_URL` | broker URL; several, comma-separated, for a cluster | `amqp://guest:guest@127.0.0.1:5672/%2f` |
//! | `WARREN_AMQP_URL` | same, takes precedence (used by the test scripts) | |
//! | `WARREN_EXCHANGE` | the topic exchange | `stage7` |
//! | `WARREN_PREFETCH` | unacknowledged deliveries per consumer | `64` |
//! | `WARREN_DEADLINE_MS` | default call deadline | `30000` |
//! | `WARREN_HEARTBEAT_S` | AMQP heartbeat, seconds | `10` |
//! | `WARREN_CONNECT_TIMEOUT_MS` | how long one connection attempt may take | `5000` |
//! | `WARREN_WHEN_DISCONNECTED` | `wait` or `fail-fast`: see [`WhenDisconnected`] | `wait` |
//! | `RABBITMQ_RETRY_ATTEMPTS` | connection attempts before [`Connection::connect`](crate::Connection::connect) gives up (`0`: never) | `10` (about 10 s) |
//! | `RABBITMQ_RETRY_DELAY` | first retry delay: milliseconds, or with a unit (`500ms`, `2s`) | `100` |
//! | `WARREN_RETRY_MAX_DELAY` | longest retry delay, same syntax | `2s` |
//! | `WARREN_RETRY_FACTOR` | growth of the delay per failed attempt | `2` |

mod retry;

pub use retry::{Backoff, WhenDisconnected};

use crate::error::Error;
use retry::duration;
use std::fmt;
use std::time::Duration;

/// The default broker URL: the local broker with the guest account.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A broker URL. Its password never appears in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl(String);

impl BrokerUrl {
    /// Wraps a URL (`amqp://` or `amqps://`).
    ///
    /// # Errors
    /// [`Error::Config`] if it does not start with `amqp://` or `amqps://`,
    /// or if it is `amqps://` and warren was built without its `tls`
    /// feature.
    pub fn new(url: impl Into<String>) -> Result<Self, Error> {
        let url = url.into();
        let url = url.trim().to_owned();
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return Err(Error::Config(format!(
                "broker URL `{}` must start with amqp:// or amqps://",
                redact(&url)
            )));
        }
        if url.starts_with("amqps://") && !cfg!(feature = "tls") {
            return Err(Error::Config(format!(
                "broker URL `{}` is amqps://, which needs warren's `tls` feature",
                redact(&url)
            )));
        }
        Ok(Self(url))
    }

    /// The full URL, password included. Do not log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Replaces the password in `scheme://user:password@host` with `***`.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let Some(at) = rest.find('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUrl({self})")
    }
}

/// How to reach the broker and how calls behave.
#[derive(Clone, Debug)]
#[must_use]
pub struct Config {
    /// Broker URLs, tried in turn.
    pub urls: Vec<BrokerUrl>,
    /// The topic exchange (`stage7`).
    pub exchange: String,
    /// Deliveries a node's consumer may hold unacknowledged.
    pub prefetch: u16,
    /// The deadline of a call that sets none.
    pub default_timeout: Duration,
    /// AMQP heartbeat interval (whole seconds, at least 1; the broker may
    /// ask for less). A peer that stopped answering (a stalled network, not
    /// a closed socket) is detected after twice this.
    pub heartbeat: Duration,
    /// How long one connection attempt (TCP and AMQP handshake) may take.
    pub connect_timeout: Duration,
    /// Delays between connection attempts.
    pub backoff: Backoff,
    /// What calls do while the broker cannot take them: see [`WhenDisconnected`].
    pub when_disconnected: WhenDisconnected,
    /// The largest request or reply body accepted, in bytes.
    pub max_body: usize,
    /// A name shown for the connection in the broker's management UI.
    pub connection_name: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            urls: vec![BrokerUrl(DEFAULT_URL.to_owned())],
            exchange: "stage7".to_owned(),
            prefetch: 64,
            default_timeout: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            backoff: Backoff::default(),
            when_disconnected: WhenDisconnected::default(),
            max_body: 16 * 1024 * 1024,
            connection_name: None,
        }
    }
}

impl Config {
    /// The defaults, overridden by whatever the environment sets.
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
        fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, Error> {
            v.trim()
                .parse()
                .map_err(|_| Error::Config(format!("{name}=`{v}` is not a valid number")))
        }
        if let Some(urls) = lookup("WARREN_AMQP_URL").or_else(|| lookup("RABBITMQ_URL")) {
            self = self.urls(urls.split(',').filter(|u| !u.trim().is_empty()))?;
        }
        if let Some(v) = lookup("WARREN_EXCHANGE") {
            self.exchange = v;
        }
        if let Some(v) = lookup("WARREN_PREFETCH") {
            self.prefetch = num("WARREN_PREFETCH", &v)?;
        }
        if let Some(v) = lookup("WARREN_DEADLINE_MS") {
            self.default_timeout = Duration::from_millis(num("WARREN_DEADLINE_MS", &v)?);
        }
        if let Some(v) = lookup("WARREN_HEARTBEAT_S") {
            self.heartbeat = Duration::from_secs(num("WARREN_HEARTBEAT_S", &v)?);
        }
        if let Some(v) = lookup("RABBITMQ_RETRY_ATTEMPTS") {
            let n: u32 = num("RABBITMQ_RETRY_ATTEMPTS", &v)?;
            self.backoff.max_attempts = (n > 0).then_some(n);
        }
        if let Some(v) = lookup("RABBITMQ_RETRY_DELAY") {
            self.backoff.initial = duration("RABBITMQ_RETRY_DELAY", &v)?;
            self.backoff.max = self.backoff.max.max(self.backoff.initial);
        }
        if let Some(v) = lookup("WARREN_RETRY_MAX_DELAY") {
            self.backoff.max = duration("WARREN_RETRY_MAX_DELAY", &v)?;
        }
        if let Some(v) = lookup("WARREN_RETRY_FACTOR") {
            self.backoff.factor = num("WARREN_RETRY_FACTOR", &v)?;
        }
        if let Some(v) = lookup("WARREN_CONNECT_TIMEOUT_MS") {
            self.connect_timeout = Duration::from_millis(num("WARREN_CONNECT_TIMEOUT_MS", &v)?);
        }
        if let Some(v) = lookup("WARREN_WHEN_DISCONNECTED") {
            self.when_disconnected = v.parse()?;
        }
        self.validate()?;
        Ok(self)
    }

    /// Sets the broker URLs.
    ///
    /// # Errors
    /// [`Error::Config`] if the list is empty or a URL is not `amqp(s)://`.
    pub fn urls<I, S>(mut self, urls: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let urls = urls
            .into_iter()
            .map(BrokerUrl::new)
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return Err(Error::Config("no broker URL given".into()));
        }
        self.urls = urls;
        Ok(self)
    }

    /// Sets one broker URL.
    ///
    /// # Errors
    /// [`Error::Config`] if the URL is not `amqp(s)://`.
    pub fn url(self, url: impl Into<String>) -> Result<Self, Error> {
        self.urls([url])
    }

    /// Sets the exchange name.
    pub fn exchange(mut self, name: impl Into<String>) -> Self {
        self.exchange = name.into();
        self
    }

    /// Sets the default call deadline.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// Sets the prefetch of node consumers.
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// Sets the heartbeat interval.
    pub fn heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// Sets how long one connection attempt may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the connection backoff.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets what calls do while disconnected.
    pub fn when_disconnected(mut self, policy: WhenDisconnected) -> Self {
        self.when_disconnected = policy;
        self
    }

    /// Checks settings that cannot work.
    ///
    /// # Errors
    /// [`Error::Config`] describing the first unusable setting.
    pub fn validate(&self) -> Result<(), Error> {
        if self.urls.is_empty() {
            return Err(Error::Config("no broker URL given".into()));
        }
        if self.exchange.is_empty() || self.exchange.starts_with("amq.") {
            return Err(Error::Config(format!(
                "exchange name `{}` is empty or reserved (amq.*)",
                self.exchange
            )));
        }
        if self.exchange.len() > 255 {
            return Err(Error::Config(format!(
                "exchange name is {} bytes long; AMQP allows 255",
                self.exchange.len()
            )));
        }
        if self.prefetch == 0 {
            return Err(Error::Config(
                "prefetch 0 means unlimited deliveries in flight; give a positive number".into(),
            ));
        }
        if self.default_timeout.is_zero() {
            return Err(Error::Config("default_timeout must be positive".into()));
        }
        if self.connect_timeout.is_zero() {
            return Err(Error::Config("connect_timeout must be positive".into()));
        }
        self.backoff.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn passwords_never_print() {
        let url = BrokerUrl::new("amqp://user:s3cret@host:5672/%2f").unwrap();
        assert_eq!(url.to_string(), "amqp://user:***@host:5672/%2f");
        let cfg = Config::default().urls([url.expose()]).unwrap();
        assert!(!format!("{cfg:?}").contains("s3cret"));
        let err = BrokerUrl::new("http://u:s3cret@h").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn amqps_needs_the_tls_feature() {
        let url = BrokerUrl::new("amqps://user:s3cret@host/%2f");
        assert_eq!(url.is_ok(), cfg!(feature = "tls"));
        if let Err(err) = url {
            let err = err.to_string();
            assert!(
                err.contains("`tls` feature") && !err.contains("s3cret"),
                "{err}"
            );
        }
    }

    #[test]
    fn reads_the_environment() {
        let env: HashMap<&str, &str> = [
            ("RABBITMQ_URL", "amqp://a:1@h1/%2f, amqp://a:1@h2/%2f"),
            ("WARREN_PREFETCH", "7"),
            ("WARREN_DEADLINE_MS", "1500"),
            ("RABBITMQ_RETRY_ATTEMPTS", "3"),
        ]
        .into_iter()
        .collect();
        let cfg = Config::default()
            .with_env_from(|k| env.get(k).map(|v| (*v).to_owned()))
            .unwrap();
        assert_eq!(cfg.urls.len(), 2);
        assert_eq!(cfg.prefetch, 7);
        assert_eq!(cfg.default_timeout, Duration::from_millis(1500));
        assert_eq!(cfg.backoff.max_attempts, Some(3));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = Config::default()
            .with_env_from(|k| (k == "WARREN_PREFETCH").then(|| "lots".to_owned()))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: WARREN_PREFETCH=`lots` is not a valid number"
        );
        assert!(Config::default().prefetch(0).validate().is_err());
        assert!(Config::default()
            .exchange("x".repeat(256))
            .validate()
            .is_err());
    }

    #[test]
    fn retry_settings_from_the_environment() {
        let env: HashMap<&str, &str> = [
            ("RABBITMQ_RETRY_DELAY", "250"),
            ("WARREN_RETRY_FACTOR", "1.5"),
            ("WARREN_WHEN_DISCONNECTED", "fail-fast"),
            ("WARREN_CONNECT_TIMEOUT_MS", "1500"),
        ]
        .into_iter()
        .collect();
        let cfg = Config::default()
            .with_env_from(|k| env.get(k).map(|v| (*v).to_owned()))
            .unwrap();
        assert_eq!(cfg.backoff.initial, Duration::from_millis(250));
        assert!((cfg.backoff.factor - 1.5).abs() < f64::EPSILON);
        assert_eq!(cfg.when_disconnected, WhenDisconnected::FailFast);
        assert_eq!(cfg.connect_timeout, Duration::from_millis(1500));
        // A unit may be given; a delay longer than the cap raises the cap.
        let cfg = Config::default()
            .with_env_from(|k| (k == "RABBITMQ_RETRY_DELAY").then(|| "5s".to_owned()))
            .unwrap();
        assert_eq!(cfg.backoff.initial, Duration::from_secs(5));
        assert_eq!(cfg.backoff.max, Duration::from_secs(5));
        for (var, bad) in [
            ("RABBITMQ_RETRY_DELAY", "soon"),
            ("RABBITMQ_RETRY_DELAY", "5h"),
            ("WARREN_WHEN_DISCONNECTED", "panic"),
            ("WARREN_RETRY_FACTOR", "0.5"),
        ] {
            let err = Config::default()
                .with_env_from(|k| (k == var).then(|| bad.to_owned()))
                .unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{var}={bad}: {err}");
        }
    }
}
