//! Configuration, from code or from the environment.
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `RABBITMQ_URL` | broker URL; several, comma-separated, for a cluster | `amqp://guest:guest@127.0.0.1:5672/%2f` |
//! | `WARREN_AMQP_URL` | same, takes precedence (used by the test scripts) | |
//! | `WARREN_EXCHANGE` | the topic exchange | `stage7` |
//! | `WARREN_PREFETCH` | unacknowledged deliveries per consumer | `64` |
//! | `WARREN_DEADLINE_MS` | default call deadline | `30000` |
//! | `WARREN_HEARTBEAT_S` | AMQP heartbeat | `10` |
//! | `RABBITMQ_RETRY_ATTEMPTS` | connection attempts before giving up (`0`: forever) | `0` |
//! | `RABBITMQ_RETRY_DELAY` | first retry delay, ms | `100` |

use crate::error::Error;
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
    /// [`Error::Config`] if it does not start with `amqp://` or `amqps://`.
    pub fn new(url: impl Into<String>) -> Result<Self, Error> {
        let url = url.into();
        let url = url.trim().to_owned();
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return Err(Error::Config(format!(
                "broker URL `{}` must start with amqp:// or amqps://",
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

/// Exponential backoff with full jitter between connection attempts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Attempts before [`Connection::connect`](crate::Connection::connect)
    /// gives up; `None` tries forever. Reconnecting after a loss never
    /// gives up.
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// The delay before attempt number `attempt` (0-based): a random point
    /// in `[d/2, d]` where `d = initial * 2^attempt`, capped at `max`.
    #[must_use]
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.max);
        let half = exp / 2;
        half + half.mul_f64(jitter())
    }
}

/// A number in `[0, 1)`, random enough for spreading reconnects.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// What a call does when there is no broker connection at the moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhenDisconnected {
    /// Wait for the connection, up to the call's deadline.
    #[default]
    Wait,
    /// Fail at once with [`Error::Unavailable`].
    FailFast,
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
    /// AMQP heartbeat interval; a silent peer is detected after about twice this.
    pub heartbeat: Duration,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// Delays between connection attempts.
    pub backoff: Backoff,
    /// What calls do while disconnected.
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
            self.backoff.initial = Duration::from_millis(num("RABBITMQ_RETRY_DELAY", &v)?);
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
        Ok(())
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
    fn backoff_grows_and_is_capped() {
        let b = Backoff::default();
        for attempt in 0..30 {
            let d = b.delay(attempt);
            let full = (b.initial * 2u32.saturating_pow(attempt.min(16))).min(b.max);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
    }
}
