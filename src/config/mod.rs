//! Configuration, from code or from the environment (the variables are
//! listed on [`Config::from_env`]).

mod placement;
mod retry;
mod tls;

pub use placement::UrlOrder;
pub use retry::{Backoff, WhenDisconnected};
#[cfg(all(feature = "tls", any(feature = "http", feature = "metrics")))]
pub(crate) use tls::read_file;
pub use tls::TlsFiles;

use crate::error::Error;
use crate::events::QueueType;
use crate::message::setters;
use retry::duration;
use std::fmt;
use std::time::Duration;

/// The default broker URL: the local broker with the guest account.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A broker URL. Its password never appears in `Debug` or `Display`.
///
/// It remembers where it was set (`WARREN_AMQP_URL`, `RABBITMQ_URL`, or
/// code), so that connection errors name the setting to fix.
#[derive(Clone)]
pub struct BrokerUrl {
    url: String,
    setting: &'static str,
}

impl BrokerUrl {
    /// Wraps a URL (`amqp://` or `amqps://`), set in code.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] if it does not start with `amqp://` or
    /// `amqps://`, does not parse (a bad port, an unknown query), ends in
    /// `/` (see [`Error::InvalidUrl`]), or is `amqps://` in a build without
    /// warren's `tls` feature.
    pub fn new(url: impl Into<String>) -> Result<Self, Error> {
        Self::from_setting(url, "Config::urls")
    }

    /// Wraps a URL read from `setting`, the place error messages name.
    fn from_setting(url: impl Into<String>, setting: &'static str) -> Result<Self, Error> {
        let url = url.into().trim().to_owned();
        let invalid = |reason: String| Error::InvalidUrl {
            url: redact(&url),
            setting: setting.to_owned(),
            reason,
        };
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return Err(invalid("it must start with amqp:// or amqps://".into()));
        }
        let parsed = url.parse::<lapin::uri::AMQPUri>().map_err(invalid)?;
        // `amqp://host/` names the vhost "" (the URI spec), which RabbitMQ
        // does not have: almost always meant as the default vhost `/`.
        if parsed.vhost.is_empty() {
            return Err(invalid(
                "it ends in `/`, which names the empty vhost, not the default one; \
                 end it in `/%2f`, or leave the path out"
                    .into(),
            ));
        }
        if url.starts_with("amqps://") && !cfg!(feature = "tls") {
            return Err(invalid(
                "it is amqps://, which needs warren's `tls` feature".into(),
            ));
        }
        Ok(Self { url, setting })
    }
}

impl PartialEq for BrokerUrl {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
    }
}

impl Eq for BrokerUrl {}

/// Replaces the password in `scheme://user:password@host` with `***`. The
/// user info ends at the *last* `@`: a password holding a raw `@` (which a
/// URL should percent-encode, but people write) is hidden whole; an `@`
/// further on only hides more than the password.
fn redact(url: &str) -> String {
    let password = || {
        let start = url.find("://")? + 3;
        let at = start + url[start..].rfind('@')?;
        let colon = start + url[start..at].find(':')?;
        Some(colon + 1..at)
    };
    let mut redacted = url.to_owned();
    if let Some(password) = password() {
        redacted.replace_range(password, "***");
    }
    redacted
}

/// The full URL behind `expose`, where it was set behind `setting`, and
/// `Display`/`Debug` with the password as `***`, for a URL type holding
/// `url` and `setting`.
macro_rules! redacted_url {
    ($ty:ident, $settings:literal) => {
        impl $ty {
            /// The full URL, password included. Do not log it.
            #[must_use]
            pub fn expose(&self) -> &str {
                &self.url
            }

            #[doc = concat!("Where the URL was set: ", $settings, ".")]
            #[must_use]
            pub fn setting(&self) -> &'static str {
                self.setting
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&redact(&self.url))
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($ty), "({})"), self)
            }
        }
    };
}

