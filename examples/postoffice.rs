//! Run with: `scripts/broker start && WARREN_AMQP_URL=$(scripts/broker url) cargo run --features postoffice --example postoffice`
//!
//! A PostOffice and a `greeter` service behind it, with a web page
//! (`examples/postoffice.html`) at <http://127.0.0.1:8080/>: connect with
//! the token `demo-token`, call `Greeter.hello`, and see pushes arrive:
//! the service pushes a `greeted` frame to the caller's connection after
//! each call, and a `tick` to every client every five seconds. Set
//! `WARREN_POSTOFFICE_LISTEN` to listen elsewhere.

use axum::response::Html;
use axum::routing::get;
use std::time::Duration;
use warren::postoffice::{Caller, Identity, PostOffice, Pusher, TokenList};
use warren::{Config, Connection, Node, Request, Response};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let conn = Connection::connect(Config::from_env()?).await?;

    // The service: greets, then pushes to the caller's connection.
    let pusher = Pusher::new(warren::Client::new(&conn));
    let greeter = {
        let pusher = pusher.clone();
        tower::service_fn(move |req: Request| {
            let pusher = pusher.clone();
            async move {
                let name: String = req.decode()?;
                let caller = Caller::current();
                let user = caller.as_ref().map_or("someone", |c| c.user.as_str());
                let greeting = format!("Hello, {name}! You are {user}.");
                if let Some(c) = caller {
                    tokio::spawn(async move {
                        let _ = pusher
                            .to_connection(&c.connection, "greeted", &format!("greeted {name}"))
                            .await;
                    });
                }
                Response::encode(req.content_type, &greeting)
            }
        })
    };
    let node = Node::builder("greeter".parse()?)
        .serve(&conn, greeter)
        .await?;

    // The PostOffice, and the page beside its routes.
    let tokens = TokenList::new().token("demo-token", Identity::user("demo"))?;
    let office = PostOffice::builder()
        .authenticator(tokens)
        .start(&conn)
        .await?;
    let app = office
        .router()
        .route("/", get(|| async { Html(include_str!("postoffice.html")) }));
    let listen =
        std::env::var("WARREN_POSTOFFICE_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!(
        "open http://{}/ (token: demo-token)",
        listener.local_addr()?
    );

    // A tick to every client, every five seconds.
    tokio::spawn(async move {
        for n in 1u64.. {
            tokio::time::sleep(Duration::from_secs(5)).await;
            if let Err(e) = pusher.to_all("tick", &n).await {
                eprintln!("tick {n} not pushed: {e}");
            }
        }
    });

    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    office.shutdown().await;
    node.shutdown().await;
    Ok(())
}
