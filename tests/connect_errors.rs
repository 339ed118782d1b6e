//! Connection errors that say what to fix: a wrong password, an unknown
//! vhost, a malformed URL or TLS spoken to a plain port fail at once (not
//! after ~10 s of retries), with a typed error that names the setting the
//! URL came from. A refusal after the connection was once up is retried
//! until the broker is fixed.
mod support;

use std::time::{Duration, Instant};
use support::broker::PrivateBroker;
use support::service::{echo, Service};
use warren::Backoff;
use warren::{Address, Client, Config, Connection, ConnectionState, Error, Node};

/// Permanent errors must come well before the default retries (about
/// 10 s) would end; the issue asks for under a second.
const AT_ONCE: Duration = Duration::from_secs(1);

/// The test broker's URL with its `user:password@` and `/vhost` replaced.
fn test_url(userinfo: Option<&str>, vhost: Option<&str>) -> String {
    let url = support::url();
    let start = url.find("://").unwrap() + 3;
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let at = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    let userinfo = userinfo.map_or_else(|| url[start..at].to_owned(), |u| format!("{u}@"));
    let path = vhost.map_or_else(|| url[end..].to_owned(), |v| format!("/{v}"));
    format!("{}{userinfo}{}{path}", &url[..start], &url[at..end])
}

/// The tests' config with `url` as if read from the environment variable `var`.
fn from_env(var: &str, url: &str) -> Result<Config, Error> {
    support::config().with_env_from(|k| (k == var).then(|| url.to_owned()))
}

/// Connects with the default retries and says how long it took.
async fn connect(cfg: Config) -> (Result<Connection, Error>, Duration) {
    let start = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(30), Connection::connect(cfg))
        .await
        .expect("connect ends");
    (result, start.elapsed())
}

#[tokio::test]
async fn a_wrong_password_fails_at_once_naming_the_setting() {
    let url = test_url(Some("guest:not-the-password"), None);
    let (result, took) = connect(from_env("WARREN_AMQP_URL", &url).unwrap()).await;
    let err = result.unwrap_err();
    assert!(took < AT_ONCE, "{took:?}: {err}");
    let Error::AuthenticationRefused { user, setting, .. } = &err else {
        panic!("not AuthenticationRefused: {err}");
    };
    assert_eq!(
        (user.as_str(), setting.as_str()),
        ("guest", "WARREN_AMQP_URL")
    );
    let msg = err.to_string();
    assert!(
        msg.contains("WARREN_AMQP_URL") && msg.contains("password"),
        "{msg}"
    );
    assert!(!msg.contains("not-the-password"), "{msg}");
    println!("wrong password: {took:?}: {msg}");

    // A connection started in the background stops too, and what waits on
    // it (a call, a node starting) gets the same error at once.
    let conn = Connection::start(from_env("RABBITMQ_URL", &url).unwrap()).unwrap();
    let mut state = conn.state();
    let refused = state.wait_for(|s| matches!(s, ConnectionState::Refused { .. }));
    tokio::time::timeout(AT_ONCE, refused)
        .await
        .unwrap()
        .unwrap();
    let t = support::service_type("refused");
    let err = Client::new(&conn)
        .call(echo(&Address::Any(t.clone()), Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::AuthenticationRefused { setting, .. } if setting == "RABBITMQ_URL"),
        "{err}"
    );
    let err = Node::builder(t)
        .serve(&conn, Service::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AuthenticationRefused { .. }), "{err}");
}

#[tokio::test]
async fn an_unknown_vhost_fails_at_once_naming_the_setting() {
    let (result, took) = connect(
        from_env(
            "RABBITMQ_URL",
            &test_url(None, Some("warren-no-such-vhost")),
        )
        .unwrap(),
    )
    .await;
    let err = result.unwrap_err();
    assert!(took < AT_ONCE, "{took:?}: {err}");
    let Error::VhostNotFound { vhost, setting, .. } = &err else {
        panic!("not VhostNotFound: {err}");
    };
    assert_eq!(
        (vhost.as_str(), setting.as_str()),
        ("warren-no-such-vhost", "RABBITMQ_URL")
    );
    let msg = err.to_string();
    assert!(msg.contains("RABBITMQ_URL") && msg.contains("%2f"), "{msg}");
    println!("unknown vhost: {took:?}: {msg}");
}

