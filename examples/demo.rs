//! Run with: `scripts/demo` (starts a private RabbitMQ), or
//! `scripts/broker start && WARREN_AMQP_URL=$(scripts/broker url) cargo run --release --example demo`
//!
//! Two instances of a calculator service and a typed client: calls to one
//! instance, to any, to every instance; an application error, a call
//! nobody can take, a deadline; then a quick measure of round trips.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use warren::{Address, Client, Config, Connection, Error, Node, ServiceId, ServiceType};

/// What can go wrong in a division.
#[derive(Debug, Serialize, Deserialize)]
pub enum MathError {
    /// The divisor was zero.
    DivideByZero,
}

impl std::fmt::Display for MathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("division by zero")
    }
}

/// A calculator service.
#[warren::service]
pub trait Calculator {
    /// `a + b`.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// `a / b`, or an application error.
    async fn divide(&self, a: f64, b: f64) -> Result<f64, MathError>;
    /// The id of the instance that answers.
    async fn whoami(&self) -> String;
    /// Answers after `ms` milliseconds.
    async fn slow(&self, ms: u64) -> u64;
}

struct Calc {
    id: String,
}

impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
    async fn divide(&self, a: f64, b: f64) -> Result<f64, MathError> {
        if b == 0.0 {
            return Err(MathError::DivideByZero);
        }
        Ok(a / b)
    }
    async fn whoami(&self) -> String {
        self.id.clone()
    }
    async fn slow(&self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = Config::from_env()?;
    println!("connecting to {}", config.urls[0]);
    let conn = Connection::connect(config).await?;

    let service = ServiceType::new("calculator")?;
    let mut nodes = Vec::new();
    for id in ["calc-1", "calc-2"] {
        let node = Node::builder(service.clone())
            .id(ServiceId::new(id)?)
            .serve(&conn, CalculatorServer::new(Calc { id: id.into() }))
            .await?;
        println!("node {id} serving queues `calculator-{id}` and `calculator`");
        nodes.push(node);
    }

    let calc = CalculatorClient::new(Client::new(&conn));
    println!("\n-- typed calls to any(calculator)");
    println!("add(2, 3)        = {}", calc.add(2, 3).await?);
    println!("divide(1, 4)     = {:?}", calc.divide(1.0, 4.0).await?);
    println!(
        "divide(1, 0)     = {:?}   (the handler's own error)",
        calc.divide(1.0, 0.0).await?
    );

    let mut seen = BTreeMap::new();
    for _ in 0..10 {
        *seen.entry(calc.whoami().await?).or_insert(0) += 1;
    }
    println!("10 × whoami()    = {seen:?}   (load-balanced over the work queue)");

    println!("\n-- addressing");
    let one = calc.clone().with_address(Address::instance("calc-2")?);
    println!("instance(calc-2) → {}", one.whoami().await?);
    let replies = calc
        .gather() // every instance of `calculator`
        .expect(2)
        .whoami()
        .await?;
    for (peer, answer) in &replies {
        println!(
            "every(calculator) → {:?} answered {:?}",
            peer.id.as_deref().unwrap_or("?"),
            answer.as_ref().ok()
        );
    }

    println!("\n-- failures are typed");
    let nobody = calc.clone().with_address(Address::any("nobody")?);
    let start = Instant::now();
    match nobody.add(1, 1).await {
        Err(e @ Error::NoRoute { .. }) => {
            println!("any(nobody)      → {e} (after {:?})", start.elapsed());
        }
        other => println!("any(nobody)      → unexpected {other:?}"),
    }
    let hurried = calc.clone().with_timeout(Duration::from_millis(100));
    match hurried.slow(1_000).await {
        // The node stops the handler at the same deadline; whichever of
        // its reply and the caller's timer comes first, it is a timeout.
        Err(e @ Error::Timeout { .. }) => println!("slow(1000) in 100 ms → {e}"),
        other => println!("slow(1000) in 100 ms → unexpected {other:?}"),
    }

    println!("\n-- round trips (this machine, now)");
    let mut lat = Vec::with_capacity(1_000);
    for i in 0..1_000 {
        let t = Instant::now();
        calc.add(i, 1).await?;
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "1,000 sequential calls: p50 {:?}, p99 {:?}",
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100]
    );
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let calc = calc.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..250 {
                calc.add(i, 1).await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for t in tasks {
        t.await.expect("caller task")?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("4,000 calls, 16 in flight: {:.0} calls/s", 4_000.0 / secs);

    for node in nodes {
        node.shutdown().await;
    }
    conn.close();
    println!("\ndone: nodes shut down, connection closed");
    Ok(())
}
