//! Run with: `scripts/broker start && WARREN_AMQP_URL=$(scripts/broker url) cargo run --example fallback`
//!
//! Degraded mode. Two `greeter` instances serve HTTP beside AMQP and
//! announce their URLs; a caller's broker connection runs through a small
//! TCP relay. A third of the way in, the relay cuts that connection: calls
//! go on over HTTP. Two thirds in, it is restored: calls return to AMQP by
//! themselves. Set `WARREN_HTTP_TOKEN` to require a bearer token.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::{service_fn, Layer, ServiceExt};
use warren::config::{Backoff, WhenDisconnected};
use warren::http::{FallbackLayer, HttpClient, HttpConfig, Peers};
use warren::{Address, Client, Config, Connection, ContentType, Error, Node, Request, Response};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?
        // Fail at once while disconnected, so the fallback switches at once.
        .when_disconnected(WhenDisconnected::FailFast)
        .backoff(Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            max_attempts: None,
            ..Backoff::default()
        });
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

    // The caller, through a relay we can cut.
    let relay = Relay::start(broker_addr(&config).await?).await?;
    let caller_config = config.clone().url(relay.url(&config))?;
    let caller_conn = Connection::connect(caller_config).await?;
    let peers = Peers::from_config(&http);
    peers.learn_from(&caller_conn);
    peers
        .wait_until(|p| p.iter().filter(|p| p.service.as_str() == "greeter").count() >= 2)
        .await;
    let over_http = HttpClient::new(peers)?.token(http.token.clone());
    // A call published in the instant the connection dies may have run; it
    // is sent again over HTTP only for a method declared idempotent (drop
    // this line to see such a call fail with ConnectionLost instead).
    let client = FallbackLayer::new(&caller_conn, over_http)
        .idempotent(["Greeter.hello"])
        .layer(Client::new(&caller_conn));

    for i in 0..30 {
        if i == 10 {
            relay.cut();
            println!("--- broker connection cut ---");
        }
        if i == 20 {
            relay.restore();
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

/// `amqp://user:pass@host:port/vhost` as (`amqp://user:pass@`, `host:port`, `/vhost`).
fn split_url(url: &str) -> (&str, &str, &str) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let at = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    (&url[..at], &url[at..end], &url[end..])
}

async fn broker_addr(config: &Config) -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let (_, host, _) = split_url(config.urls[0].expose());
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5672")
    };
    let addr = tokio::net::lookup_host(host).await?.next();
    addr.ok_or_else(|| Error::Config("the broker URL names no address".into()).into())
}

/// A TCP relay to the broker that can drop its connections and refuse new
/// ones (as a network partition would), then let them through again.
struct Relay {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let (cut, _) = watch::channel(false);
        let relay = Self {
            addr: listener.local_addr()?,
            cut: cut.clone(),
        };
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if *cut.borrow() {
                    continue;
                }
                let mut cut = cut.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Ok(relay)
    }

    /// `config`'s first broker URL, pointed at the relay.
    fn url(&self, config: &Config) -> String {
        let (head, _, path) = split_url(config.urls[0].expose());
        format!("{head}{}{path}", self.addr)
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }

    fn restore(&self) {
        self.cut.send_replace(false);
    }
}
