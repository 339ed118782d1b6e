//! Queue statistics with rates, from the broker's management HTTP API (the
//! `rabbitmq_management` plugin), for the same queues as
//! [`QueueStats`](crate::QueueStats) reads by passive declares.

use crate::address::{ServiceId, ServiceType};
use crate::config::{Config, ManagementUrl};
use crate::events::RetryPolicy;
use crate::stats::{events_queues, service_queues, QueueKind};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// How long one request to the management API may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why the management API could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManagementError {
    /// No management URL is set.
    #[error(
        "no management API is configured; set WARREN_MANAGEMENT_URL (or Config::management_url) to http://user:password@host:15672"
    )]
    NotConfigured,
    /// The URL cannot be used (it does not parse).
    #[error("the management URL {url} set in {setting} cannot be used: {reason}")]
    InvalidUrl {
        /// The URL, password hidden.
        url: String,
        /// Where it was set.
        setting: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing answered at the URL (refused, timed out, TLS failed).
    #[error(
        "the management API at {url} is unreachable ({reason}); check {setting} and that the broker runs the rabbitmq_management plugin"
    )]
    Unreachable {
        /// The URL, password hidden.
        url: String,
        /// Where it was set.
        setting: String,
        /// What the HTTP client reported.
        reason: String,
    },
    /// The API refused the credentials (401).
    #[error(
        "the management API at {url} refused user `{user}` (401 Unauthorized); fix the user name or password in {setting}"
    )]
    Unauthorized {
        /// The URL, password hidden.
        url: String,
        /// The user name that was refused.
        user: String,
        /// Where the credentials were set.
        setting: String,
    },
    /// The API answered with another error status (403 for a user without
    /// the `monitoring` or `management` tag, or no access to the vhost).
    #[error("the management API at {url} answered {status} for queue `{queue}`: {body}")]
    Status {
        /// The URL, password hidden.
        url: String,
        /// The queue asked about.
        queue: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// The answer was not a queue's JSON.
    #[error("the management API at {url} answered for queue `{queue}` with what is not a queue's JSON: {reason}")]
    Invalid {
        /// The URL, password hidden.
        url: String,
        /// The queue asked about.
        queue: String,
        /// What did not parse.
        reason: String,
    },
}

/// Messages per second through a queue, as the broker's management
/// plugin samples them (every 5 s by default: `collect_statistics_interval`).
/// A rate is `None` until the broker has sampled that kind of traffic on
/// the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct QueueRates {
    /// Messages published into the queue per second.
    pub publish: Option<f64>,
    /// Messages delivered to consumers (or fetched) per second.
    pub deliver: Option<f64>,
    /// Deliveries acknowledged per second.
    pub ack: Option<f64>,
}

/// One queue as the management API reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct QueueDetail {
    /// The queue's name.
    pub queue: String,
    /// What it is for.
    pub kind: QueueKind,
    /// Whether it exists (the rest is 0 when it does not).
    pub exists: bool,
    /// Messages ready for delivery.
    pub messages: u64,
    /// Messages delivered and not yet acknowledged.
    pub unacked: u64,
    /// Consumers taking from it.
    pub consumers: u64,
    /// Its rates.
    pub rates: QueueRates,
}

/// Reads queue statistics and rates from the broker's management HTTP API
/// (`GET /api/queues/<vhost>/<queue>`) at [`Config::management_url`], for
/// the vhost of the configuration; see [`ManagementStats::service`] and
/// [`ManagementStats::events`]. Needs no broker connection.
///
/// ```no_run
/// use warren::{Config, ManagementStats};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::from_env()?.management_url("http://monitor:secret@127.0.0.1:15672")?;
/// for q in ManagementStats::new(&config)?.service(&"billing".parse()?, &[]).await? {
///     println!("{}: {} ready, {:?}/s published", q.queue, q.messages, q.rates.publish);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ManagementStats {
    http: reqwest::Client,
    config: Config,
    /// The API's URL, credentials taken out.
    base: reqwest::Url,
    user: String,
    password: String,
    /// Where the credentials were set, for the errors.
    credentials: String,
    /// Where the URL was set.
    setting: &'static str,
    vhost: String,
}

