//! The PostOffice over `wss://`, with certificates made by the test
//! (openssl): a browser-like client that trusts the CA authenticates and
//! calls a service; one that trusts another CA fails its handshake and the
//! PostOffice goes on serving; with client certificates required, a client
//! without one is refused and a client with one is served.
#![cfg(feature = "tls")]
mod support;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use warren::listen::ServerTls;
use warren::postoffice::{Identity, PostOffice, TokenList};
use warren::{Connection, Node, ServiceType};

type Wss = WebSocketStream<TlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

fn certificates() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(support::unique("po-wss"));
    support::certs::make(&dir);
    dir
}

/// A PostOffice serving `wss://` with `tls` on a free loopback port, and
/// an echo service behind it.
async fn gateway(tls: ServerTls) -> (SocketAddr, ServiceType, Node, Arc<PostOffice>) {
    let conn: Connection = support::connect(support::config()).await;
    let echo = support::service_type("wss-echo");
    let hits = support::handler::Hits::default();
    let node = Node::builder(echo.clone())
        .serve(&conn, support::handler::echo(&hits))
        .await
        .unwrap();
    let office = PostOffice::builder()
        .service(support::service_type("wss-po"))
        .authenticator(
            TokenList::new()
                .token("ann-token", Identity::user("ann"))
                .unwrap(),
        )
        .tls(tls)
        .start(&conn)
        .await
        .expect("the PostOffice starts");
    assert_eq!(office.scheme(), "wss");
    let office = Arc::new(office);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = office.clone();
    tokio::spawn(async move { serving.serve(listener, std::future::pending()).await });
    (addr, echo, node, office)
}

/// A rustls client trusting `ca`, presenting `identity` (certificate and
/// key files) when given.
fn client(ca: &Path, identity: Option<(&Path, &Path)>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
    };
    TlsConnector::from(Arc::new(config))
}

/// TLS to `addr` (checked against the name 127.0.0.1), then the WebSocket
/// upgrade on `/ws`.
async fn connect(addr: SocketAddr, tls: &TlsConnector) -> Result<Wss, String> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::IpAddress(addr.ip().into());
    let stream = tls
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (ws, _) = tokio_tungstenite::client_async(format!("wss://{addr}/ws"), stream)
        .await
        .map_err(|e| format!("upgrade: {e}"))?;
    Ok(ws)
}

async fn send(ws: &mut Wss, frame: &Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

async fn recv(ws: &mut Wss) -> Value {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("the connection is open")
            .expect("a valid frame");
        match m {
            Message::Text(t) => return serde_json::from_str(&t).expect("a JSON frame"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Authenticates, then makes one call.
async fn login_and_call(ws: &mut Wss, echo: &ServiceType, n: u64) {
    send(ws, &json!({"auth": "ann-token"})).await;
    let welcome = recv(ws).await;
    assert_eq!(welcome["welcome"]["user"], "ann", "{welcome}");
    say(ws, echo, n).await;
}

/// One call through the PostOffice, answered.
async fn say(ws: &mut Wss, echo: &ServiceType, n: u64) {
    send(
        ws,
        &json!({"id": n, "to": format!("any:{echo}"), "method": "Echo.say", "body": {"n": n}}),
    )
    .await;
    assert_eq!(
        recv(ws).await,
        json!({"id": n, "status": "ok", "body": {"n": n}})
    );
}

#[tokio::test]
async fn a_client_trusting_the_ca_calls_over_wss_and_one_trusting_another_is_refused() {
    let dir = certificates();
    let (addr, echo, _node, _office) = gateway(ServerTls::new(
        dir.join("ip-server.pem"),
        dir.join("ip-server.key"),
    ))
    .await;

    let mut ws = connect(addr, &client(&dir.join("ca.pem"), None))
        .await
        .expect("a wss:// connection");
    login_and_call(&mut ws, &echo, 1).await;

    let err = connect(addr, &client(&dir.join("other-ca.pem"), None))
        .await
        .expect_err("a server certificate from an untrusted CA");
    assert!(err.starts_with("handshake:"), "{err}");

    // Plain ws:// to the TLS port is not served.
    let plain = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await;
    assert!(plain.is_err(), "plain WebSocket on the wss:// port");

    // The first connection and new ones go on.
    say(&mut ws, &echo, 2).await;
    let mut again = connect(addr, &client(&dir.join("ca.pem"), None))
        .await
        .unwrap();
    login_and_call(&mut again, &echo, 3).await;
}

#[tokio::test]
async fn with_client_certificates_required_only_a_client_with_one_is_served() {
    let dir = certificates();
    let (addr, echo, _node, _office) = gateway(
        ServerTls::new(dir.join("ip-server.pem"), dir.join("ip-server.key"))
            .client_ca(dir.join("ca.pem")),
    )
    .await;

    // Without a certificate: TLS 1.3 finishes the client's side of the
    // handshake before the server refuses, so the refusal shows at the
    // handshake or at the upgrade; either way no WebSocket.
    let refused = connect(addr, &client(&dir.join("ca.pem"), None)).await;
    assert!(
        refused.is_err(),
        "a client without a certificate was served"
    );

    let mut ws = connect(
        addr,
        &client(
            &dir.join("ca.pem"),
            Some((&dir.join("client.pem"), &dir.join("client.key"))),
        ),
    )
    .await
    .expect("a client with a certificate the CA signed");
    login_and_call(&mut ws, &echo, 1).await;
}
