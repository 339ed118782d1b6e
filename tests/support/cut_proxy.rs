//! A TCP forwarder between a client and the broker that can cut the
//! connection: [`CutProxy::cut`] drops every forwarded connection and
//! closes new ones at once; [`CutProxy::restore`] forwards again.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A forwarder to one upstream address, on a port of its own on 127.0.0.1.
pub struct CutProxy {
    addr: SocketAddr,
    cut: Arc<watch::Sender<bool>>,
    accept: JoinHandle<()>,
}

impl CutProxy {
    /// Forwards a fresh local port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let cut = Arc::new(watch::channel(false).0);
        let state = cut.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *state.borrow() {
                    drop(client);
                    continue;
                }
                tokio::spawn(forward(client, upstream, state.subscribe()));
            }
        });
        Self { addr, cut, accept }
    }

    /// A proxy for the broker of `amqp_url`, and that URL pointed at it.
    pub async fn for_url(amqp_url: &str) -> (Self, String) {
        let (head, rest) = amqp_url.split_once('@').expect("user@host in the URL");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let upstream = tokio::net::lookup_host(host)
            .await
            .expect("resolve the broker")
            .next()
            .expect("a broker address");
        let proxy = Self::start(upstream).await;
        let url = format!("{head}@{}/{path}", proxy.addr);
        (proxy, url)
    }

    /// The local address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every connection and refuses new ones until [`CutProxy::restore`].
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.cut.send_replace(true);
        self.accept.abort();
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, mut cut: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    // Both sockets are dropped when either side closes or the proxy cuts.
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.wait_for(|c| *c) => {}
    }
}