impl fmt::Debug for ManagementStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagementStats")
            .field("url", &self.base.as_str())
            .field("user", &self.user)
            .field("vhost", &self.vhost)
            .finish_non_exhaustive()
    }
}

/// An error and its causes, `: `-separated (reqwest's own text is only
/// "error sending request").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Percent-decodes a URL's user name or password.
fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

impl ManagementStats {
    /// Statistics from `config`'s management API, for its vhost
    /// ([`Config::vhost`], else the first broker URL's), with the
    /// management URL's credentials, else the first broker URL's.
    ///
    /// # Errors
    /// [`ManagementError::NotConfigured`] without a management URL;
    /// [`ManagementError::InvalidUrl`] if it does not parse.
    pub fn new(config: &Config) -> Result<Self, ManagementError> {
        let url: &ManagementUrl = config
            .management_url
            .as_ref()
            .ok_or(ManagementError::NotConfigured)?;
        let invalid = |reason: String| ManagementError::InvalidUrl {
            url: url.to_string(),
            setting: url.setting().to_owned(),
            reason,
        };
        let mut base = reqwest::Url::parse(url.expose()).map_err(|e| invalid(e.to_string()))?;
        let broker = config
            .urls
            .first()
            .and_then(|u| u.expose().parse::<lapin::uri::AMQPUri>().ok());
        let (user, password, credentials) = if base.username().is_empty() {
            let userinfo = broker
                .as_ref()
                .map(|b| b.authority.userinfo.clone())
                .unwrap_or_default();
            let from = config.urls.first().map_or("RABBITMQ_URL", |u| u.setting());
            (
                userinfo.username,
                userinfo.password,
                format!(
                    "{from} (the management URL in {} has no user)",
                    url.setting()
                ),
            )
        } else {
            (
                decode(base.username()),
                decode(base.password().unwrap_or_default()),
                url.setting().to_owned(),
            )
        };
        base.set_username("")
            .and_then(|()| base.set_password(None))
            .map_err(|()| invalid("it cannot hold credentials".into()))?;
        let vhost = match config.vhost_override() {
            Some((vhost, _)) => vhost.to_owned(),
            None => broker.map_or_else(|| "/".to_owned(), |b| b.vhost),
        };
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| invalid(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Self {
            http,
            config: config.clone(),
            base,
            user,
            password,
            credentials,
            setting: url.setting(),
            vhost,
        })
    }

    /// The work queue of `service` and the instance queues of `instances`
    /// (as [`QueueStats::service`](crate::QueueStats::service)).
    ///
    /// # Errors
    /// A [`ManagementError`] for the first queue that could not be read
    /// (a missing queue is not an error: `exists` is false).
    pub async fn service(
        &self,
        service: &ServiceType,
        instances: &[ServiceId],
    ) -> Result<Vec<QueueDetail>, ManagementError> {
        self.read(service_queues(&self.config, service, instances))
            .await
    }

    /// The queues of a subscribing service: `<service>.q`, its delay
    /// queues under `retry`, and `<service>.dlq` (as
    /// [`QueueStats::events`](crate::QueueStats::events)).
    ///
    /// # Errors
    /// As [`ManagementStats::service`].
    pub async fn events(
        &self,
        service: &str,
        retry: &RetryPolicy,
    ) -> Result<Vec<QueueDetail>, ManagementError> {
        self.read(events_queues(&self.config, service, retry)).await
    }

    async fn read(
        &self,
        queues: Vec<(String, QueueKind)>,
    ) -> Result<Vec<QueueDetail>, ManagementError> {
        let mut out = Vec::with_capacity(queues.len());
        for (queue, kind) in queues {
            out.push(self.queue(queue, kind).await?);
        }
        Ok(out)
    }

