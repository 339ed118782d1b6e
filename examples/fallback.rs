//! Run with: `scripts/broker start && WARREN_AMQP_URL=$(scripts/broker url) cargo run --example fallback`
//!
//! Over HTTPS, with a certificate for `IP:127.0.0.1` and the CA that signed
//! it: `WARREN_HTTP_TLS_CERT=server.pem WARREN_HTTP_TLS_KEY=server.key
//! WARREN_HTTP_TLS_CA=ca.pem` before `cargo run`.
//!
//! Degraded mode. Two `greeter` instances serve HTTP beside AMQP and
//! announce their URLs; a caller's broker connection runs through the TCP
//! fault proxy of the tests (`tests/support/proxy.rs`). A third of the way
//! in, the proxy cuts that connection: calls go on over HTTP. Two thirds
//! in, it is restored: calls return to AMQP by themselves. Set
//! `WARREN_HTTP_TOKEN` to require a bearer token.

#[allow(dead_code, unreachable_pub)]
#[path = "../tests/support/proxy.rs"]
mod proxy;

use proxy::Proxy;
use std::time::Duration;
use tower::{service_fn, Layer, ServiceExt};
use warren::discovery::Peers;
use warren::http::{FallbackLayer, HttpClient, HttpConfig};
use warren::{Address, Client, Config, Connection, ContentType, Node, Request, Response};
use warren::{Backoff, WhenDisconnected};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?
        // Fail at once while disconnected, so the fallback switches at once.
        .when_disconnected(WhenDisconnected::FailFast)
        .backoff(
            Backoff::default()
                .initial(Duration::from_millis(100))
                .max(Duration::from_millis(500))
                .max_attempts(None),
        );
    let http = HttpConfig::from_env()?;

    // Two instances of one service, each with an HTTP endpoint on a free port.
    let conn = Connection::connect(config.clone()).await?;
    let greeter = service_fn(|req: Request| async move {
        let name: String = req.decode()?;
        Response::encode(req.content_type, &format!("hello, {name}"))
    });
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let node = Node::builder("greeter".parse()?)
            .http(
                http.clone()
                    .listen("127.0.0.1:0".parse()?)
                    .announce_every(Duration::from_secs(1)),
            )
            .serve(&conn, greeter)
            .await?;
        println!(
            "greeter {} serves {}",
            node.id(),
            node.http_url().unwrap_or("-")
        );
        nodes.push(node);
    }

    // The caller, through a proxy that can cut its connection.
    let url = config.urls[0].expose();
    let proxy = Proxy::to_url(url).await;
    let caller_config = config.clone().url(proxy.url_for(url))?;
    let caller_conn = Connection::connect(caller_config).await?;
    let peers = Peers::from_config(&http);
    peers.learn_from(&caller_conn);
    peers
        .wait_until(|p| p.iter().filter(|p| p.service.as_str() == "greeter").count() >= 2)
        .await;
    // The token, and the CA of WARREN_HTTP_TLS_CA for nodes serving HTTPS.
    let over_http = HttpClient::from_config(peers, &http)?;
    // A call published in the instant the connection dies may have run; it
    // is sent again over HTTP only for a method declared idempotent (drop
    // this line to see such a call fail with ConnectionLost instead).
    let client = FallbackLayer::new(&caller_conn, over_http)
        .idempotent(["Greeter.hello"])
        .layer(Client::new(&caller_conn));

    for i in 0..30 {
        if i == 10 {
            proxy.partition();
            println!("--- broker connection cut ---");
        }
        if i == 20 {
            proxy.resume();
            println!("--- broker connection restored ---");
        }
        let req = Request::encode(
            Address::any("greeter")?,
            "Greeter.hello",
            ContentType::Json,
            &format!("call {i}"),
        )?;
        match client.clone().oneshot(req).await {
            Ok(r) => println!(
                "{i:>2} over {:<4} from {}: {}",
                r.transport,
                r.from.id.as_deref().unwrap_or("?"),
                r.decode::<String>()?
            ),
            Err(e) => println!("{i:>2} failed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}
