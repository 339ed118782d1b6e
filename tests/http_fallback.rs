//! Degraded mode against a real broker and real HTTP: the caller's broker
//! connection is cut by a proxy, calls go over HTTP, and come back to AMQP.
#[path = "support/degraded.rs"]
mod degraded;
mod support;

use degraded::{http_config, json, Caller};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tower::ServiceExt;
use warren::{
    Address, ContentType, Context, Error, Gather, Node, Request, Response, ServiceType, Transport,
};

/// A handler that counts calls per method. The first call of a method
/// starting with `Hold.` waits for [`Probe::release`] (so the test can cut
/// the connection while it runs); later calls answer at once.
#[derive(Clone)]
struct Probe {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    started: Arc<Notify>,
    release: Arc<watch::Sender<bool>>,
}

impl Probe {
    fn new() -> Self {
        Self {
            counts: Arc::default(),
            started: Arc::default(),
            release: Arc::new(watch::channel(false).0),
        }
    }

    fn count(&self, method: &str) -> usize {
        self.counts
            .lock()
            .unwrap()
            .get(method)
            .copied()
            .unwrap_or(0)
    }

    fn release(&self) {
        self.release.send_replace(true);
    }

    async fn handle(self, req: Request) -> Result<Response, Error> {
        let n = {
            let mut counts = self.counts.lock().unwrap();
            let n = counts.entry(req.method.clone()).or_default();
            *n += 1;
            *n
        };
        if req.method.starts_with("Hold.") && n == 1 {
            self.started.notify_one();
            let _ = self.release.subscribe().wait_for(|r| *r).await;
        }
        match req.method.as_str() {
            // What is left of the caller's deadline, in ms.
            "Hold.left" => {
                let left = Context::current().and_then(|c| c.remaining()).unwrap();
                Response::encode(req.content_type, &(left.as_millis() as u64))
            }
            "Hold.stall" => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(Response::ok(req.content_type, req.body))
            }
            _ => Ok(Response::ok(req.content_type, req.body)),
        }
    }

    fn service(
        &self,
    ) -> impl tower::Service<Request, Response = Response, Error = Error, Future = impl Send>
           + Clone
           + Send
           + Sync
           + 'static {
        let this = self.clone();
        tower::service_fn(move |req| this.clone().handle(req))
    }
}

async fn nodes(cfg: &warren::Config, t: &ServiceType, n: usize, probe: &Probe) -> Vec<Node> {
    let conn = support::connect(cfg.clone()).await;
    let mut nodes = Vec::new();
    for _ in 0..n {
        let node = Node::builder(t.clone())
            .http(http_config())
            .serve(&conn, probe.service())
            .await
            .unwrap();
        nodes.push(node);
    }
    nodes
}

#[tokio::test]
async fn calls_go_over_http_while_cut_and_back_over_amqp_after() {
    let cfg = support::config();
    let t = support::service_type("fb");
    let probe = Probe::new();
    let nodes = nodes(&cfg, &t, 2, &probe).await;
    let caller = Caller::start(&cfg, &[]).await;
    caller.knows(&t, 2).await;
    let a = Address::Instance(nodes[0].id().clone());
    caller.until_amqp(|| json(&a, "Echo.say", &"up")).await;

    caller.cut().await;
    for node in &nodes {
        for ct in [ContentType::Json, ContentType::MsgPack] {
            let to = Address::Instance(node.id().clone());
            let req = Request::encode(to, "Echo.say", ct, &("hi", 7u8)).unwrap();
            let resp = caller.call(req).await.unwrap();
            assert_eq!(resp.transport, Transport::Http);
            assert_eq!(resp.content_type, ct);
            assert_eq!(resp.from.id.as_deref(), Some(node.id().as_str()));
            assert_eq!(resp.decode::<(String, u8)>().unwrap(), ("hi".into(), 7));
        }
    }
    let mut answered = BTreeSet::new();
    for i in 0..6 {
        let resp = caller
            .call(json(&Address::Any(t.clone()), "Echo.say", &i))
            .await
            .unwrap();
        assert_eq!(resp.transport, Transport::Http);
        answered.insert(resp.from.id.unwrap());
    }
    assert_eq!(
        answered.len(),
        2,
        "any(type) spreads over both: {answered:?}"
    );
    let every = Gather::new(json(&Address::Every(t.clone()), "Echo.say", &"all")).expect(2);
    let replies = caller.service.clone().oneshot(every).await.unwrap();
    let from: BTreeSet<_> = replies
        .iter()
        .map(|r| (r.transport, r.from.id.clone().unwrap()))
        .collect();
    let want: BTreeSet<_> = nodes
        .iter()
        .map(|n| (Transport::Http, n.id().clone()))
        .collect();
    assert_eq!(from, want, "every(type) reaches each instance over HTTP");

    caller.restore().await;
    caller
        .until_amqp(|| json(&Address::Any(t.clone()), "Echo.say", &"back"))
        .await;
    // Each address comes back once its node announced itself again.
    caller.until_amqp(|| json(&a, "Echo.say", &"back")).await;
    for _ in 0..5 {
        let resp = caller.call(json(&a, "Echo.say", &"again")).await.unwrap();
        assert_eq!(resp.transport, Transport::Amqp);
    }
}