redacted_url!(
    BrokerUrl,
    "`WARREN_AMQP_URL`, `RABBITMQ_URL` (also for the default URL, when \
     neither is set), or `Config::urls`"
);
redacted_url!(
    ManagementUrl,
    "`WARREN_MANAGEMENT_URL` or `Config::management_url`"
);

/// The URL of the broker's management HTTP API (the `rabbitmq_management`
/// plugin), such as `http://monitor:secret@127.0.0.1:15672`: what
/// `ManagementStats` (feature `http`) reads queue statistics
/// and rates from. Without a user in it, the first broker URL's
/// credentials are used. Like [`BrokerUrl`], it prints with `***` for the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct ManagementUrl {
    url: String,
    setting: &'static str,
}

impl ManagementUrl {
    /// Wraps a URL (`http://` or `https://`, host and port, no path
    /// needed), set in code.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] if it is not `http://` or `https://` or has
    /// no host.
    pub fn new(url: impl Into<String>) -> Result<Self, Error> {
        Self::from_setting(url, "Config::management_url")
    }

    fn from_setting(url: impl Into<String>, setting: &'static str) -> Result<Self, Error> {
        let url = url.into().trim().to_owned();
        let invalid = |reason: &str| Error::InvalidUrl {
            url: redact(&url),
            setting: setting.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| invalid("it must start with http:// or https://"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        if host.is_empty() || host.starts_with(':') {
            return Err(invalid("it names no host"));
        }
        Ok(Self { url, setting })
    }
}

/// How to reach the broker and how calls behave.
///
/// From the environment ([`Config::from_env`] lists every
/// variable), or from code:
///
/// ```
/// use std::time::Duration;
/// use warren::{BrokerUrl, Config};
///
/// # fn main() -> Result<(), warren::Error> {
/// let mut config = Config::default();
/// // The vhost `/` is written `%2f`; `amqps://` for TLS.
/// config.urls = vec![BrokerUrl::new("amqp://app:secret@10.0.0.7:5672/%2f")?];
/// config.default_timeout = Duration::from_secs(5);
/// config.prefetch = 16;
/// // The password never shows:
/// assert_eq!(
///     config.urls[0].to_string(),
///     "amqp://app:***@10.0.0.7:5672/%2f"
/// );
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
#[non_exhaustive]
pub struct Config {
    /// Broker URLs, tried in turn (the nodes of a cluster, or standbys),
    /// starting where [`Config::url_order`] says.
    pub urls: Vec<BrokerUrl>,
    /// Which URL a connection tries first: see [`UrlOrder`] (by default
    /// each connection starts at a random one, spreading processes over a
    /// cluster's nodes).
    pub url_order: UrlOrder,
    /// The topic exchange (`stage7`).
    pub exchange: String,
    /// The type of the durable queues that must outlive a broker node: a
    /// node's work queue (`<type>`), and the queues of event subscriptions
    /// that set no [`queue_type`](crate::events::Subscription::queue_type).
    /// [`QueueType::Quorum`] on a cluster (see `docs/CLUSTER.md`); classic
    /// by default, declared without `x-queue-type`. With quorum, a node's
    /// own instance queue is declared transient (not durable), so that it
    /// is declared again on a surviving node after its node is lost.
    pub queue_type: QueueType,
    /// The durable topic exchange [events](crate::events) are published
    /// on (`app.events`).
    pub events_exchange: String,
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
    /// The largest request or reply body accepted, in bytes
    /// (`WARREN_MAX_BODY`). Over plain `amqp://`, a larger body is dropped
    /// as it arrives, never buffered (see `SECURITY.md`).
    pub max_body: usize,
    /// The most body bytes a consumer may hold in deliveries not yet
    /// acknowledged (`WARREN_BODY_BUDGET`, default 1 GiB): the prefetch of
    /// node and event consumers is at most `body_budget / max_body` (and at
    /// least 1), so their bodies in flight stay within it.
    pub body_budget: usize,
    /// A name shown for the connection in the broker's management UI.
    pub connection_name: Option<String>,
    /// The settling time after a reconnection, while the service nodes
    /// come back too. Within it, a request the broker returns as
    /// unroutable is published again after a short pause (within its
    /// deadline) instead of failing with `NoRoute` at once, and the HTTP
    /// fallback keeps sending over HTTP to peers not yet seen consuming
    /// again. Zero turns both off.
    pub settle: Duration,
    /// The vhost, when set apart from the URLs ([`Config::vhost`],
    /// `WARREN_VHOST`): it replaces the vhost of every URL.
    pub vhost: Option<String>,
    /// Where `vhost` was set, for the errors that name it.
    vhost_setting: &'static str,
    /// TLS to the broker beyond the platform's trust store (a CA, a client
    /// certificate): see [`TlsFiles`].
    pub tls: TlsFiles,
    /// The broker's management HTTP API, when there is one to read queue
    /// statistics and rates from ([`Config::management_url`],
    /// `WARREN_MANAGEMENT_URL`); none by default.
    pub management_url: Option<ManagementUrl>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            urls: vec![BrokerUrl {
                url: DEFAULT_URL.to_owned(),
                // Unset, so the default: setting it is the fix.
                setting: "RABBITMQ_URL",
            }],
            url_order: UrlOrder::default(),
            exchange: "stage7".to_owned(),
            queue_type: QueueType::Classic,
            events_exchange: "app.events".to_owned(),
            prefetch: 64,
            default_timeout: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            backoff: Backoff::default(),
            when_disconnected: WhenDisconnected::default(),
            max_body: 16 * 1024 * 1024,
            body_budget: 1024 * 1024 * 1024,
            connection_name: None,
            settle: Duration::from_secs(5),
            vhost: None,
            vhost_setting: "Config::vhost",
            tls: TlsFiles::default(),
            management_url: None,
        }
    }
}

