//! The caller-facing error.

use crate::address::{Address, NameError, ServiceId, ServiceType};
use crate::codec::CodecError;
use crate::status::{Code, Status};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The cause of an [`Error`], from below warren (the AMQP client, the
/// network, TLS), for [`std::error::Error::source`] and logs. Its type is
/// not part of warren's API.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong with a call, a send, or starting a node.
///
/// Transport failures ([`Error::NoRoute`], [`Error::Timeout`],
/// [`Error::ConnectionLost`], …) are told apart from what the remote
/// handler answered ([`Error::Remote`]). What a caller acts on has a
/// variant of its own: a refused login ([`Error::AuthenticationRefused`]),
/// a missing vhost ([`Error::VhostNotFound`]), a URL that cannot work
/// ([`Error::InvalidUrl`]), an instance id in use
/// ([`Error::InstanceInUse`]), a queue declared with other arguments
/// ([`Error::TopologyMismatch`]), a body over the limit
/// ([`Error::BodyTooLarge`]). The connection errors name the setting to
/// fix (`RABBITMQ_URL`, `WARREN_AMQP_URL`, or `Config::urls`).
///
/// The lower-level cause, where there is one, is the error's
/// [`source`](std::error::Error::source), not repeated in its message.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No queue is bound for the address: nobody could receive the request.
    /// Reported at once, not at the deadline.
    #[error("no route to {address}: no service instance is listening there")]
    NoRoute {
        /// Where the request was sent.
        address: Address,
    },
    /// The deadline passed before a reply came.
    #[error("no reply within {after:?}; the deadline passed")]
    Timeout {
        /// The time the call was given.
        after: Duration,
    },
    /// The remote side answered with an error status.
    #[error("remote error: {0}")]
    Remote(Status),
    /// The connection to the broker was lost while the call was in flight:
    /// its reply can no longer arrive. The request may or may not have run.
    #[error(
        "the broker connection was lost while the call was in flight; it may or may not have run"
    )]
    ConnectionLost,
    /// The broker blocked publishing (a memory or disk alarm) while the call
    /// was in flight, and the call gave up (at once under
    /// [`WhenDisconnected::FailFast`](crate::config::WhenDisconnected), else
    /// at its deadline). The request may or may not run once the broker
    /// unblocks.
    #[error(
        "the broker blocked publishing ({reason}) while the call was in flight; it may or may not run once the alarm clears"
    )]
    Blocked {
        /// The broker's reason (`low on memory`, `low on disk`).
        reason: String,
    },
    /// There is no connection to the broker right now, and the request was
    /// not sent.
    #[error("not connected to the broker ({reason}); the request was not sent")]
    Unavailable {
        /// Why (the last connection error, or that the broker blocked us).
        reason: String,
    },
    /// The broker refused or failed an operation.
    #[error("broker error: {context}")]
    Broker {
        /// What failed.
        context: String,
        /// What the AMQP client reported, if anything.
        #[source]
        source: Option<Cause>,
    },
    /// The broker refused the login: a wrong user name or password, or a
    /// user with no access to the vhost. Retrying cannot help, so
    /// [`Connection::connect`](crate::Connection::connect) reports it at
    /// once.
    #[error(
        "the broker at {url} refused user `{user}` ({reason}); fix the user name or password in {setting}, or grant the user access to the vhost"
    )]
    AuthenticationRefused {
        /// The broker URL, password hidden.
        url: String,
        /// The user name that was refused.
        user: String,
        /// Where the URL was set: the environment variable
        /// (`WARREN_AMQP_URL`, `RABBITMQ_URL`), or `Config::urls`.
        setting: String,
        /// What the broker said.
        reason: String,
    },
    /// The broker refused an operation the user has no permission for:
    /// declaring, binding, consuming or publishing to a resource outside
    /// the user's configure, write or read patterns on the vhost.
    #[error(
        "the broker refused to {context}: the user lacks the permission ({reason}); SECURITY.md lists what a service and a caller need"
    )]
    AccessRefused {
        /// What was refused, such as "declare queue `orders`".
        context: String,
        /// What the broker said.
        reason: String,
    },
    /// The URL names a vhost the broker does not have. Reported at once.
    #[error(
        "the broker at {url} has no vhost `{vhost}`; name an existing vhost in {setting} (in a URL's path the default vhost `/` is written %2f), or create it (rabbitmqctl add_vhost)"
    )]
    VhostNotFound {
        /// The broker URL, password hidden.
        url: String,
        /// The vhost that was asked for.
        vhost: String,
        /// Where the vhost was set: the URL's setting (see
        /// [`Error::AuthenticationRefused`]), or `WARREN_VHOST` /
        /// `Config::vhost` when set apart from the URL.
        setting: String,
    },
    /// The TLS handshake with the broker failed: the broker's certificate
    /// is not signed by a trusted CA or not valid for the host, the broker
    /// asked for a client certificate, or the port speaks plain AMQP.
    /// Reported at once.
    #[error("the TLS handshake with {url} (set in {setting}) failed: {reason}")]
    Tls {
        /// The broker URL, password hidden.
        url: String,
        /// Where the URL was set (see [`Error::AuthenticationRefused`]).
        setting: String,
        /// Which of the causes above, and what to do about it.
        reason: String,
        /// What the TLS library reported.
        #[source]
        source: Cause,
    },
    /// A broker URL that cannot work: not `amqp://` or `amqps://`, a bad
    /// port or query, or an empty vhost (a trailing `/`).
    #[error(
        "{setting}: `{url}` is not a usable broker URL: {reason}; write amqp://user:password@host:5672/vhost (the default vhost `/` is %2f)"
    )]
    InvalidUrl {
        /// The URL, password hidden.
        url: String,
        /// Where the URL was set (see [`Error::AuthenticationRefused`]).
        setting: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A node was started with the id of an instance that is running now:
    /// its instance queue already has a consumer.
    #[error(
        "instance `{id}` of `{service}` is already running (its queue `{service}-{id}` has an exclusive consumer); stop it, or give this node another id"
    )]
    InstanceInUse {
        /// The service type.
        service: ServiceType,
        /// The instance id in use.
        id: ServiceId,
    },
    /// A queue or exchange exists with other arguments than the ones
    /// declared: RabbitMQ refuses the declaration (`PRECONDITION_FAILED`).
    #[error("{entity} exists with other arguments than declared ({}); {hint}", differences(.declared, .existing))]
    TopologyMismatch {
        /// What was declared, such as ``queue `calc` ``.
        entity: String,
        /// The arguments it was declared with here.
        declared: BTreeMap<String, String>,
        /// The arguments of the one that exists, as far as the broker
        /// said: RabbitMQ names the first argument that differs (`None`:
        /// not set on the existing one).
        existing: BTreeMap<String, Option<String>>,
        /// What to do about it.
        hint: String,
    },
    /// A request or reply body is larger than the limit (`Config::max_body`
    /// over AMQP, `HttpClient::max_body` over HTTP).
    #[error(
        "the body is {size} bytes; the limit is {limit} (Config::max_body, HttpClient::max_body)"
    )]
    BodyTooLarge {
        /// The body's size in bytes (for a reply being read: as far as read).
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// An event no queue is bound for: the broker dropped it. An error only
    /// for a publisher that asks for it
    /// ([`Unroutable::Error`](crate::events::Unroutable::Error)).
    #[error("no queue is bound for event `{event_type}` on exchange `{exchange}`; the broker dropped it")]
    Unroutable {
        /// The event type (its routing key).
        event_type: String,
        /// The exchange it was published on.
        exchange: String,
    },
    /// The broker refused an event (its confirm was a nack): a queue it is
    /// bound for is full and refuses more
    /// ([`Overflow::RejectPublish`](crate::events::Overflow::RejectPublish)),
    /// or the broker could not store it. The event was not delivered to
    /// that queue (it may have reached others); publish it again later.
    #[error("the broker refused event `{event_type}` on exchange `{exchange}` (a full queue with overflow reject-publish, or it could not store it); publish it again later")]
    Rejected {
        /// The event type (its routing key).
        event_type: String,
        /// The exchange it was published on.
        exchange: String,
    },
    /// A body could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// An id, type or method name was refused.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The request cannot be made as asked.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A single-reply call to an address where many may answer (`every`,
    /// `all`): refused when the request is built (a generated client) or
    /// before it is sent (a hand-made [`Request`](crate::Request)); send a
    /// [`Gather`](crate::Gather) instead.
    #[error("{address} may answer many times; a call takes one reply: send a Gather instead")]
    MulticastCall {
        /// The multicast address.
        address: Address,
    },
    /// A load-shedding layer above the transport (`tower::load_shed`)
    /// refused the call because the service behind it was not ready. The
    /// request was not sent.
    #[error("overloaded: the call was refused before it was sent (load shedding)")]
    Overloaded,
    /// A tower layer above the transport failed with an error that is not
    /// one of warren's (see `From<tower::BoxError>`).
    #[error("a tower layer failed: {0}")]
    Layer(#[source] Cause),
    /// The database behind an outbox or an inbox failed: unreachable, or it
    /// refused a statement. Events already committed stay in it.
    #[error("database error: {context}")]
    Database {
        /// What failed.
        context: String,
        /// What the database driver reported.
        #[source]
        source: Option<Cause>,
    },
    /// The outbox tables in the database were made by a newer warren (their
    /// schema version is above the ones this build knows).
    #[error("the outbox tables `{tables}` are at schema version {found}; this build of warren knows versions up to {supported}: upgrade warren, or give this service other tables (StoreOptions::table_prefix)")]
    SchemaMismatch {
        /// The tables' prefix (and schema), as configured.
        tables: String,
        /// The version the database has.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// Configuration that cannot work (a bad URL, an unusable setting).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The client or node was shut down.
    #[error("shut down")]
    Shutdown,
}

impl Error {
    /// [`Error::NoRoute`] to `address`.
    pub(crate) fn no_route(address: &Address) -> Self {
        Self::NoRoute {
            address: address.clone(),
        }
    }

    /// The status a server sends for this error, when a handler fails with it.
    #[must_use]
    pub fn to_status(&self) -> Status {
        let code = match self {
            Self::Remote(status) => return status.clone(),
            Self::Timeout { .. } => Code::DeadlineExceeded,
            Self::Codec(CodecError::Unsupported(_)) => Code::UnsupportedContentType,
            Self::Codec(_)
            | Self::Name(_)
            | Self::InvalidRequest(_)
            | Self::MulticastCall { .. } => Code::BadRequest,
            Self::BodyTooLarge { .. } => Code::PayloadTooLarge,
            Self::Unavailable { .. }
            | Self::Blocked { .. }
            | Self::Rejected { .. }
            | Self::Overloaded
            | Self::Shutdown => Code::Unavailable,
            _ => Code::Internal,
        };
        Status::new(code, self.to_string())
    }

    /// The remote status, if this is a [`Error::Remote`].
    #[must_use]
    pub fn status(&self) -> Option<&Status> {
        match self {
            Self::Remote(s) => Some(s),
            _ => None,
        }
    }
}

/// `arg: declared here, existing there` for each argument the broker named.
fn differences(
    declared: &BTreeMap<String, String>,
    existing: &BTreeMap<String, Option<String>>,
) -> String {
    let shown = |v: Option<&String>| v.map_or_else(|| "not set".to_owned(), |v| format!("`{v}`"));
    existing
        .iter()
        .map(|(arg, there)| {
            format!(
                "{arg}: {} here, {} on the existing one",
                shown(declared.get(arg)),
                shown(there.as_ref())
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        Self::Remote(status)
    }
}

/// Back from the error of a tower stack over a warren transport, such as
/// `tower::timeout::Timeout`, `tower::limit::ConcurrencyLimit` or
/// `tower::buffer::Buffer`: a boxed [`Error`] is unboxed as it was,
/// tower's `Elapsed` becomes [`Error::Timeout`] (with `after` zero: tower
/// does not say how long it waited), its `Overloaded` (load shedding)
/// [`Error::Overloaded`], and anything else [`Error::Layer`].
///
/// `ServiceBuilder::new().map_err(warren::Error::from)` on top of such a
/// stack gives a transport a generated client takes: see [`crate::layer`].
impl From<tower::BoxError> for Error {
    fn from(error: tower::BoxError) -> Self {
        match error.downcast::<Self>() {
            Ok(error) => *error,
            Err(e) if e.is::<tower::timeout::error::Elapsed>() => Self::Timeout {
                after: Duration::ZERO,
            },
            Err(e) if e.is::<tower::load_shed::error::Overloaded>() => Self::Overloaded,
            Err(e) => Self::Layer(Arc::from(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Error;
    use std::time::Duration;
    use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};

    #[test]
    fn box_errors_come_back_as_warren_errors() {
        let boxed: BoxError = Box::new(Error::NoRoute {
            address: crate::Address::all(),
        });
        assert!(matches!(Error::from(boxed), Error::NoRoute { .. }));
        let other: BoxError = "something else".into();
        let err = Error::from(other);
        assert!(matches!(&err, Error::Layer(source) if source.to_string() == "something else"));
        assert!(std::error::Error::source(&err).is_some());
    }

    async fn slow(_: ()) -> Result<(), Error> {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok(())
    }

    #[tokio::test]
    async fn tower_timeout_and_load_shedding_map_to_their_variants() {
        let mut timed = ServiceBuilder::new()
            .map_err(Error::from)
            .timeout(Duration::from_millis(10))
            .service(service_fn(slow));
        let err = timed.ready().await.unwrap().call(()).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");

        let mut shed = ServiceBuilder::new()
            .map_err(Error::from)
            .load_shed()
            .concurrency_limit(1)
            .service(service_fn(slow));
        let first = shed.ready().await.unwrap().call(());
        let err = shed.ready().await.unwrap().call(()).await.unwrap_err();
        assert!(matches!(err, Error::Overloaded), "{err:?}");
        drop(first);
    }
}
