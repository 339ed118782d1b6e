//! Run with: `scripts/broker start && WARREN_AMQP_URL=$(scripts/broker url) cargo run --example metrics`
//!
//! A node without the HTTP fallback and a client in one process, with a
//! `MetricsServer` beside them serving `GET /metrics`, `/health/live` and
//! `/health/ready`. The example makes a few calls, adds a metric of its
//! own to warren's registry, prints what a scrape returns, and checks
//! readiness. Set `METRICS_ADDR` (e.g. `127.0.0.1:9464`) and
//! `METRICS_HOLD=1` to keep serving for a real Prometheus until Ctrl-C.

use warren::metrics::prometheus_client::metrics::counter::Counter;
use warren::metrics::MetricsServer;
use warren::{Client, Config, Connection, Error, Node};

/// Greets people.
#[warren::service]
pub trait Greeter {
    /// Says hello.
    async fn hello(&self, name: String) -> String;
}

struct English;

impl Greeter for English {
    async fn hello(&self, name: String) -> String {
        format!("Hello, {name}!")
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let conn = Connection::connect(Config::from_env()?).await?;
    let node = Node::serve(&conn, GreeterServer::new(English)).await?;
    let addr = std::env::var("METRICS_ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let addr = addr
        .parse()
        .map_err(|e| Error::Config(format!("METRICS_ADDR `{addr}`: {e}")))?;
    let server = MetricsServer::builder()
        .connection(&conn)
        .node(&node)
        .bind(addr)
        .await?;

    // A metric of the application's own, served beside warren's.
    let greeted = Counter::<u64>::default();
    warren::metrics::registry()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .register("example_greetings", "Greetings sent.", greeted.clone());

    let greeter = GreeterClient::new(Client::new(&conn));
    for name in ["Ada", "Grace", "Linus"] {
        println!("{}", greeter.hello(name.into()).await?);
        greeted.inc();
    }

    let text = warren::metrics::encode();
    println!("\n# some of GET http://{}/metrics:", server.addr());
    for line in text.lines().filter(|l| {
        l.starts_with("warren_client_calls_total")
            || l.starts_with("warren_server_requests_total")
            || l.starts_with("warren_connections{")
            || l.starts_with("example_greetings")
    }) {
        println!("{line}");
    }
    println!(
        "\nreadiness: curl http://{}/health/ready  (200 while connected and consuming)",
        server.addr()
    );

    if std::env::var_os("METRICS_HOLD").is_some() {
        println!("serving until Ctrl-C");
        tokio::signal::ctrl_c().await.ok();
    }
    server.shutdown().await;
    node.shutdown().await;
    conn.close();
    Ok(())
}
