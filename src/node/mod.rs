//! A service instance: its queues, its consumers, and the handler they feed.

pub(crate) mod dispatch;
#[cfg(feature = "http")]
mod http;
mod runner;
pub(crate) mod sides;
pub(crate) mod topology;

use crate::address::{Peer, ServiceId, ServiceType};
use crate::amqp::{Client, Connection};
use crate::error::Error;
use crate::message::{Request, Response};
use crate::serve::Handler;
use runner::Runner;
use sides::{NodeParts, Sides, SidesConfig};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch, Semaphore};
use topology::Topology;
use tower::Service;

/// A handler that knows the service type it serves: the servers generated
/// by [`#[warren::service]`](crate::service) are.
pub trait NamedService {
    /// The service type (`calculator`).
    const SERVICE: &'static str;
    /// The wire names of its methods (`Calculator.add`).
    const METHODS: &'static [&'static str];
}

/// Settings of a node; start one with [`NodeBuilder::serve`].
///
/// ```no_run
/// use std::time::Duration;
/// use warren::{Config, Connection, Node};
///
/// /// Greets people.
/// #[warren::service]
/// pub trait Greeter {
///     /// Says hello.
///     async fn hello(&self, name: String) -> String;
/// }
///
/// struct English;
///
/// impl Greeter for English {
///     async fn hello(&self, name: String) -> String {
///         format!("Hello, {name}!")
///     }
/// }
///
/// # async fn run() -> Result<(), warren::Error> {
/// let conn = Connection::connect(Config::from_env()?).await?;
/// let node = Node::builder("greeter".parse()?)
///     .id("greeter-eu-1".parse()?) // default: a random id
///     .concurrency(32) // handlers running at once
///     .shutdown_grace(Duration::from_secs(10))
///     .serve(&conn, GreeterServer::new(English))
///     .await?;
/// // ... until the process should stop:
/// node.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct NodeBuilder {
    service: ServiceType,
    id: ServiceId,
    concurrency: Option<usize>,
    queue_expires: Duration,
    dead_letter_exchange: Option<String>,
    shutdown_grace: Duration,
    /// The methods it announces (with an HTTP endpoint).
    methods: Vec<String>,
    pub(crate) sides: SidesConfig,
}

/// A running service instance. [`Node::shutdown`] stops it gracefully;
/// dropping it stops it too, without waiting for running handlers.
///
/// It owns a queue bound to `message.<id>`, `message.<type>` and
/// `message.all` on the exchange, and consumes the type's work queue.
///
/// ```no_run
/// use warren::{Config, Connection, Node};
///
/// /// Greets people.
/// #[warren::service]
/// pub trait Greeter {
///     /// Says hello.
///     async fn hello(&self, name: String) -> String;
/// }
///
/// struct English;
///
/// impl Greeter for English {
///     async fn hello(&self, name: String) -> String {
///         format!("Hello, {name}!")
///     }
/// }
///
/// # async fn run() -> Result<(), warren::Error> {
/// let conn = Connection::connect(Config::from_env()?).await?;
/// // The type comes from the trait (`greeter`), the id is random.
/// let node = Node::serve(&conn, GreeterServer::new(English)).await?;
/// println!("serving as {}", node.id());
/// tokio::signal::ctrl_c().await.ok();
/// node.shutdown().await; // finishes the calls it took
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Node {
    service: ServiceType,
    id: ServiceId,
    client: Client,
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
    permits: Arc<Semaphore>,
    concurrency: usize,
    /// Broker consumers running now (readiness reads it).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) consumers: Arc<AtomicUsize>,
    pub(crate) sides: Sides,
    grace: Duration,
    /// Its queues' gauges, read while it runs.
    _queue_gauges: crate::record::QueueGauges,
}

impl Node {
    /// A node of type `service` with a random instance id.
    pub fn builder(service: ServiceType) -> NodeBuilder {
        NodeBuilder {
            service,
            id: ServiceId::random(),
            concurrency: None,
            queue_expires: topology::DEFAULT_QUEUE_EXPIRES,
            dead_letter_exchange: None,
            shutdown_grace: Duration::from_secs(10),
            methods: Vec::new(),
            sides: SidesConfig::default(),
        }
    }

