//! Helpers for degraded-mode tests: nodes serving HTTP, and a caller whose
//! broker connection runs through a [`Proxy`].
#![allow(dead_code, unreachable_pub)]

use crate::support::proxy::Proxy;
use std::time::Duration;
use tower::{Layer, ServiceExt};
use warren::discovery::Peers;
use warren::http::{Fallback, FallbackLayer, HttpClient, HttpConfig};
use warren::{
    Address, Client, Config, Connection, ContentType, Error, Request, Response, Transport,
};
use warren::{Backoff, WhenDisconnected};

/// HTTP on a free loopback port, announcing every second.
pub fn http_config() -> HttpConfig {
    HttpConfig::default()
        .listen("127.0.0.1:0".parse().unwrap())
        .announce_every(Duration::from_secs(1))
}

/// An HTTP client that knows `node` (by its announced URL) only.
pub fn client_for(node: &warren::Node) -> HttpClient {
    let peers = Peers::new();
    let entry = format!(
        "{}/{}={}",
        node.service(),
        node.id(),
        node.http_url().unwrap()
    );
    peers.insert(warren::http::PeerUrl::parse(&entry).unwrap());
    HttpClient::new(peers).unwrap()
}

/// `Echo.say` of `n` (JSON) to `node`, with a 10 s deadline.
pub fn echo(node: &warren::Node, n: i32) -> Request {
    Request::encode(
        Address::Instance(node.id().clone()),
        "Echo.say",
        ContentType::Json,
        &n,
    )
    .unwrap()
    .with_timeout(Duration::from_secs(10))
}

/// A caller going through a fault proxy, learning peers from announcements.
pub struct Caller {
    pub proxy: Proxy,
    pub conn: Connection,
    pub peers: Peers,
    pub service: Fallback<Client, HttpClient>,
}

impl Caller {
    /// Connects through a new proxy to the broker of `cfg` (same exchange).
    pub async fn start(cfg: &Config, idempotent: &[&str]) -> Self {
        let proxy = Proxy::to_url(&crate::support::url()).await;
        let cfg = cfg
            .clone()
            .url(proxy.url_for(&crate::support::url()))
            .unwrap()
            .when_disconnected(WhenDisconnected::FailFast)
            .backoff(
                Backoff::default()
                    .initial(Duration::from_millis(50))
                    .max(Duration::from_millis(300))
                    .max_attempts(None),
            );
        let conn = crate::support::connect(cfg).await;
        let peers = Peers::new();
        peers.learn_from(&conn);
        let http = HttpClient::new(peers.clone()).unwrap();
        let service = FallbackLayer::new(&conn, http)
            .idempotent(idempotent.iter().copied())
            .layer(Client::new(&conn));
        Self {
            proxy,
            conn,
            peers,
            service,
        }
    }

    /// Waits until `n` peers of `service` are known.
    pub async fn knows(&self, service: &warren::ServiceType, n: usize) {
        let known = self
            .peers
            .wait_until(|p| p.iter().filter(|p| &p.service == service).count() >= n);
        tokio::time::timeout(Duration::from_secs(15), known)
            .await
            .expect("the nodes' announcements arrive");
    }

    /// Cuts the broker connection (refusing new ones) and waits until the
    /// caller sees it.
    pub async fn cut(&self) {
        self.proxy.partition();
        self.wait(false).await;
    }

    /// Restores the connection and waits until the caller is connected.
    pub async fn restore(&self) {
        self.proxy.resume();
        self.wait(true).await;
    }

    async fn wait(&self, connected: bool) {
        let mut state = self.conn.state();
        tokio::time::timeout(
            Duration::from_secs(20),
            state.wait_for(|s| s.is_connected() == connected),
        )
        .await
        .expect("the connection state changes")
        .unwrap();
    }

    /// One call through the fallback.
    pub async fn call(&self, request: Request) -> Result<Response, Error> {
        self.service.clone().oneshot(request).await
    }

    /// Calls until a reply comes over AMQP (the reply channel opens a
    /// moment after the connection), every call succeeding meanwhile.
    pub async fn until_amqp(&self, request: impl Fn() -> Request) {
        let done = async {
            loop {
                let resp = self.call(request()).await.expect("calls keep working");
                if resp.transport == Transport::Amqp {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), done)
            .await
            .expect("calls go over AMQP again");
    }
}

/// A JSON request for `method` at `address` with `arg`.
pub fn json<T: serde::Serialize>(address: &Address, method: &str, arg: &T) -> Request {
    Request::encode(address.clone(), method, ContentType::Json, arg).unwrap()
}
