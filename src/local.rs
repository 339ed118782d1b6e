//! An in-process transport: clients call servers in the same process, with
//! no broker. For unit tests, doc tests and tests of the layers above.
//!
//! It routes exactly as the broker would ([`Address::Instance`] to one
//! instance, [`Address::Any`] round-robin over a type, [`Address::Every`]
//! and [`Address::All`] to each), applies the caller's policy
//! ([`crate::layer::Policy`]: deadline, span, limits), runs handlers under
//! the same server layer as the AMQP node and the HTTP endpoint
//! ([`crate::serve`]: context, deadline, panics, error statuses), and turns
//! error replies into [`Error::Remote`], so code tested on it behaves the
//! same over RabbitMQ.

use crate::address::{Address, Peer, ServiceId, ServiceType};
use crate::error::Error;
use crate::layer::{Policy, PolicyLayer};
use crate::message::{Delivery, Gather, Request, Response};
use crate::serve::{Handler, Serve};
use futures::stream::{FuturesUnordered, StreamExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};
use tower::{Layer, Service, ServiceExt};

struct Instance {
    id: ServiceId,
    service: ServiceType,
    handler: Handler,
}

#[derive(Default)]
struct Registry {
    instances: Vec<Instance>,
    next: AtomicUsize,
}

/// The in-process transport: a registry of servers that is also a client.
///
/// ```
/// # tokio_test_block_on(async {
/// use warren::{Address, ContentType, Local, Request, Response};
/// use tower::{service_fn, Service, ServiceExt};
///
/// let mut local = Local::new();
/// local.serve(
///     "echo".parse()?,
///     "echo-1".parse()?,
///     service_fn(|req: Request| async move { Ok(Response::ok(req.content_type, req.body)) }),
/// );
/// let req = Request::new(Address::any("echo")?, "Echo.say", ContentType::Json, "\"hi\"")?;
/// let reply = ServiceExt::<Request>::ready(&mut local).await?.call(req).await?;
/// assert_eq!(&reply.body[..], b"\"hi\"");
/// # Ok::<_, warren::Error>(()) });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct Local {
    stack: Policy<Servers>,
}

/// The in-process transport below the policy: routes to the handlers.
#[derive(Clone, Default)]
pub(crate) struct Servers {
    registry: Arc<RwLock<Registry>>,
}

impl Default for Local {
    fn default() -> Self {
        Self {
            stack: PolicyLayer::default().layer(Servers::default()),
        }
    }
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reg = self.stack.get_ref().registry();
        let instances: Vec<_> = reg
            .instances
            .iter()
            .map(|i| format!("{}/{}", i.service, i.id))
            .collect();
        f.debug_struct("Local")
            .field("instances", &instances)
            .finish()
    }
}

impl Local {
    /// An empty transport.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the deadline of calls that set none (default 30 s); request
    /// bodies stay limited to [`Config::max_body`](crate::Config::max_body)'s
    /// default.
    #[must_use]
    pub fn with_default_timeout(self, timeout: Duration) -> Self {
        let layer = PolicyLayer::new(timeout, crate::Config::default().max_body);
        Self {
            stack: layer.layer(self.stack.get_ref().clone()),
        }
    }

    /// Serves `handler` as instance `id` of `service`.
    pub fn serve<S>(&mut self, service: ServiceType, id: ServiceId, handler: S)
    where
        S: Service<Request, Response = Response, Error = Error> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
    {
        let servers = self.stack.get_ref();
        let mut reg = servers.registry.write().unwrap_or_else(|e| e.into_inner());
        reg.instances.push(Instance {
            id,
            service,
            handler: Handler::new(Serve::new(handler)),
        });
    }
}

impl Servers {
    fn registry(&self) -> RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The handlers `address` reaches (for [`Address::Any`], the next one
    /// in turn), or [`Error::NoRoute`].
    fn route(&self, address: &Address) -> Result<Vec<(Peer, Handler)>, Error> {
        let reg = self.registry();
        let peer = |i: &Instance| Peer::new(Some(i.service.clone()), Some(i.id.clone()));
        let mut matching: Vec<_> = reg
            .instances
            .iter()
            .filter(|i| address.reaches(&i.id, &i.service))
            .map(|i| (peer(i), i.handler.clone()))
            .collect();
        if matching.is_empty() {
            return Err(Error::no_route(address));
        }
        if matches!(address, Address::Any(_)) {
            let n = reg.next.fetch_add(1, Ordering::Relaxed) % matching.len();
            return Ok(vec![matching.swap_remove(n)]);
        }
        Ok(matching)
    }

    async fn call(&self, req: Request) -> Result<Response, Error> {
        let deadline = req.fixed_deadline();
        let (peer, handler) = self.route(&req.address)?.swap_remove(0);
        if req.delivery == Delivery::OneWay {
            let content_type = req.content_type;
            tokio::spawn(invoke(handler, peer, req));
            return Ok(Response::ok(content_type, bytes::Bytes::new()));
        }
        let after = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout_at(deadline.into(), invoke(handler, peer, req))
            .await
            .map_err(|_| Error::Timeout { after })?
            .into_result()
    }

    async fn gather(&self, gather: Gather) -> Result<Vec<Response>, Error> {
        let Gather { request, expect } = gather;
        let deadline = request.fixed_deadline();
        let mut pending: FuturesUnordered<_> = self
            .route(&request.address)?
            .into_iter()
            .map(|(peer, h)| invoke(h, peer, request.clone()))
            .collect();
        let expect = expect.unwrap_or(usize::MAX);
        let mut replies = Vec::new();
        let sleep = tokio::time::sleep_until(deadline.into());
        tokio::pin!(sleep);
        while replies.len() < expect {
            tokio::select! {
                next = pending.next() => match next {
                    Some(r) => replies.push(r),
                    None => break,
                },
                () = &mut sleep => break,
            }
        }
        Ok(replies)
    }
}

async fn invoke(handler: Handler, peer: Peer, mut req: Request) -> Response {
    // The server's side of the call: what it receives, as over RabbitMQ.
    req.from = Peer::default();
    req.under_policy = false;
    req.message_id = Some(uuid::Uuid::new_v4().to_string());
    let content_type = req.content_type;
    // The server layer never fails: every outcome is a response.
    let mut resp = handler
        .oneshot(req)
        .await
        .unwrap_or_else(|e| Response::error(content_type, &e.to_status()));
    resp.from = peer;
    resp.transport = crate::message::Transport::Local;
    resp
}

crate::message::transport_services!(Servers);
crate::message::policy_services!(Local);