    /// `GET /api/queues/<vhost>/<queue>`.
    async fn queue(&self, queue: String, kind: QueueKind) -> Result<QueueDetail, ManagementError> {
        let shown = self.base.as_str().trim_end_matches('/').to_owned();
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| ManagementError::InvalidUrl {
                url: shown.clone(),
                setting: self.setting.to_owned(),
                reason: "it cannot be a base URL".into(),
            })?
            .pop_if_empty()
            .extend(["api", "queues", self.vhost.as_str(), queue.as_str()]);
        let answer = self
            .http
            .get(url)
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .map_err(|e| ManagementError::Unreachable {
                url: shown.clone(),
                setting: self.setting.to_owned(),
                reason: chain(&e),
            })?;
        let status = answer.status();
        let body = answer.bytes().await.unwrap_or_default();
        match status.as_u16() {
            200 => {}
            404 => {
                return Ok(QueueDetail {
                    queue,
                    kind,
                    exists: false,
                    messages: 0,
                    unacked: 0,
                    consumers: 0,
                    rates: QueueRates::default(),
                })
            }
            401 => {
                return Err(ManagementError::Unauthorized {
                    url: shown,
                    user: self.user.clone(),
                    setting: self.credentials.clone(),
                })
            }
            code => {
                let body = String::from_utf8_lossy(&body);
                return Err(ManagementError::Status {
                    url: shown,
                    queue,
                    status: code,
                    body: body.chars().take(200).collect(),
                });
            }
        }
        let read: Wire = serde_json::from_slice(&body).map_err(|e| ManagementError::Invalid {
            url: shown,
            queue: queue.clone(),
            reason: e.to_string(),
        })?;
        let stats = read.message_stats.unwrap_or_default();
        let rate = |d: Option<Details>| d.map(|d| d.rate);
        Ok(QueueDetail {
            queue,
            kind,
            exists: true,
            messages: read.messages_ready,
            unacked: read.messages_unacknowledged,
            consumers: read.consumers,
            rates: QueueRates {
                publish: rate(stats.publish_details),
                deliver: rate(stats.deliver_get_details),
                ack: rate(stats.ack_details),
            },
        })
    }
}

/// The fields read from `GET /api/queues/<vhost>/<queue>` (absent ones,
/// as on a queue the broker has not sampled yet, read as 0).
#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    messages_ready: u64,
    #[serde(default)]
    messages_unacknowledged: u64,
    #[serde(default)]
    consumers: u64,
    #[serde(default)]
    message_stats: Option<MessageStats>,
}

#[derive(Default, Deserialize)]
struct MessageStats {
    publish_details: Option<Details>,
    deliver_get_details: Option<Details>,
    ack_details: Option<Details>,
}

#[derive(Deserialize)]
struct Details {
    rate: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(management: &str) -> Config {
        Config::default()
            .urls(["amqp://app:s%40cret@127.0.0.1:5672/orders"])
            .unwrap()
            .management_url(management)
            .unwrap()
    }

    #[test]
    fn takes_the_broker_credentials_and_vhost_when_the_url_has_none() {
        let stats = ManagementStats::new(&config("http://127.0.0.1:15672")).unwrap();
        assert_eq!(
            (stats.user.as_str(), stats.password.as_str()),
            ("app", "s@cret")
        );
        assert_eq!(stats.vhost, "orders");
        assert!(
            stats.credentials.starts_with("Config::urls"),
            "{}",
            stats.credentials
        );
    }

    #[test]
    fn keeps_its_own_credentials_out_of_the_url_and_the_debug_output() {
        let c = config("http://mon:p%3Ass@127.0.0.1:15672/");
        let stats = ManagementStats::new(&c).unwrap();
        assert_eq!(
            (stats.user.as_str(), stats.password.as_str()),
            ("mon", "p:ss")
        );
        assert_eq!(stats.base.as_str(), "http://127.0.0.1:15672/");
        let shown = format!("{stats:?} {c:?}");
        assert!(
            !shown.contains("p%3Ass") && !shown.contains("p:ss"),
            "{shown}"
        );
        assert!(
            shown.contains("ManagementUrl(http://mon:***@127.0.0.1:15672/)"),
            "{shown}"
        );
    }

    #[test]
    fn refuses_what_is_not_http() {
        let e = Config::default()
            .management_url("amqp://127.0.0.1:15672")
            .unwrap_err();
        assert!(e.to_string().contains("http://"), "{e}");
        assert_eq!(
            ManagementStats::new(&Config::default()).unwrap_err(),
            ManagementError::NotConfigured
        );
    }
}
