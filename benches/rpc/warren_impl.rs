//! warren under test: a typed service from `#[warren::service]`, served by a
//! [`Node`] and called with the generated client over [`warren::Client`].
//!
//! The body is a `bytes::Bytes` (its `serde` feature encodes it as
//! MessagePack bin): what an application sending bytes holds, passed to the
//! generated client without a copy. A plain `Vec<u8>` would be encoded by
//! serde as an array of integers (one MessagePack int per byte).
//!
//! Each mode has a service type of its own (`bench-echo-<mode>`: its work
//! queue, durable as every warren work queue is), on an exchange of the
//! bench's own. In the persistent mode the client sends each call with
//! [`Request::persistent`] set; the call ends with its reply (the confirm is
//! awaited alongside, for `NoRoute`), where the baseline awaits its confirm
//! and then its reply (see `docs/BENCHMARKS.md`).

use crate::client::{BoxError, Caller, ClientCtx};
use crate::mode::Mode;
use crate::server::{Gate, ServerCtx};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tower::util::MapRequest;
use warren::{Address, Config, Connection, Node, Request, ServiceType};

/// The echo service both sides share.
#[warren::service(name = "bench-echo")]
pub(crate) trait Echo {
    /// Returns `body`.
    async fn echo(&self, body: Bytes) -> Bytes;
}

/// The exchange warren declares (unused by calls to `Any`, which go through
/// the default exchange to the work queue).
const EXCHANGE: &str = "bench-warren";
/// Long enough for the memory mode's 100,000 held calls.
const TIMEOUT: Duration = Duration::from_secs(600);

fn config(url: &str) -> Result<Config, BoxError> {
    Ok(Config::default()
        .url(url)?
        .exchange(EXCHANGE)
        .default_timeout(TIMEOUT))
}

fn service(mode: Mode) -> Result<ServiceType, BoxError> {
    Ok(ServiceType::new(format!("bench-echo-{}", mode.id))?)
}

struct EchoImpl {
    gate: Option<Arc<Gate>>,
}

impl Echo for EchoImpl {
    async fn echo(&self, body: Bytes) -> Bytes {
        if let Some(gate) = &self.gate {
            gate.pass().await;
        }
        body
    }
}

/// Starts recording metrics in this process (`warren-metrics`).
pub(crate) fn enable_metrics() -> Result<(), BoxError> {
    #[cfg(feature = "metrics")]
    warren::metrics::enable();
    if cfg!(feature = "metrics") {
        Ok(())
    } else {
        Err("warren-metrics needs the `metrics` feature".into())
    }
}

/// Installs a `tracing_subscriber` fmt subscriber at INFO writing to
/// `io::sink` as the process's global subscriber (`warren-tracing`): every
/// span and event at INFO and above is built and formatted, and the text
/// thrown away.
pub(crate) fn install_tracing() {
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .with_writer(std::io::sink)
        .init();
}

/// The server: one node of the mode's service type.
pub(crate) async fn serve(ctx: ServerCtx) -> Result<(), BoxError> {
    let conn = Connection::connect(config(&ctx.url)?).await?;
    let server = EchoServer::new(EchoImpl {
        gate: ctx.gate.clone(),
    });
    let node = Node::builder(service(ctx.mode)?)
        .serve(&conn, server)
        .await?;
    ctx.ready();
    ctx.stopped().await;
    node.shutdown().await;
    conn.close();
    Ok(())
}

type Transport = MapRequest<warren::Client, fn(Request) -> Request>;

/// The caller: the generated client over a `warren::Client`.
pub(crate) struct Client {
    client: EchoClient<Transport>,
    /// The same client under the typed one, for its count of waiting calls.
    raw: warren::Client,
    _conn: Connection,
}

fn persistent(request: Request) -> Request {
    request.with_delivery(warren::Delivery::PersistentCall)
}

fn plain(request: Request) -> Request {
    request
}

impl Client {
    pub(crate) async fn connect(ctx: &ClientCtx) -> Result<Client, BoxError> {
        let conn = Connection::connect(config(&ctx.url)?).await?;
        let set: fn(Request) -> Request = if ctx.mode.persistent {
            persistent
        } else {
            plain
        };
        let raw = warren::Client::new(&conn);
        let transport = MapRequest::new(raw.clone(), set);
        let client = EchoClient::new(transport).with_address(Address::Any(service(ctx.mode)?));
        Ok(Client {
            client,
            raw,
            _conn: conn,
        })
    }
}

impl Caller for Client {
    async fn call(&self, body: Bytes) -> Result<Bytes, BoxError> {
        Ok(self.client.echo(body).await?)
    }

    fn waiting(&self) -> usize {
        self.raw.in_flight()
    }
}
