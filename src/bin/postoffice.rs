//! The PostOffice: a WebSocket gateway routing clients onto the bus
//! (docs/POSTOFFICE.md), configured from the environment.
//!
//! Run with: `WARREN_AMQP_URL=$(scripts/broker url) WARREN_POSTOFFICE_TOKENS=s3cret=ann cargo run --features postoffice --bin postoffice`

use warren::postoffice::{PostOffice, ENV_HELP};
use warren::{Config, Connection};

const USAGE: &str = "\
postoffice: a WebSocket gateway routing clients onto the bus (warren)

Usage: postoffice [--help]

Serves GET /ws (the WebSocket protocol of docs/POSTOFFICE.md) and
GET /services. Configured from the environment:

  WARREN_POSTOFFICE_LISTEN           address to listen on (default 127.0.0.1:8080)
  WARREN_AMQP_URL                    the broker (and the other WARREN_* broker
                                     settings of warren::Config::from_env)
";

#[tokio::main]
async fn main() {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}{ENV_HELP}");
        return;
    }
    if let Some(other) = std::env::args().nth(1) {
        eprintln!("postoffice: unknown argument `{other}` (see --help)");
        std::process::exit(2);
    }
    if let Err(e) = run().await {
        eprintln!("postoffice: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let listen =
        std::env::var("WARREN_POSTOFFICE_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let builder = PostOffice::from_env()?;
    let conn = Connection::connect(Config::from_env()?).await?;
    let office = builder.start(&conn).await?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen} (WARREN_POSTOFFICE_LISTEN): {e}"))?;
    println!(
        "postoffice {} listening on {}://{}/ws",
        office.id(),
        office.scheme(),
        listener.local_addr()?
    );
    office
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    office.shutdown().await;
    Ok(())
}