impl Config {
    /// The defaults, overridden by whatever the environment sets.
    ///
    /// | variable | meaning | default |
    /// | --- | --- | --- |
    /// | `RABBITMQ_URL` | broker URL; several, comma-separated, for a cluster | `amqp://guest:guest@127.0.0.1:5672/%2f` |
    /// | `WARREN_AMQP_URL` | same, takes precedence (used by the test scripts) | |
    /// | `WARREN_URL_ORDER` | `spread` or `in-order`: which URL a connection tries first, see [`UrlOrder`] | `spread` |
    /// | `WARREN_VHOST` | the vhost, plain (`/`, `orders`); replaces the one in every URL | the URLs' |
    /// | `WARREN_TLS_CA` | PEM file of CA certificates to trust for `amqps://`, besides the platform's | none |
    /// | `WARREN_TLS_CERT`, `WARREN_TLS_KEY` | PEM files of a client certificate and its PKCS#8 key (mutual TLS); both or neither | none |
    /// | `WARREN_EXCHANGE` | the topic exchange | `stage7` |
    /// | `WARREN_QUEUE_TYPE` | `classic` or `quorum`: the type of the durable queues, see [`Config::queue_type`] | `classic` |
    /// | `WARREN_EVENTS_EXCHANGE` | the topic exchange of [events](crate::events) | `app.events` |
    /// | `WARREN_PREFETCH` | unacknowledged deliveries per consumer | `64` |
    /// | `WARREN_MAX_BODY` | the largest request or reply body, bytes: see [`Config::max_body`] | `16777216` (16 MiB) |
    /// | `WARREN_BODY_BUDGET` | body bytes a consumer holds unacknowledged: see [`Config::body_budget`] | `1073741824` (1 GiB) |
    /// | `WARREN_DEADLINE_MS` | default call deadline | `30000` |
    /// | `WARREN_HEARTBEAT_S` | AMQP heartbeat, seconds | `10` |
    /// | `WARREN_CONNECT_TIMEOUT_MS` | how long one connection attempt may take | `5000` |
    /// | `WARREN_WHEN_DISCONNECTED` | `wait` or `fail-fast`: see [`WhenDisconnected`] | `wait` |
    /// | `RABBITMQ_RETRY_ATTEMPTS` | connection attempts before [`Connection::connect`](crate::Connection::connect) gives up (`0`: never) | `10` (about 10 s) |
    /// | `RABBITMQ_RETRY_DELAY` | first retry delay: milliseconds, or with a unit (`500ms`, `2s`) | `100` |
    /// | `WARREN_RETRY_MAX_DELAY` | longest retry delay, same syntax | `2s` |
    /// | `WARREN_RETRY_FACTOR` | growth of the delay per failed attempt | `2` |
    /// | `WARREN_SETTLE_MS` | the settling time after a reconnection: see [`Config::settle`] | `5000` |
    /// | `WARREN_MANAGEMENT_URL` | the broker's management HTTP API (`http://user:password@host:15672`), for queue rates: see [`Config::management_url`] | none |
    ///
    /// A broker URL is checked when it is set: one that cannot work (see
    /// [`BrokerUrl::new`]) is an [`Error::InvalidUrl`] naming the variable.
    /// The default vhost `/` is written `%2f` (`amqp://host:5672/%2f`), or the
    /// path left out; a URL ending in `/` names the empty vhost, which RabbitMQ
    /// does not have, and is refused.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable whose value cannot be used;
    /// [`Error::InvalidUrl`] naming it for a broker URL.
    pub fn from_env() -> Result<Self, Error> {
        Self::default().with_env_from(|k| std::env::var(k).ok())
    }

