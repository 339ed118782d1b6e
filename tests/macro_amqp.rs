//! `#[warren::service]` over RabbitMQ: typed calls through `Client` and
//! `Node`, application errors told apart from transport errors, gather,
//! oneway calls, and tower layers on both sides.

mod support;

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tower::{BoxError, ServiceBuilder};
use warren::{Address, Client, Error, Node, ServiceId};

/// The application error of `divide`.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum MathError {
    /// `b` was zero.
    DivideByZero,
}

impl std::fmt::Display for MathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("division by zero")
    }
}

/// The service under test.
#[warren::service(name = "macro-calc")]
pub trait Calc {
    /// `a + b`.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// `a / b`, or an application error.
    async fn divide(&self, a: f64, b: f64) -> Result<f64, MathError>;
    /// Sleeps `ms`, and says how many calls ran at once at most so far.
    async fn slow(&self, ms: u64) -> usize;
    /// Adds to a running total, with no reply.
    #[warren(oneway)]
    async fn record(&self, n: i64);
    /// The running total.
    async fn total(&self) -> i64;
}

#[derive(Default)]
struct Impl {
    total: AtomicI64,
    running: AtomicUsize,
    most: AtomicUsize,
}

impl Calc for Impl {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
    async fn divide(&self, a: f64, b: f64) -> Result<f64, MathError> {
        if b == 0.0 {
            return Err(MathError::DivideByZero);
        }
        Ok(a / b)
    }
    async fn slow(&self, ms: u64) -> usize {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.most.load(Ordering::SeqCst)
    }
    async fn record(&self, n: i64) {
        self.total.fetch_add(n, Ordering::SeqCst);
    }
    async fn total(&self) -> i64 {
        self.total.load(Ordering::SeqCst)
    }
}

/// Test configs have unique exchanges but the work queue is named after the
/// type, so each test uses a type of its own through `with_address`.
fn any(t: &warren::ServiceType) -> Address {
    Address::Any(t.clone())
}

#[tokio::test]
async fn typed_calls_over_rabbitmq() -> Result<(), Error> {
    let conn = support::connect(support::config()).await;
    let t = support::service_type("macro-calc");
    let node = Node::builder(t.clone())
        .serve(&conn, CalcServer::new(Impl::default()))
        .await?;
    let calc = CalcClient::new(Client::new(&conn)).with_address(any(&t));

    assert_eq!(calc.add(20, 22).await?, 42);
    assert_eq!(calc.divide(1.0, 4.0).await?, Ok(0.25));
    // The handler's own error arrives typed, inside Ok.
    assert_eq!(calc.divide(1.0, 0.0).await?, Err(MathError::DivideByZero));
    // A transport error is the outer Err.
    let nobody = calc
        .clone()
        .with_address(Address::any("macro-calc-nobody")?);
    assert!(matches!(nobody.add(1, 1).await, Err(Error::NoRoute { .. })));

    // Oneway: returns once the broker confirmed it; the handler runs later.
    calc.record(5).await?;
    calc.record(6).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while calc.total().await? != 11 {
        assert!(Instant::now() < deadline, "the oneway calls never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn gather_over_rabbitmq_returns_each_instance() -> Result<(), Error> {
    let conn = support::connect(support::config()).await;
    let t = support::service_type("macro-calc");
    let mut nodes = Vec::new();
    for id in ["g1", "g2"] {
        let id = ServiceId::new(support::unique(id))?;
        nodes.push(
            Node::builder(t.clone())
                .id(id)
                .serve(&conn, CalcServer::new(Impl::default()))
                .await?,
        );
    }
    let calc = CalcClient::new(Client::new(&conn)).with_timeout(Duration::from_secs(5));
    let replies = calc
        .gather()
        .with_address(Address::Every(t.clone()))
        .expect(2)
        .add(1, 2)
        .await?;
    let mut from: Vec<_> = replies.iter().map(|(p, _)| p.id.clone().unwrap()).collect();
    from.sort();
    let mut ids: Vec<_> = nodes.iter().map(|n| n.id().clone()).collect();
    ids.sort();
    assert_eq!(from, ids);
    assert!(replies.iter().all(|(_, r)| matches!(r, Ok(3))));
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}

#[tokio::test]
async fn tower_layers_on_a_generated_client_and_server() -> Result<(), Error> {
    let conn = support::connect(support::config()).await;
    let t = support::service_type("macro-calc");
    // Server side: at most one handler at a time, whatever the node allows.
    let server = ServiceBuilder::new()
        .concurrency_limit(1)
        .service(CalcServer::new(Impl::default()));
    let node = Node::builder(t.clone()).serve(&conn, server).await?;

    // Client side: a tower timeout shorter than the handler.
    let transport = ServiceBuilder::new()
        .map_err(|e: BoxError| match e.downcast::<Error>() {
            Ok(e) => *e,
            Err(_) => Error::Timeout {
                after: Duration::from_millis(100),
            },
        })
        .timeout(Duration::from_millis(100))
        .service(Client::new(&conn));
    let hurried = CalcClient::new(transport).with_address(any(&t));
    assert!(matches!(
        hurried.slow(500).await,
        Err(Error::Timeout { .. })
    ));

    // Four calls at once through the limited server never overlap.
    let calc = CalcClient::new(Client::new(&conn)).with_address(any(&t));
    let calls: Vec<_> = (0..4).map(|_| tokio::spawn(calc.slow(30))).collect();
    for c in calls {
        assert_eq!(c.await.expect("task")?, 1);
    }
    node.shutdown().await;
    Ok(())
}