#[tokio::test]
async fn any_skips_an_instance_that_refuses_connections() {
    let cfg = support::config();
    let t = support::service_type("fb-any");
    let probe = Probe::new();
    let mut nodes = nodes(&cfg, &t, 3, &probe).await;
    let caller = Caller::start(&cfg, &[]).await;
    caller.knows(&t, 3).await;
    caller.cut().await;
    let dead = nodes.pop().unwrap();
    let dead_id = dead.id().to_string();
    dead.shutdown().await;

    let mut answered = BTreeSet::new();
    for i in 0..9 {
        let resp = caller
            .call(json(&Address::Any(t.clone()), "Echo.say", &i))
            .await
            .unwrap();
        assert_eq!(resp.transport, Transport::Http);
        answered.insert(resp.from.id.unwrap());
    }
    let live: BTreeSet<_> = nodes.iter().map(|n| n.id().clone()).collect();
    assert_eq!(answered, live);
    let known = caller.peers.list();
    assert!(
        known.iter().any(|p| p.id.as_str() == dead_id && p.down),
        "{known:?}"
    );
}

/// Publishes a `Hold.` call, cuts the connection once the handler runs,
/// and returns what the caller got.
async fn cut_while_running(idempotent: &[&str], method: &str) -> (Result<Response, Error>, Probe) {
    let cfg = support::config();
    let t = support::service_type("fb-twice");
    let probe = Probe::new();
    let nodes = nodes(&cfg, &t, 1, &probe).await;
    let caller = Caller::start(&cfg, idempotent).await;
    caller.knows(&t, 1).await;
    let to = Address::Instance(nodes[0].id().clone());
    caller.until_amqp(|| json(&to, "Echo.say", &0)).await;
    let call = caller.call(json(&to, method, &1));
    tokio::pin!(call);
    tokio::select! {
        r = &mut call => panic!("the call ended before the cut: {r:?}"),
        () = probe.started.notified() => caller.proxy.partition(),
    }
    let result = call.await;
    probe.release();
    (result, probe)
}

#[tokio::test]
async fn a_call_that_reached_the_broker_is_not_run_twice() {
    let (result, probe) = cut_while_running(&[], "Hold.pay").await;
    assert!(matches!(result, Err(Error::ConnectionLost)), "{result:?}");
    assert_eq!(probe.count("Hold.pay"), 1);
}

#[tokio::test]
async fn an_idempotent_call_that_reached_the_broker_goes_again_over_http() {
    let (result, probe) = cut_while_running(&["Hold.read"], "Hold.read").await;
    let resp = result.unwrap();
    assert_eq!(resp.transport, Transport::Http);
    assert_eq!(resp.decode::<i32>().unwrap(), 1);
    assert_eq!(probe.count("Hold.read"), 2);
}

#[tokio::test]
async fn the_deadline_holds_across_the_switch() {
    let cfg = support::config();
    let t = support::service_type("fb-deadline");
    let probe = Probe::new();
    let nodes = nodes(&cfg, &t, 1, &probe).await;
    let caller = Caller::start(&cfg, &["Hold.left", "Hold.stall"]).await;
    caller.knows(&t, 1).await;
    let to = Address::Instance(nodes[0].id().clone());
    caller.until_amqp(|| json(&to, "Echo.say", &0)).await;

    // Part of the deadline goes by on AMQP; HTTP gets only the rest.
    let total = Duration::from_secs(5);
    let start = Instant::now();
    let call = caller.call(json(&to, "Hold.left", &()).with_timeout(total));
    tokio::pin!(call);
    tokio::select! {
        r = &mut call => panic!("the call ended before the cut: {r:?}"),
        () = async { probe.started.notified().await; tokio::time::sleep(Duration::from_millis(500)).await } => {}
    }
    let spent = start.elapsed();
    caller.proxy.partition();
    let resp = call.await.unwrap();
    assert_eq!(resp.transport, Transport::Http);
    let left = Duration::from_millis(resp.decode::<u64>().unwrap());
    assert!(
        left + spent <= total,
        "HTTP had {left:?} after {spent:?} of {total:?}"
    );
    assert!(!left.is_zero());
    probe.release();
    caller.restore().await;
    caller.until_amqp(|| json(&to, "Echo.say", &0)).await;

    // A call whose HTTP attempt cannot finish ends at the original deadline.
    let total = Duration::from_millis(1500);
    let probe_started = probe.started.clone();
    let start = Instant::now();
    let call = caller.call(json(&to, "Hold.stall", &()).with_timeout(total));
    tokio::pin!(call);
    tokio::select! {
        r = &mut call => panic!("the call ended before the cut: {r:?}"),
        () = probe_started.notified() => caller.proxy.partition(),
    }
    let err = call.await.unwrap_err();
    let took = start.elapsed();
    let deadline_error = matches!(err, Error::Timeout { .. })
        || err
            .status()
            .is_some_and(|s| s.code() == &warren::Code::DeadlineExceeded);
    assert!(deadline_error, "{err}");
    assert!(
        took >= total - Duration::from_millis(50),
        "ended early: {took:?}"
    );
    assert!(
        took < total + Duration::from_secs(1),
        "overran the deadline: {took:?}"
    );
}