    /// Serves `handler` (a generated server such as `CalculatorServer`) as a
    /// new instance of its service type, with a random id and the defaults
    /// of [`NodeBuilder`].
    ///
    /// # Errors
    /// As [`NodeBuilder::serve`]; [`Error::Name`] if the service's name is
    /// not a valid [`ServiceType`].
    pub async fn serve<S>(conn: &Connection, handler: S) -> Result<Node, Error>
    where
        S: NamedService
            + Service<Request, Response = Response, Error = Error>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        Self::builder(ServiceType::new(S::SERVICE)?)
            .methods(S::METHODS.iter().copied())
            .serve(conn, handler)
            .await
    }

    /// This instance's id.
    #[must_use]
    pub fn id(&self) -> &ServiceId {
        &self.id
    }

    /// This instance's type.
    #[must_use]
    pub fn service(&self) -> &ServiceType {
        &self.service
    }

    /// A client on the node's connection that names this node as the sender.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Handlers running right now (over either transport).
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.concurrency - self.permits.available_permits()
    }

    /// Stops taking deliveries, lets running handlers finish (up to the
    /// builder's grace period), then closes the node's channel. Deliveries
    /// not yet started go back to their queue for another instance.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        let _ = self.done.await;
        self.sides.shutdown(self.grace).await;
    }
}

impl NodeBuilder {
    crate::message::setters! {
        /// Sets the instance id (default: random). A restarted instance with
        /// the same id gets what waited in its queue.
        fn id(id: ServiceId);
        /// Handlers run at once at most (default: the connection's prefetch).
        fn concurrency(concurrency: usize) => Some(concurrency.max(1));
        /// How long the queues live on once no instance uses them (default 5 min).
        fn queue_expires(queue_expires: Duration);
        /// Sends rejected messages (those that cannot be answered) to this exchange.
        fn dead_letter_exchange(dead_letter_exchange: impl Into<String>) => Some(dead_letter_exchange.into());
        /// How long [`Node::shutdown`] waits for running handlers (default 10 s).
        fn shutdown_grace(shutdown_grace: Duration);
    }

    /// The wire names of the methods the node serves (`Greeter.hello`),
    /// which its announcements tell (discovery; a PostOffice lists them).
    /// [`Node::serve`] sets those of a generated server.
    pub fn methods<I, S>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.methods = methods.into_iter().map(Into::into).collect();
        self
    }

    /// Declares the topology, starts consuming, and returns once the node
    /// takes requests. After a connection loss it declares and consumes
    /// again by itself.
    ///
    /// # Errors
    /// [`Error::InstanceInUse`] if a running instance has this id;
    /// [`Error::TopologyMismatch`] if a queue or the exchange exists with
    /// other arguments; [`Error::Broker`] if the broker refuses otherwise;
    /// the connection's error if the broker refused it for good
    /// ([`Error::AuthenticationRefused`], …); [`Error::Shutdown`] if the
    /// connection is closed first.
    pub async fn serve<S>(self, conn: &Connection, handler: S) -> Result<Node, Error>
    where
        S: Service<Request, Response = Response, Error = Error> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
    {
        let identity = Peer::new(Some(self.service.clone()), Some(self.id.clone()));
        let concurrency = self
            .concurrency
            .unwrap_or(usize::from(conn.config().prefetch));
        let topology = Topology {
            queue_expires: self.queue_expires,
            dead_letter_exchange: self.dead_letter_exchange.clone(),
            ..Topology::defaults(conn.config(), &self.service, self.id.clone())
        };
        let queues = [topology.work_layout(), topology.instance_layout().0]
            .into_iter()
            .map(|q| (q.name, q.kind))
            .collect();
        let permits = Arc::new(Semaphore::new(concurrency));
        let (stop, stopped) = watch::channel(false);
        let (ready_tx, ready) = oneshot::channel();
        let handler = Handler::new(handler);
        let consumers = Arc::new(AtomicUsize::new(0));
        crate::record::node(self.service.as_str(), &permits, concurrency, &consumers);
        let (serving, consuming) = watch::channel(None);
        let runner = Runner {
            conn: conn.clone(),
            topology,
            handler: handler.clone(),
            consumers: consumers.clone(),
            serving,
            identity: identity.clone(),
            permits: permits.clone(),
            concurrency,
            grace: self.shutdown_grace,
        };
        let done = tokio::spawn(runner.run(stopped, Some(ready_tx)));
        // No word at all: the connection closed (or was refused) first.
        if let Err(e) = ready.await.unwrap_or_else(|_| Err(conn.unavailable())) {
            stop.send_replace(true);
            return Err(e);
        }
        let parts = NodeParts {
            service: self.service.clone(),
            id: self.id.clone(),
            handler,
            permits: permits.clone(),
            concurrency,
            consumers: consumers.clone(),
            consuming,
            methods: self.methods.clone(),
        };
        let sides = match Sides::start(self.sides, conn, parts).await {
            Ok(sides) => sides,
            Err(e) => {
                stop.send_replace(true);
                let _ = done.await;
                return Err(e);
            }
        };
        Ok(Node {
            service: self.service,
            id: self.id,
            client: Client::with_identity(conn, identity),
            stop,
            done,
            permits,
            concurrency,
            consumers,
            sides,
            grace: self.shutdown_grace,
            _queue_gauges: crate::record::queues(conn, queues),
        })
    }
}
