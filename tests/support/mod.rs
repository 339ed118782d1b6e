//! Shared test support: a broker connection and unique names, so that
//! tests running in parallel on one broker never see each other's traffic.
#![allow(dead_code, unreachable_pub)]

pub mod broker;
pub mod certs;
pub mod cluster;
pub mod handler;
pub mod load;
pub mod metrics;
pub mod proxy;
pub mod raw;
pub mod sends;
pub mod service;
pub mod state;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use warren::{Config, Connection, ServiceType};

/// The broker the test scripts started (`WARREN_AMQP_URL`).
pub fn url() -> String {
    std::env::var("WARREN_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A name no other test uses: `<prefix>-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A service type no other test uses.
pub fn service_type(prefix: &str) -> ServiceType {
    ServiceType::new(unique(prefix)).unwrap()
}

/// A config on the test broker with an exchange of the test's own.
pub fn config() -> Config {
    Config::default()
        .url(url())
        .unwrap()
        .exchange(unique("test-ex"))
        .default_timeout(Duration::from_secs(10))
}

/// Connects with `config`; fails the test if the broker cannot be reached
/// within 20 s rather than retrying forever.
pub async fn connect(config: Config) -> Connection {
    tokio::time::timeout(Duration::from_secs(20), Connection::connect(config))
        .await
        .unwrap_or_else(|_| panic!("no broker at {}; start one and set WARREN_AMQP_URL", url()))
        .expect("connect to the test broker")
}

/// A request whose body is `value` encoded with `content_type`.
pub fn request<T: serde::Serialize + ?Sized>(
    address: warren::Address,
    method: &str,
    content_type: warren::ContentType,
    value: &T,
) -> warren::Request {
    warren::Request::encode(address, method, content_type, value).expect("a valid request")
}

/// Starts a node of `service` serving [`handler::echo`] counted by `hits`.
pub async fn echo_node(
    conn: &Connection,
    service: &ServiceType,
    hits: &handler::Hits,
) -> warren::Node {
    warren::Node::builder(service.clone())
        .serve(conn, handler::echo(hits))
        .await
        .expect("the node starts")
}

/// A config through `url` whose reconnect delay is at most 1 s, so that
/// calls succeed again within 2 s of the path coming back.
pub fn recovering_config(url: &str) -> Config {
    config()
        .url(url)
        .unwrap()
        .heartbeat(Duration::from_secs(1))
        .backoff(
            warren::Backoff::default()
                .initial(Duration::from_millis(50))
                .max(Duration::from_secs(1)),
        )
}
