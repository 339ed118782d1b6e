//! TLS to the broker with a private CA and mutual TLS: certificates made
//! by the test (openssl), a private broker with a TLS listener that asks
//! for a client certificate. A call works over it; an untrusted CA, a host
//! name the certificate does not list, a missing client certificate and
//! TLS files with a plain `amqp://` URL each fail at once with an error
//! that says which. A server name given apart lets a client reach the
//! broker by IP address; EXTERNAL logs in as the client certificate's
//! common name. Over TLS too, a reply over the caller's `max_body` is
//! dropped as it arrives: the caller gets `BodyTooLarge`.
#![cfg(feature = "tls")]
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::broker::{free_port, PrivateBroker};
use support::handler::{echo, Hits};
use support::request;
use warren::{Address, Client, Config, Connection, ContentType, Error, Node};

struct Tls {
    dir: PathBuf,
    port: u16,
    broker: PrivateBroker,
}

impl Tls {
    async fn start() -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(support::unique("tls"));
        support::certs::make(&dir);
        let broker = PrivateBroker::new();
        let port = free_port();
        broker
            .start_with(&[
                ("WARREN_BROKER_TLS_DIR", dir.display().to_string()),
                ("WARREN_BROKER_TLS_PORT", port.to_string()),
                ("WARREN_BROKER_TLS_CLIENT_CERT", "required".to_owned()),
            ])
            .await;
        Self { dir, port, broker }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The tests' config for `amqps://<host>:<tls port>`, no TLS files.
    fn config(&self, host: &str) -> Config {
        support::config()
            .url(format!("amqps://guest:guest@{host}:{}/%2f", self.port))
            .unwrap()
    }

    /// With the CA and the client certificate.
    fn trusted(&self) -> Config {
        self.config("localhost")
            .tls_ca(self.file("ca.pem"))
            .tls_client(self.file("client.pem"), self.file("client.key"))
    }
}

/// Serves an echo node on `conn` and calls it with `text` over `conn`.
async fn echo_call(conn: &Connection, text: &str) {
    let t = support::service_type("tls");
    let node = Node::builder(t.clone())
        .serve(conn, echo(&Hits::default()))
        .await
        .unwrap();
    let reply = Client::new(conn)
        .call(request(
            Address::any(&t).unwrap(),
            "Echo.say",
            ContentType::Json,
            &text,
        ))
        .await
        .unwrap();
    assert_eq!(reply.decode::<String>().unwrap(), text);
    node.shutdown().await;
}

/// A node on `conn` answers with a body of the size asked; a caller
/// connected with `caller` and a 1 KiB limit gets `BodyTooLarge` for a
/// larger one (the filter reads the decrypted frames), then goes on.
async fn too_large_reply(conn: &Connection, caller: Config) {
    let t = support::service_type("tls-big");
    let node = Node::builder(t.clone())
        .serve(
            conn,
            tower::service_fn(|req: warren::Request| async move {
                let size: usize = req.decode()?;
                Ok::<_, Error>(warren::Response::ok(req.content_type, vec![b'y'; size]))
            }),
        )
        .await
        .unwrap();
    let caller = Connection::connect(caller.max_body(1024)).await.unwrap();
    let client = Client::new(&caller);
    let call = |size: usize| {
        let address = Address::any(&t).unwrap();
        client.call(request(address, "Big.make", ContentType::Json, &size))
    };
    match call(300_000).await {
        Err(Error::BodyTooLarge { size, limit }) => assert_eq!((size, limit), (300_000, 1024)),
        Err(e) => panic!("expected BodyTooLarge, got {e}"),
        Ok(r) => panic!("expected BodyTooLarge, got {} bytes", r.body.len()),
    }
    assert_eq!(call(1000).await.unwrap().body.len(), 1000);
    node.shutdown().await;
}

/// Connects, and says how long the failure took.
async fn refused(cfg: Config) -> (Error, Duration) {
    let start = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(30), Connection::connect(cfg))
        .await
        .expect("connect ends")
        .expect_err("the connection must fail");
    (err, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_private_ca_and_errors_that_say_which() {
    let tls = Tls::start().await;

    let conn = Connection::connect(tls.trusted()).await.unwrap();
    echo_call(&conn, "over TLS").await;
    too_large_reply(&conn, tls.trusted()).await;

    let client = |cfg: Config| cfg.tls_client(tls.file("client.pem"), tls.file("client.key"));
    for (what, cfg, says) in [
        (
            "the platform's trust store",
            client(tls.config("localhost")),
            "not signed by a CA",
        ),
        (
            "another CA",
            client(tls.config("localhost").tls_ca(tls.file("other-ca.pem"))),
            "not signed by a CA",
        ),
        (
            "a host the certificate does not name",
            client(tls.config("127.0.0.1").tls_ca(tls.file("ca.pem"))),
            "not valid for",
        ),
        (
            "no client certificate",
            tls.config("localhost").tls_ca(tls.file("ca.pem")),
            "client certificate",
        ),
    ] {
        let (err, took) = refused(cfg).await;
        println!("{what}: {took:?}: {err}");
        // Not retried: a transient failure would be retried for ~10 s
        // (the broker's side of a refused client certificate can take a
        // second on a busy machine).
        assert!(
            took < Duration::from_secs(5),
            "{what}: retried for {took:?}"
        );
        assert!(matches!(err, Error::Tls { .. }), "{what}: not Tls: {err}");
        assert!(err.to_string().contains(says), "{what}: {err}");
    }

    // By IP address, with the name the certificate lists given apart.
    let by_ip = client(tls.config("127.0.0.1").tls_ca(tls.file("ca.pem")))
        .tls_server_name("localhost")
        .unwrap();
    let conn = Connection::connect(by_ip)
        .await
        .expect("the server name override");
    echo_call(&conn, "by IP address").await;
    assert!(matches!(
        tls.trusted().tls_server_name("not a name!"),
        Err(Error::Config(m)) if m.contains("not a name!")
    ));

    // EXTERNAL: the client certificate's common name (`client`) is the
    // user; no password in the URL (EXTERNAL does not check the one the
    // user has).
    tls.broker.ctl(&["add_user", "client", "unused"]).await;
    tls.broker
        .ctl(&["set_permissions", "-p", "/", "client", ".*", ".*", ".*"])
        .await;
    let external = support::config()
        .url(format!(
            "amqps://localhost:{}/%2f?auth_mechanism=external",
            tls.port
        ))
        .unwrap()
        .tls_ca(tls.file("ca.pem"))
        .tls_client(tls.file("client.pem"), tls.file("client.key"));
    let conn = Connection::connect(external).await.expect("EXTERNAL login");
    echo_call(&conn, "as the certificate's user").await;
    let users = tls
        .broker
        .ctl(&["list_connections", "user", "auth_mechanism"])
        .await;
    assert!(
        users
            .lines()
            .any(|l| l.split_whitespace().eq(["client", "EXTERNAL"])),
        "a connection logged in as `client` by EXTERNAL: {users}"
    );

    // TLS files with a plain URL, and a file that is not there.
    let plain = support::config().tls_ca(tls.file("ca.pem"));
    let (err, _) = refused(plain).await;
    assert!(
        matches!(&err, Error::Config(m) if m.contains("amqps://")),
        "{err}"
    );
    let (err, _) = refused(tls.trusted().tls_ca(tls.file("missing.pem"))).await;
    assert!(
        matches!(&err, Error::Config(m) if m.contains("missing.pem") && m.contains("Config::tls")),
        "{err}"
    );
}
