//! A service and its caller on a RabbitMQ cluster, with quorum queues: it
//! calls once a second and prints where the connection stands, so that a
//! node can be killed under it (`scripts/cluster kill N`) and the calls seen
//! to go on from another node.
//!
//! Run with: `scripts/cluster start && RABBITMQ_URL=$(scripts/cluster urls) WARREN_QUEUE_TYPE=quorum cargo run --example cluster`
use std::time::Duration;
use warren::{Client, Config, Connection, ConnectionState, Node};

/// Answers ticks.
#[warren::service]
pub trait Clock {
    /// Echoes `n`.
    async fn tick(&self, n: u64) -> u64;
}

struct Echo;

impl Clock for Echo {
    async fn tick(&self, n: u64) -> u64 {
        n
    }
}

#[tokio::main]
async fn main() -> Result<(), warren::Error> {
    // Each connection starts at a random one of the URLs (`WARREN_URL_ORDER`).
    let config = Config::from_env()?
        .heartbeat(Duration::from_secs(2))
        .default_timeout(Duration::from_secs(3));
    println!(
        "{} URLs, queues of type {:?}",
        config.urls.len(),
        config.queue_type
    );
    let serving = Connection::connect(config.clone()).await?;
    let calling = Connection::connect(config).await?;
    let node = Node::serve(&serving, ClockServer::new(Echo)).await?;
    let clock = ClockClient::new(Client::new(&calling));
    let mut state = calling.state();
    tokio::spawn(async move {
        while state.changed().await.is_ok() {
            let now = state.borrow().clone();
            if let ConnectionState::Reconnecting { last_error, .. } = now {
                println!("caller's node lost ({last_error:?}); moving on");
            }
        }
    });
    for n in 1..=60 {
        match clock.tick(n).await {
            Ok(n) => println!("call {n}: ok"),
            Err(e) => println!("call {n}: {e}"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    node.shutdown().await;
    Ok(())
}
