//! No credential reaches a log: with every `TRACE` event on, a connection
//! whose password holds `@`, `:`, `%` and `/` is opened, cut and opened
//! again, and all output is searched for the password in plain,
//! percent-encoded and byte-list form.
//!
//! The client library logs from its own thread to the global subscriber,
//! so each case runs in a child process with its own subscriber: none
//! (to show what leaks without [`warren::RedactSecrets`]), the layer as a
//! global filter, and the per-layer filter.
mod support;

use std::process::Command;
use std::time::Duration;
use support::broker::PrivateBroker;
use support::proxy::Proxy;
use warren::{Config, Connection, ConnectionState, RedactSecrets};

const USER: &str = "sec";
const PASSWORD: &str = "p@ss:w%rd/1";
const ENCODED: &str = "p%40ss%3Aw%25rd%2F1";
const CASE: &str = "WARREN_SECRETS_CASE";
const PORT: &str = "WARREN_SECRETS_PORT";

/// The forms in which the password could appear.
fn forms() -> [String; 3] {
    let bytes = PASSWORD
        .bytes()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    [PASSWORD.to_owned(), ENCODED.to_owned(), bytes]
}

#[test]
fn no_password_reaches_a_trace_log_even_across_a_reconnection() {
    if let Ok(case) = std::env::var(CASE) {
        child(&case);
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let broker = PrivateBroker::new();
    rt.block_on(async {
        broker.start().await;
        broker.ctl(&["add_user", USER, PASSWORD]).await;
        broker
            .ctl(&["set_permissions", "-p", "/", USER, ".*", ".*", ".*"])
            .await;
    });
    let run = |case: &str| {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "no_password_reaches_a_trace_log_even_across_a_reconnection",
                "--nocapture",
            ])
            .env(CASE, case)
            .env(PORT, broker.port().to_string())
            .env("RUST_LOG", "trace")
            .output()
            .expect("run the child");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "case {case} failed:\n{all}");
        // Frames were logged, and the connection came back after the cut.
        assert!(
            all.contains("will write to buffer"),
            "case {case}: no frame log"
        );
        assert!(all.contains("reconnected after the cut"), "case {case}");
        all
    };

    // Without the filter the library logs the SASL response: the search
    // below finds what it looks for.
    let raw = run("none");
    let [_, _, bytes] = forms();
    assert!(raw.contains(&bytes), "the unfiltered log shows no StartOk");

    for case in ["layer", "filter"] {
        let all = run(case);
        for form in forms() {
            assert!(!all.contains(&form), "case {case}: {form:?} in the log");
        }
        // Only the frames with credentials are dropped.
        assert!(
            all.contains("Open"),
            "case {case}: Connection.Open not logged"
        );
    }
}

/// One case: the subscriber `case` names, a connection through a proxy
/// that is cut once, and the reconnection awaited.
fn child(case: &str) {
    fn fmt<S>() -> impl tracing_subscriber::Layer<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(std::io::stderr)
    }
    use tracing_subscriber::prelude::*;
    let everything = tracing_subscriber::filter::LevelFilter::TRACE;
    match case {
        "none" => tracing_subscriber::registry()
            .with(fmt().with_filter(everything))
            .init(),
        "layer" => tracing_subscriber::registry()
            .with(RedactSecrets)
            .with(fmt().with_filter(everything))
            .init(),
        "filter" => tracing_subscriber::registry()
            .with(fmt().with_filter(RedactSecrets).with_filter(everything))
            .init(),
        other => panic!("unknown case {other}"),
    }
    let port: u16 = std::env::var(PORT).unwrap().parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let proxy = Proxy::to_url(&format!("amqp://127.0.0.1:{port}")).await;
        let url = format!("amqp://{USER}:{ENCODED}@{}/%2f", proxy.addr());
        let config = Config::default().url(&url).unwrap();
        // The URL as warren prints it hides the password too.
        println!("connecting to {}", config.urls[0]);
        let conn = Connection::connect(config).await.unwrap();
        let mut state = conn.state();
        let ConnectionState::Connected { since: first, .. } = *state.borrow_and_update() else {
            panic!("not connected after connect");
        };
        proxy.cut();
        tokio::time::timeout(Duration::from_secs(30), async {
            state
                .wait_for(
                    |s| matches!(s, ConnectionState::Connected { since, .. } if *since > first),
                )
                .await
                .unwrap();
        })
        .await
        .expect("reconnected within 30 s");
        println!("reconnected after the cut");
        conn.close();
    });
}
