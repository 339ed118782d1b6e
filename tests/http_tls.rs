//! HTTPS on a node's HTTP endpoint, with certificates made by the test
//! (openssl): the node announces an `https://` URL; a call over it works
//! with the right CA and fails with [`Error::Tls`] with another CA or
//! none; mutual TLS refuses a client without a certificate; a handshake
//! that never comes is closed at the header-read timeout; bad files are
//! refused at start, naming the file.
#[path = "support/degraded.rs"]
mod degraded;
mod support;

use degraded::{client_for, echo};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use warren::http::{HttpClient, HttpConfig};
use warren::listen::ServerTls;
use warren::{Error, Node};

fn certificates() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(support::unique("http-tls"));
    support::certs::make(&dir);
    dir
}

fn http(tls: ServerTls) -> HttpConfig {
    HttpConfig::default()
        .listen("127.0.0.1:0".parse().unwrap())
        .announce_every(Duration::from_secs(1))
        .tls(tls)
}

async fn node(http: HttpConfig) -> Result<Node, Error> {
    let conn = support::connect(support::config()).await;
    let hits = support::handler::Hits::default();
    Node::builder(support::service_type("https"))
        .http(http)
        .serve(&conn, support::handler::echo(&hits))
        .await
}

fn server_tls(dir: &Path) -> ServerTls {
    ServerTls::new(dir.join("ip-server.pem"), dir.join("ip-server.key"))
}

#[tokio::test]
async fn a_call_over_https_needs_the_right_ca() {
    let dir = certificates();
    let node = node(http(server_tls(&dir))).await.unwrap();
    let url = node.http_url().unwrap();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let trusting = client_for(&node).tls_ca(dir.join("ca.pem")).unwrap();
    let resp = trusting
        .call(echo(&node, 1))
        .await
        .expect("a call over HTTPS");
    assert_eq!(resp.decode::<i32>().unwrap(), 1);

    for client in [
        client_for(&node).tls_ca(dir.join("other-ca.pem")).unwrap(),
        client_for(&node),
    ] {
        match client.call(echo(&node, 2)).await {
            Err(Error::Tls {
                url: at, reason, ..
            }) => {
                assert_eq!(at, url);
                assert!(reason.contains("not signed by a trusted CA"), "{reason}");
            }
            other => panic!("expected a TLS error, got {other:?}"),
        }
    }

    // The same through HttpConfig, as a node's caller sets it.
    let config = HttpConfig::default().tls_ca(dir.join("ca.pem"));
    let from_config = HttpClient::from_config(client_for(&node).peers().clone(), &config).unwrap();
    let resp = from_config.call(echo(&node, 3)).await.unwrap();
    assert_eq!(resp.decode::<i32>().unwrap(), 3);
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate() {
    let dir = certificates();
    let tls = server_tls(&dir).client_ca(dir.join("ca.pem"));
    let node = node(http(tls)).await.unwrap();

    let anonymous = client_for(&node).tls_ca(dir.join("ca.pem")).unwrap();
    match anonymous.call(echo(&node, 1)).await {
        Err(Error::Tls { .. }) => {}
        other => panic!("expected a TLS error, got {other:?}"),
    }
    let with_cert = client_for(&node)
        .tls_ca(dir.join("ca.pem"))
        .unwrap()
        .tls_identity(dir.join("client.pem"), dir.join("client.key"))
        .unwrap();
    let resp = with_cert
        .call(echo(&node, 4))
        .await
        .expect("a call with mTLS");
    assert_eq!(resp.decode::<i32>().unwrap(), 4);
}

#[tokio::test]
async fn a_handshake_that_never_comes_is_closed_at_the_header_timeout() {
    let dir = certificates();
    let timeout = Duration::from_secs(1);
    let node = node(http(server_tls(&dir)).header_read_timeout(timeout))
        .await
        .unwrap();
    let started = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(node.http_addr().unwrap())
        .await
        .unwrap();
    let read = tokio::time::timeout(
        timeout + Duration::from_secs(6),
        silent.read(&mut [0u8; 16]),
    )
    .await
    .expect("the silent connection is closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= timeout);
}

#[tokio::test]
async fn bad_certificate_files_are_refused_at_start_naming_the_file() {
    let dir = certificates();
    let missing = dir.join("missing.pem");
    let cases = [
        (
            ServerTls::new(&missing, dir.join("server.key")),
            missing.clone(),
        ),
        // A key where the certificate should be.
        (
            ServerTls::new(dir.join("server.key"), dir.join("server.key")),
            dir.join("server.key"),
        ),
        // A certificate where the key should be.
        (
            ServerTls::new(dir.join("server.pem"), dir.join("server.pem")),
            dir.join("server.pem"),
        ),
        // Another certificate's key.
        (
            ServerTls::new(dir.join("server.pem"), dir.join("client.key")),
            dir.join("client.key"),
        ),
        (server_tls(&dir).client_ca(&missing), missing.clone()),
    ];
    for (tls, file) in cases {
        let err = node(http(tls)).await.unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        let file = file.display().to_string();
        assert!(
            err.to_string().contains(&file),
            "{err} does not name {file}"
        );
    }

    // From the environment: both files or neither.
    let err = HttpConfig::default()
        .with_env_from(|k| (k == "WARREN_HTTP_TLS_CERT").then(|| "/x.pem".to_owned()))
        .unwrap_err();
    assert!(err.to_string().contains("WARREN_HTTP_TLS_KEY"), "{err}");
    let cfg = HttpConfig::default()
        .with_env_from(|k| match k {
            "WARREN_HTTP_TLS_CERT" => Some("/c.pem".into()),
            "WARREN_HTTP_TLS_KEY" => Some("/k.pem".into()),
            "WARREN_HTTP_TLS_CA" => Some("/ca.pem".into()),
            _ => None,
        })
        .unwrap();
    let tls = cfg.listener.tls.expect("TLS from the environment");
    assert_eq!(tls.cert, Path::new("/c.pem"));
    assert_eq!(cfg.tls_ca.as_deref(), Some(Path::new("/ca.pem")));
}
