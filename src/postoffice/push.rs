//! Push: services send to one connection, to every connection of a user,
//! or to all clients, through the broker, whichever PostOffice instance
//! holds them.
//!
//! A push is a one-way warren request, `PostOffice.push`, to the
//! PostOffice nodes: to `instance:<postoffice-id>` for one connection (its
//! id names the instance holding it), to `every:postoffice` for a user or
//! for all. Each instance delivers to the connections it holds; what
//! matches none there is dropped and counted.

use super::hub::Hub;
use super::ConnectionId;
use crate::address::{Address, ServiceType};
use crate::amqp::Client;
use crate::codec::ContentType;
use crate::error::Error;
use crate::message::{Delivery, Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The method a PostOffice node serves for pushes.
pub const PUSH_METHOD: &str = "PostOffice.push";

/// The service type of PostOffice nodes unless configured otherwise.
pub const DEFAULT_SERVICE: &str = "postoffice";

/// Who a push is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Target {
    Connection(String),
    User(String),
    All,
}

/// The body of a `PostOffice.push` request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PushRequest {
    pub(crate) target: Target,
    pub(crate) topic: String,
    #[serde(default)]
    pub(crate) body: Value,
}

/// Sends pushes to PostOffice clients, from any service.
///
/// ```no_run
/// use warren::postoffice::Pusher;
/// # async fn run(node: &warren::Node, user: &str) -> Result<(), warren::Error> {
/// let pusher = Pusher::new(node.client().clone());
/// pusher.to_user(user, "orders.shipped", &serde_json::json!({"order": 42})).await?;
/// pusher.to_all("news", &"maintenance at noon").await?;
/// # Ok(())
/// # }
/// ```
///
/// A push returns once the broker took it (it is a one-way request). A
/// PostOffice that holds no matching connection drops it and counts it
/// ([`Stats::pushes_dropped`](super::Stats)); with no PostOffice running
/// at all, or none holding the connection's instance, the push fails
/// with [`Error::NoRoute`]; while the broker is down it fails with
/// [`Error::Unavailable`] (pushes are not sent over HTTP).
#[derive(Clone, Debug)]
pub struct Pusher {
    client: Client,
    service: ServiceType,
}

impl Pusher {
    /// Pushes through `client` to PostOffices of the default type
    /// ([`DEFAULT_SERVICE`]).
    #[must_use]
    pub fn new(client: Client) -> Self {
        Self {
            client,
            service: ServiceType::new(DEFAULT_SERVICE).expect("a valid service type"),
        }
    }

    /// Pushes to PostOffices of type `service` instead.
    #[must_use]
    pub fn service(mut self, service: ServiceType) -> Self {
        self.service = service;
        self
    }

    /// Pushes to one connection (a handler finds its caller's in
    /// [`Caller::connection`](super::Caller)).
    ///
    /// # Errors
    /// As the type says; [`Error::InvalidRequest`] for an id that is not
    /// a PostOffice connection id.
    pub async fn to_connection<T: Serialize + ?Sized>(
        &self,
        connection: &str,
        topic: &str,
        body: &T,
    ) -> Result<(), Error> {
        let id = ConnectionId::parse(connection)
            .ok_or_else(|| Error::InvalidRequest(format!("not a connection id: {connection}")))?;
        let to = Address::Instance(id.postoffice);
        self.send(to, Target::Connection(connection.to_owned()), topic, body)
            .await
    }

    /// Pushes to every connection of `user`, on every PostOffice.
    ///
    /// # Errors
    /// As the type says.
    pub async fn to_user<T: Serialize + ?Sized>(
        &self,
        user: &str,
        topic: &str,
        body: &T,
    ) -> Result<(), Error> {
        let to = Address::Every(self.service.clone());
        self.send(to, Target::User(user.to_owned()), topic, body)
            .await
    }

    /// Pushes to every client of every PostOffice.
    ///
    /// # Errors
    /// As the type says.
    pub async fn to_all<T: Serialize + ?Sized>(&self, topic: &str, body: &T) -> Result<(), Error> {
        let to = Address::Every(self.service.clone());
        self.send(to, Target::All, topic, body).await
    }

    async fn send<T: Serialize + ?Sized>(
        &self,
        to: Address,
        target: Target,
        topic: &str,
        body: &T,
    ) -> Result<(), Error> {
        let push = PushRequest {
            target,
            topic: topic.to_owned(),
            body: serde_json::to_value(body)
                .map_err(|e| Error::InvalidRequest(format!("push body: {e}")))?,
        };
        let request = Request::encode(to, PUSH_METHOD, ContentType::Json, &push)?
            .with_delivery(Delivery::OneWay);
        self.client.call(request).await.map(drop)
    }
}

/// The PostOffice node's handler: delivers a push to the connections it
/// holds.
pub(crate) fn deliver(hub: &Hub, request: &Request) -> Result<Response, Error> {
    if request.method != PUSH_METHOD {
        return Err(Error::Remote(crate::Status::new(
            crate::Code::UnknownMethod,
            format!(
                "a PostOffice serves {PUSH_METHOD} only, not {}",
                request.method
            ),
        )));
    }
    let push: PushRequest = request.decode()?;
    let from = request
        .from
        .id
        .as_ref()
        .map(ToString::to_string)
        .or_else(|| request.from.service.as_ref().map(ToString::to_string));
    let frame = serde_json::to_string(&super::frames::PushFrame {
        push: &push.topic,
        from: from.as_deref(),
        body: &push.body,
    })
    .map_err(|e| Error::InvalidRequest(e.to_string()))?;
    hub.push(&push.target, &frame.into());
    Ok(Response::ok(request.content_type, bytes::Bytes::new()))
}