    /// Applies settings from `lookup` (the environment, or a map in tests).
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable whose value cannot be used;
    /// [`Error::InvalidUrl`] naming it for a broker URL.
    pub fn with_env_from(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        // A number from the variable `name`, if it is set.
        fn var<T: std::str::FromStr>(
            lookup: &dyn Fn(&str) -> Option<String>,
            name: &str,
        ) -> Result<Option<T>, Error> {
            let Some(v) = lookup(name) else {
                return Ok(None);
            };
            let invalid = |_| Error::Config(format!("{name}=`{v}` is not a valid number"));
            v.trim().parse().map(Some).map_err(invalid)
        }
        let urls = ["WARREN_AMQP_URL", "RABBITMQ_URL"]
            .into_iter()
            .find_map(|var| lookup(var).map(|urls| (var, urls)));
        if let Some((var, urls)) = urls {
            self = self.urls_from(var, urls.split(','))?;
        }
        let (cert, key) = (lookup("WARREN_TLS_CERT"), lookup("WARREN_TLS_KEY"));
        let ca = lookup("WARREN_TLS_CA");
        if cert.is_some() != key.is_some() {
            return Err(Error::Config(
                "WARREN_TLS_CERT and WARREN_TLS_KEY go together: set both for mutual TLS, or neither"
                    .into(),
            ));
        }
        let server_name = lookup("WARREN_TLS_SERVER_NAME");
        if cert.is_some() || ca.is_some() || server_name.is_some() {
            self.tls.setting =
                "WARREN_TLS_CA / WARREN_TLS_CERT / WARREN_TLS_KEY / WARREN_TLS_SERVER_NAME";
        }
        if let Some(name) = server_name {
            self = self.tls_server_name(name)?;
        }
        if let (Some(cert), Some(key)) = (cert, key) {
            self = self.tls_client(cert, key);
        }
        if let Some(ca) = ca {
            self = self.tls_ca(ca);
        }
        if let Some(v) = lookup("WARREN_VHOST") {
            self = self.vhost_from("WARREN_VHOST", v)?;
        }
        self.exchange = lookup("WARREN_EXCHANGE").unwrap_or(self.exchange);
        self.queue_type = lookup("WARREN_QUEUE_TYPE").map_or(Ok(self.queue_type), |v| v.parse())?;
        self.events_exchange = lookup("WARREN_EVENTS_EXCHANGE").unwrap_or(self.events_exchange);
        self.prefetch = var(&lookup, "WARREN_PREFETCH")?.unwrap_or(self.prefetch);
        self.max_body = var(&lookup, "WARREN_MAX_BODY")?.unwrap_or(self.max_body);
        self.body_budget = var(&lookup, "WARREN_BODY_BUDGET")?.unwrap_or(self.body_budget);
        let ms = var(&lookup, "WARREN_DEADLINE_MS")?;
        self.default_timeout = ms.map_or(self.default_timeout, Duration::from_millis);
        self.heartbeat =
            var(&lookup, "WARREN_HEARTBEAT_S")?.map_or(self.heartbeat, Duration::from_secs);
        if let Some(n) = var::<u32>(&lookup, "RABBITMQ_RETRY_ATTEMPTS")? {
            self.backoff.max_attempts = (n > 0).then_some(n);
        }
        if let Some(v) = lookup("RABBITMQ_RETRY_DELAY") {
            self.backoff.initial = duration("RABBITMQ_RETRY_DELAY", &v)?;
            self.backoff.max = self.backoff.max.max(self.backoff.initial);
        }
        if let Some(v) = lookup("WARREN_RETRY_MAX_DELAY") {
            self.backoff.max = duration("WARREN_RETRY_MAX_DELAY", &v)?;
        }
        self.backoff.factor = var(&lookup, "WARREN_RETRY_FACTOR")?.unwrap_or(self.backoff.factor);
        let ms = var(&lookup, "WARREN_CONNECT_TIMEOUT_MS")?;
        self.connect_timeout = ms.map_or(self.connect_timeout, Duration::from_millis);
        self.settle = var(&lookup, "WARREN_SETTLE_MS")?.map_or(self.settle, Duration::from_millis);
        if let Some(v) = lookup("WARREN_MANAGEMENT_URL") {
            self.management_url = Some(ManagementUrl::from_setting(v, "WARREN_MANAGEMENT_URL")?);
        }
        self.url_order = lookup("WARREN_URL_ORDER").map_or(Ok(self.url_order), |v| v.parse())?;
        self.when_disconnected =
            lookup("WARREN_WHEN_DISCONNECTED").map_or(Ok(self.when_disconnected), |v| v.parse())?;
        self.validate()?;
        Ok(self)
    }

