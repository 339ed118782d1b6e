//! Run with: `scripts/broker start && WARREN_AMQP_URL=$(scripts/broker url) cargo run --example quickstart`
use warren::{Client, Config, Connection, Node};

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
async fn main() -> Result<(), warren::Error> {
    let conn = Connection::connect(Config::from_env()?).await?;
    let node = Node::serve(&conn, GreeterServer::new(English)).await?;
    let greeter = GreeterClient::new(Client::new(&conn));
    println!("{}", greeter.hello("world".into()).await?);
    node.shutdown().await;
    Ok(())
}
