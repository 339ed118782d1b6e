//! A TCP fault proxy between a client and the broker: it forwards bytes both
//! ways and, on command, cuts every connection, stalls traffic without
//! closing anything (a black hole), adds latency, refuses new connections,
//! or does the last two at once (a partition).
//!
//! A stall stops reading from both sockets, so the kernel buffers fill and
//! senders block, as behind a dead network path; on `resume` what was held
//! flows again. A cut closes both sockets of every open connection; new
//! connections are accepted as before.
//!
//! The one proxy of the tests (and of `examples/fallback.rs`, which
//! includes this file).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

#[derive(Clone, Copy, Debug, Default)]
struct Faults {
    stalled: bool,
    refuse: bool,
    latency: Duration,
}

/// A running proxy; dropping it closes the listener and every connection.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    faults: watch::Sender<Faults>,
    cuts: watch::Sender<u64>,
    open: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let (faults, _) = watch::channel(Faults::default());
        let (cuts, _) = watch::channel(0u64);
        let open = Arc::new(AtomicUsize::new(0));
        let accept = tokio::spawn(accept(
            listener,
            upstream,
            faults.clone(),
            cuts.clone(),
            open.clone(),
        ));
        Self {
            addr,
            faults,
            cuts,
            open,
            accept,
        }
    }

    /// A proxy in front of the broker at the AMQP URL `url`.
    pub async fn to_url(url: &str) -> Self {
        Self::start(broker_addr(url)).await
    }

    /// The proxy's own address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The AMQP URL that reaches the broker through the proxy.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// `url` pointed at the proxy: its user, password, vhost and query kept.
    pub fn url_for(&self, url: &str) -> String {
        let start = url.find("://").map_or(0, |i| i + 3);
        let end = url[start..].find('/').map_or(url.len(), |i| start + i);
        let host = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
        format!("{}{}{}", &url[..host], self.addr, &url[end..])
    }

    /// Connections open through the proxy now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Closes every open connection, both sides.
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Stops forwarding in both directions, closing nothing. New
    /// connections are accepted and stall too.
    pub fn stall(&self) {
        self.faults.send_modify(|f| f.stalled = true);
    }

    /// Forwards again (what was held during a stall goes through) and
    /// accepts new connections again.
    pub fn resume(&self) {
        self.faults.send_modify(|f| {
            f.stalled = false;
            f.refuse = false;
        });
    }

    /// Delays every chunk by `latency`, in each direction.
    pub fn latency(&self, latency: Duration) {
        self.faults.send_modify(|f| f.latency = latency);
    }

    /// Closes new connections as soon as they are accepted (open ones are
    /// left alone), as a broker that is not there.
    pub fn refuse(&self) {
        self.faults.send_modify(|f| f.refuse = true);
    }

    /// Cuts every connection and refuses new ones until [`Proxy::resume`],
    /// as a network partition between the client and the broker.
    pub fn partition(&self) {
        self.refuse();
        self.cut();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// The address of the broker of an AMQP URL (a host name is resolved,
/// `localhost` to 127.0.0.1).
pub fn broker_addr(url: &str) -> SocketAddr {
    let rest = url.split("://").nth(1).expect("scheme");
    let host_port = rest.split('/').next().unwrap().rsplit('@').next().unwrap();
    let host_port = host_port.replace("localhost", "127.0.0.1");
    let with_port = if host_port.contains(':') {
        host_port
    } else {
        format!("{host_port}:5672")
    };
    std::net::ToSocketAddrs::to_socket_addrs(&with_port)
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("cannot resolve the broker address `{with_port}`"))
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: watch::Sender<Faults>,
    cuts: watch::Sender<u64>,
    open: Arc<AtomicUsize>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        // Watching for cuts before looking at `refuse`: a partition
        // (refuse, then cut) that comes after the look still cuts this one.
        let cuts = cuts.subscribe();
        if faults.borrow().refuse {
            drop(client);
            continue;
        }
        let faults = faults.subscribe();
        let open = Open::new(open.clone());
        tokio::spawn(async move {
            connection(client, upstream, faults, cuts).await;
            drop(open);
        });
    }
}

/// Counts a connection as open while it lives.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Forwards one connection until either side closes or a cut.
async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    faults: watch::Receiver<Faults>,
    mut cuts: watch::Receiver<u64>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    // Both directions end together: AMQP has no use for a half-open socket.
    tokio::select! {
        () = direction(cr, sw, faults.clone()) => {}
        () = direction(sr, cw, faults) => {}
        _ = cuts.changed() => {}
    }
}

/// One direction: a reader that stamps chunks, a writer that holds each
/// until its latency passed and no stall is on.
async fn direction(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    faults: watch::Receiver<Faults>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    let mut read_faults = faults.clone();
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if read_faults.wait_for(|f| !f.stalled).await.is_err() {
                return;
            }
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let mut write_faults = faults;
    let writer = async move {
        while let Some((read_at, chunk)) = rx.recv().await {
            loop {
                let latency = write_faults.borrow().latency;
                tokio::time::sleep_until(read_at + latency).await;
                let Ok(f) = write_faults.wait_for(|f| !f.stalled).await else {
                    return;
                };
                // The latency may have grown while this chunk waited.
                if f.latency <= latency {
                    break;
                }
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    // The writer drains what the reader read before it saw the end.
    tokio::join!(reader, writer);
}