    /// Sets the broker URLs.
    ///
    /// # Errors
    /// [`Error::Config`] if the list is empty; [`Error::InvalidUrl`] for a
    /// URL that cannot work (see [`BrokerUrl::new`]).
    pub fn urls<I, S>(self, urls: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.urls_from("Config::urls", urls)
    }

    /// Sets the vhost of every broker URL, replacing the one in their path.
    /// The name is plain, not URL-encoded: `/` is the default vhost,
    /// `orders` the vhost named orders.
    ///
    /// # Errors
    /// [`Error::Config`] if `vhost` is empty (RabbitMQ has no such vhost).
    pub fn vhost(self, vhost: impl Into<String>) -> Result<Self, Error> {
        self.vhost_from("Config::vhost", vhost.into())
    }

    fn vhost_from(mut self, setting: &'static str, vhost: String) -> Result<Self, Error> {
        if vhost.is_empty() {
            return Err(Error::Config(format!(
                "{setting} is empty; the default vhost is `/`"
            )));
        }
        (self.vhost, self.vhost_setting) = (Some(vhost), setting);
        Ok(self)
    }

    /// Reads queue statistics and rates from the broker's management HTTP
    /// API at `url` (`http://user:password@host:15672`; without a user,
    /// the first broker URL's credentials), for
    /// `ManagementStats` (feature `http`) and `warren stats`.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] if it is not `http://` or `https://`.
    pub fn management_url(mut self, url: impl Into<String>) -> Result<Self, Error> {
        self.management_url = Some(ManagementUrl::new(url)?);
        Ok(self)
    }

    /// The vhost set apart from the URLs and where it was set.
    pub(crate) fn vhost_override(&self) -> Option<(&str, &'static str)> {
        self.vhost.as_deref().map(|v| (v, self.vhost_setting))
    }