#[tokio::test]
async fn a_malformed_url_fails_at_once_naming_the_setting() {
    for (url, says) in [
        (test_url(None, None).replacen("amqp", "amqq", 1), "amqp://"),
        (
            format!("{}?heartbeat=soon", test_url(None, None)),
            "not a usable broker URL",
        ),
        // The empty vhost, almost always meant as the default one.
        (test_url(None, Some("")), "%2f"),
    ] {
        let start = Instant::now();
        let err = from_env("WARREN_AMQP_URL", &url).unwrap_err();
        let took = start.elapsed();
        assert!(took < AT_ONCE, "{took:?}: {err}");
        assert!(
            matches!(&err, Error::InvalidUrl { setting, .. } if setting == "WARREN_AMQP_URL"),
            "{url}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("WARREN_AMQP_URL") && msg.contains(says),
            "{msg}"
        );
        println!("malformed URL: {took:?}: {msg}");
    }
}

#[tokio::test]
async fn tls_spoken_to_a_plain_port_fails_at_once() {
    let url = test_url(None, None).replacen("amqp://", "amqps://", 1);
    let (result, took) = connect(support::config().url(url).unwrap()).await;
    let err = result.unwrap_err();
    assert!(took < AT_ONCE, "{took:?}: {err}");
    assert!(
        matches!(&err, Error::Tls { setting, .. } if setting == "Config::urls"),
        "{err}"
    );
    assert!(std::error::Error::source(&err).is_some());
    println!("TLS to a plain port: {took:?}: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_changed_after_connecting_is_retried_until_fixed() {
    let broker = PrivateBroker::new();
    broker.start().await;
    let user = support::unique("user");
    broker.ctl(&["add_user", &user, "first"]).await;
    broker
        .ctl(&["set_permissions", "-p", "/", &user, ".*", ".*", ".*"])
        .await;
    let url = format!("amqp://{user}:first@127.0.0.1:{}/%2f", broker.port());
    let cfg = support::config().url(url).unwrap().backoff(
        Backoff::default()
            .initial(Duration::from_millis(50))
            .max(Duration::from_millis(300)),
    );
    let conn = support::connect(cfg).await;
    let t = support::service_type("rotated");
    let node = Node::builder(t.clone())
        .serve(&conn, Service::default())
        .await
        .unwrap();

    // The password changes and the broker drops the connection: the
    // connection keeps trying, and says why it cannot get back.
    broker.ctl(&["change_password", &user, "second"]).await;
    broker
        .ctl(&["close_all_user_connections", &user, "password rotated"])
        .await;
    let mut state = conn.state();
    let says_why = state.wait_for(|s| match s {
        ConnectionState::Reconnecting {
            last_error: Some(e),
            ..
        }
        | ConnectionState::Down { last_error: e, .. } => {
            e.contains("refused user") && e.contains("Config::urls")
        }
        _ => false,
    });
    tokio::time::timeout(Duration::from_secs(10), says_why)
        .await
        .expect("the state names the refusal")
        .unwrap();

    // Fixed on the broker: the connection and the node come back by themselves.
    broker.ctl(&["change_password", &user, "first"]).await;
    let back = state.wait_for(ConnectionState::is_connected);
    tokio::time::timeout(Duration::from_secs(10), back)
        .await
        .expect("the connection comes back")
        .unwrap();
    Client::new(&conn)
        .call(echo(&Address::Any(t), Duration::from_secs(10)))
        .await
        .unwrap();
    node.shutdown().await;
}