    /// Trusts the CA certificates in the PEM file `ca` for `amqps://`
    /// URLs, besides the platform's (for a broker whose certificate a
    /// private CA signed).
    pub fn tls_ca(mut self, ca: impl Into<std::path::PathBuf>) -> Self {
        self.tls.ca = Some(ca.into());
        self
    }

    /// Shows the broker the client certificate in the PEM file `cert`, with
    /// its PKCS#8 private key in `key` (mutual TLS).
    pub fn tls_client(
        mut self,
        cert: impl Into<std::path::PathBuf>,
        key: impl Into<std::path::PathBuf>,
    ) -> Self {
        (self.tls.cert, self.tls.key) = (Some(cert.into()), Some(key.into()));
        self
    }

    /// Checks the broker's certificate against `name` rather than the
    /// URL's host: for a broker reached by IP address, or through a load
    /// balancer or tunnel whose name its certificate does not list. The
    /// connection still goes to the URL's host.
    ///
    /// # Errors
    /// [`Error::Config`] if `name` is not a DNS name or an IP address.
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Result<Self, Error> {
        let name = name.into();
        let dns = |s: &str| {
            // An empty name is one empty label.
            s.len() <= 253
                && s.split('.').all(|label| {
                    (1..=63).contains(&label.len())
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                })
        };
        if name.parse::<std::net::IpAddr>().is_err() && !dns(&name) {
            return Err(Error::Config(format!(
                "{}: TLS server name `{name}` is neither a DNS name nor an IP address",
                self.tls.setting
            )));
        }
        self.tls.server_name = Some(name);
        Ok(self)
    }

    /// Sets the broker URLs read from `setting`; empty items are skipped.
    fn urls_from<I, S>(mut self, setting: &'static str, urls: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let urls = urls
            .into_iter()
            .map(Into::into)
            .filter(|u: &String| !u.trim().is_empty())
            .map(|u| BrokerUrl::from_setting(u, setting))
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return Err(Error::Config(format!("no broker URL given in {setting}")));
        }
        self.urls = urls;
        Ok(self)
    }

    /// Sets one broker URL.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for a URL that cannot work (see
    /// [`BrokerUrl::new`]).
    pub fn url(self, url: impl Into<String>) -> Result<Self, Error> {
        self.urls([url])
    }

    setters! {
        /// Sets the type of the durable queues ([`Config::queue_type`]).
        fn queue_type(queue_type: QueueType);
        /// Sets which URL a connection tries first ([`UrlOrder`]).
        fn url_order(url_order: UrlOrder);
        /// Sets the default call deadline.
        fn default_timeout(default_timeout: Duration);
        /// Sets the prefetch of node consumers.
        fn prefetch(prefetch: u16);
        /// Sets the heartbeat interval.
        fn heartbeat(heartbeat: Duration);
        /// Sets how long one connection attempt may take.
        fn connect_timeout(connect_timeout: Duration);
        /// Sets the largest request or reply body, in bytes.
        fn max_body(max_body: usize);
        /// Sets the most body bytes a consumer holds unacknowledged
        /// ([`Config::body_budget`]).
        fn body_budget(body_budget: usize);
        /// Sets the connection backoff.
        fn backoff(backoff: Backoff);
        /// Sets what calls do while disconnected.
        fn when_disconnected(when_disconnected: WhenDisconnected);
        /// Sets the settling time after a reconnection ([`Config::settle`]).
        fn settle(settle: Duration);
        /// Sets the exchange name.
        fn exchange(exchange: impl Into<String>) => exchange.into();
        /// Sets the exchange events are published on and subscribed to.
        fn events_exchange(events_exchange: impl Into<String>) => events_exchange.into();
        /// Sets the connection name the broker shows.
        fn connection_name(connection_name: impl Into<String>) => Some(connection_name.into());
    }

    /// The prefetch a consumer asking for `prefetch` gets: at most
    /// `body_budget / max_body` (at least 1), so that the bodies it holds
    /// stay within [`Config::body_budget`].
    #[must_use]
    pub fn budgeted_prefetch(&self, prefetch: u16) -> u16 {
        let fits = self.body_budget / self.max_body.max(1);
        prefetch.min(u16::try_from(fits).unwrap_or(u16::MAX)).max(1)
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
        if self.max_body == 0 || self.body_budget == 0 {
            return Err(Error::Config(
                "max_body and body_budget must be positive (bytes)".into(),
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

    /// The defaults with the variables `vars` set.
    fn with_env(vars: &[(&str, &str)]) -> Result<Config, Error> {
        Config::default().with_env_from(|k| {
            let found = vars.iter().find(|(name, _)| *name == k);
            found.map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn passwords_never_print() {
        let url = BrokerUrl::new("amqp://user:s3cret@host:5672/%2f").unwrap();
        assert_eq!(url.to_string(), "amqp://user:***@host:5672/%2f");
        let cfg = Config::default().urls([url.expose()]).unwrap();
        assert!(!format!("{cfg:?}").contains("s3cret"));
        let err = BrokerUrl::new("http://u:s3cret@h").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        // Raw `@`, `:` and `/`, and percent-encoded characters.
        for (url, shown) in [
            ("amqp://u:p@ss:w@host/%2f", "amqp://u:***@host/%2f"),
            ("amqp://u:a%40b%3Ac@host:5672/v", "amqp://u:***@host:5672/v"),
            ("amqp://u:s3:cr@t@h/%2f", "amqp://u:***@h/%2f"),
        ] {
            assert_eq!(redact(url), shown);
        }
    }

    #[test]
    fn tls_files_from_the_environment() {
        let cfg = with_env(&[
            ("WARREN_TLS_CA", "/etc/ca.pem"),
            ("WARREN_TLS_CERT", "/etc/c.pem"),
            ("WARREN_TLS_KEY", "/etc/c.key"),
        ])
        .unwrap();
        assert_eq!(cfg.tls.ca, Some("/etc/ca.pem".into()));
        assert_eq!(cfg.tls.key, Some("/etc/c.key".into()));
        assert!(cfg.tls.setting.contains("WARREN_TLS_CA"));
        let err = with_env(&[("WARREN_TLS_CERT", "/etc/c.pem")]).unwrap_err();
        assert!(
            matches!(&err, Error::Config(m) if m.contains("WARREN_TLS_KEY")),
            "{err}"
        );
        assert!(!Config::default().tls.is_set());
        let cfg = with_env(&[("WARREN_TLS_SERVER_NAME", "rabbit.internal")]).unwrap();
        assert_eq!(cfg.tls.server_name.as_deref(), Some("rabbit.internal"));
        let err = with_env(&[("WARREN_TLS_SERVER_NAME", "rabbit/internal")]).unwrap_err();
        assert!(
            matches!(&err, Error::Config(m) if m.contains("WARREN_TLS_SERVER_NAME") && m.contains("rabbit/internal")),
            "{err}"
        );
    }

    #[test]
    fn unusable_urls_are_refused_up_front_naming_the_setting() {
        for (var, url, says) in [
            ("WARREN_AMQP_URL", "amqp://u:s3cret@h:notaport/%2f", "port"),
            ("RABBITMQ_URL", "amqp://u:s3cret@h:5672/", "empty vhost"),
            ("RABBITMQ_URL", "http://u:s3cret@h", "amqp://"),
        ] {
            let err = with_env(&[(var, url)]).unwrap_err();
            let Error::InvalidUrl { setting, .. } = &err else {
                panic!("{var}={url}: {err}");
            };
            assert_eq!(setting, var);
            let msg = err.to_string();
            assert!(msg.starts_with(var) && msg.contains(says), "{msg}");
            assert!(!msg.contains("s3cret"), "{msg}");
        }
        let err = Config::default().url("amqp://h/").unwrap_err();
        assert!(err.to_string().starts_with("Config::urls"), "{err}");
        // No path, or %2f: the default vhost.
        for url in ["amqp://h:5672", "amqp://h:5672/%2f"] {
            assert_eq!(Config::default().url(url).unwrap().urls[0].expose(), url);
        }
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
        let cfg = with_env(&[
            ("RABBITMQ_URL", "amqp://a:1@h1/%2f, amqp://a:1@h2/%2f"),
            ("WARREN_PREFETCH", "7"),
            ("WARREN_DEADLINE_MS", "1500"),
            ("RABBITMQ_RETRY_ATTEMPTS", "3"),
            ("WARREN_SETTLE_MS", "2500"),
            ("WARREN_EVENTS_EXCHANGE", "shop.events"),
            ("WARREN_URL_ORDER", "in-order"),
            ("WARREN_QUEUE_TYPE", "quorum"),
            ("WARREN_MAX_BODY", "1048576"),
            ("WARREN_BODY_BUDGET", "4194304"),
        ])
        .unwrap();
        assert_eq!(cfg.url_order, UrlOrder::InOrder);
        assert_eq!(cfg.queue_type, QueueType::Quorum);
        assert_eq!(Config::default().url_order, UrlOrder::Spread);
        assert_eq!(Config::default().queue_type, QueueType::Classic);
        assert_eq!(cfg.events_exchange, "shop.events");
        assert_eq!(cfg.urls.len(), 2);
        assert_eq!(cfg.prefetch, 7);
        assert_eq!(cfg.max_body, 1 << 20);
        // 4 MiB of 1 MiB bodies: 4 in flight, not 7.
        assert_eq!(cfg.budgeted_prefetch(cfg.prefetch), 4);
        assert_eq!(cfg.clone().body_budget(1).budgeted_prefetch(7), 1);
        assert_eq!(Config::default().budgeted_prefetch(64), 64);
        assert_eq!(cfg.default_timeout, Duration::from_millis(1500));
        assert_eq!(cfg.backoff.max_attempts, Some(3));
        assert_eq!(cfg.settle, Duration::from_millis(2500));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = with_env(&[("WARREN_PREFETCH", "lots")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: WARREN_PREFETCH=`lots` is not a valid number"
        );
        let err = with_env(&[("WARREN_QUEUE_TYPE", "mirrored")]).unwrap_err();
        assert!(
            err.to_string().contains("`mirrored` is not a queue type"),
            "{err}"
        );
        assert!(Config::default().prefetch(0).validate().is_err());
        assert!(Config::default()
            .exchange("x".repeat(256))
            .validate()
            .is_err());
    }

    #[test]
    fn retry_settings_from_the_environment() {
        let cfg = with_env(&[
            ("RABBITMQ_RETRY_DELAY", "250"),
            ("WARREN_RETRY_FACTOR", "1.5"),
            ("WARREN_WHEN_DISCONNECTED", "fail-fast"),
            ("WARREN_CONNECT_TIMEOUT_MS", "1500"),
        ])
        .unwrap();
        assert_eq!(cfg.backoff.initial, Duration::from_millis(250));
        assert!((cfg.backoff.factor - 1.5).abs() < f64::EPSILON);
        assert_eq!(cfg.when_disconnected, WhenDisconnected::FailFast);
        assert_eq!(cfg.connect_timeout, Duration::from_millis(1500));
        // A unit may be given; a delay longer than the cap raises the cap.
        let cfg = with_env(&[("RABBITMQ_RETRY_DELAY", "5s")]).unwrap();
        assert_eq!(cfg.backoff.initial, Duration::from_secs(5));
        assert_eq!(cfg.backoff.max, Duration::from_secs(5));
        for (var, bad) in [
            ("RABBITMQ_RETRY_DELAY", "soon"),
            ("RABBITMQ_RETRY_DELAY", "5h"),
            ("WARREN_WHEN_DISCONNECTED", "panic"),
            ("WARREN_RETRY_FACTOR", "0.5"),
        ] {
            let err = with_env(&[(var, bad)]).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{var}={bad}: {err}");
        }
    }
}
