//! Queue statistics and rates from the broker's management HTTP API, on a
//! private node of the test's own with the management plugin (sampling
//! every 500 ms): counts and rates of a service's queues, through the
//! library and `warren stats`, and the typed errors of bad credentials and
//! of an API that does not answer.
mod support;

use serde_json::Value;
use std::future::Future;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::broker::PrivateBroker;
use support::handler::{echo, Hits};
use warren::{
    Address, Client, Config, ContentType, Delivery, ManagementError, ManagementStats, Node,
    QueueDetail, QueueKind, Request, ServiceType,
};

/// Messages sent to the service.
const N: usize = 30;

/// Polls `read` until `done` holds of what it read (at most 30 s, the
/// broker's sampling being every 500 ms); the last reading.
async fn until<F, Fut>(
    what: &str,
    read: F,
    done: impl Fn(&[QueueDetail]) -> bool,
) -> Vec<QueueDetail>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Vec<QueueDetail>, ManagementError>>,
{
    let start = Instant::now();
    loop {
        let now = read().await.expect("read the management API");
        if done(&now) {
            return now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: not within 30 s; last reading {now:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn work<'a>(all: &'a [QueueDetail], t: &ServiceType) -> &'a QueueDetail {
    all.iter()
        .find(|q| q.kind == QueueKind::Work && q.queue == t.as_str())
        .unwrap_or_else(|| panic!("no work queue in {all:#?}"))
}

#[tokio::test]
async fn reads_counts_and_rates_through_the_management_api() {
    let broker = PrivateBroker::new();
    broker
        .start_with(&[
            ("WARREN_BROKER_PLUGINS", "[rabbitmq_management].".into()),
            ("WARREN_BROKER_STATS_INTERVAL_MS", "500".into()),
        ])
        .await;
    let api = format!("http://127.0.0.1:{}", broker.port() + 10_000);
    let cfg = support::config()
        .url(broker.url())
        .unwrap()
        .management_url(&api)
        .unwrap();
    let conn = support::connect(cfg.clone()).await;
    let t = support::service_type("mgmt");
    let stats = ManagementStats::new(&cfg).unwrap();

    // The node declares its queues; with it gone, what is sent waits in
    // the (durable) work queue.
    let hits = Hits::default();
    Node::builder(t.clone())
        .serve(&conn, echo(&hits))
        .await
        .unwrap()
        .shutdown()
        .await;
    let client = Client::new(&conn);
    let to = Address::any(t.as_str()).unwrap();
    for i in 0..N {
        let send = Request::encode(to.clone(), "Echo.say", ContentType::Json, &i)
            .unwrap()
            .with_delivery(Delivery::OneWay);
        client.call(send).await.expect("sent");
    }
    let read = || stats.service(&t, &[]);
    let now = until("the messages ready and a publish rate", read, |all| {
        let q = work(all, &t);
        q.messages == N as u64 && q.rates.publish.is_some()
    })
    .await;
    let q = work(&now, &t);
    assert!(q.exists);
    assert_eq!((q.unacked, q.consumers), (0, 0));

    // A node takes them, and more sent while it runs: publish, deliver
    // and ack rates above 0 (sampled while the traffic lasts), one
    // consumer on the queue, and once the traffic stops, the queue empty.
    let node = Node::builder(t.clone())
        .serve(&conn, echo(&hits))
        .await
        .unwrap();
    hits.wait_for(N).await;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let sender = tokio::spawn({
        let (client, to) = (client.clone(), to.clone());
        async move {
            while !*stopped.borrow() {
                let send = Request::encode(to.clone(), "Echo.say", ContentType::Json, &0)
                    .unwrap()
                    .with_delivery(Delivery::OneWay);
                client.call(send).await.expect("sent");
                let _ = tokio::time::timeout(Duration::from_millis(10), stopped.changed()).await;
            }
        }
    });
    let positive = |r: Option<f64>| r.is_some_and(|r| r > 0.0);
    until("publish, deliver and ack rates", read, |all| {
        let q = work(all, &t);
        q.consumers == 1
            && positive(q.rates.publish)
            && positive(q.rates.deliver)
            && positive(q.rates.ack)
    })
    .await;
    stop.send_replace(true);
    sender.await.unwrap();
    until("the queue emptied", read, |all| {
        let q = work(all, &t);
        q.messages == 0 && q.unacked == 0
    })
    .await;

    // A subscription's queues that were never declared: there, not found.
    let events = stats
        .events(t.as_str(), &warren::events::RetryPolicy::default())
        .await
        .unwrap();
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|q| !q.exists && q.messages == 0),
        "{events:#?}"
    );

    // `warren stats` reads the same API when it is configured.
    let out = warren_stats(&cfg, &api, &t, &["--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = json
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["kind"] == "work")
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(row["queue"], t.as_str());
    assert_eq!(row["consumers"], 1);
    assert!(row["rates"]["publish"].is_number(), "{row}");
    let out = warren_stats(&cfg, &api, &t, &[]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("publish/s") && text.contains("unacked"),
        "{text}"
    );

    // Bad credentials: the typed error names the setting to fix, and the
    // password shows nowhere.
    let bad = cfg
        .clone()
        .management_url(format!(
            "http://guest:wrong-pw@127.0.0.1:{}",
            broker.port() + 10_000
        ))
        .unwrap();
    let e = ManagementStats::new(&bad)
        .unwrap()
        .service(&t, &[])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ManagementError::Unauthorized { user, setting, .. }
            if user == "guest" && setting == "Config::management_url"),
        "{e:?}"
    );
    assert!(!e.to_string().contains("wrong-pw"), "{e}");
    let bad_api = format!("http://guest:wrong-pw@127.0.0.1:{}", broker.port() + 10_000);
    let out = warren_stats(&cfg, &bad_api, &t, &[]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("WARREN_MANAGEMENT_URL") && err.contains("401"),
        "{err}"
    );
    assert!(!err.contains("wrong-pw"), "{err}");

    node.shutdown().await;
    conn.close();
}

#[tokio::test]
async fn an_api_that_does_not_answer_is_unreachable() {
    // A port nothing listens on.
    let port = support::broker::free_port();
    let cfg = Config::default()
        .management_url(format!("http://127.0.0.1:{port}"))
        .unwrap();
    let e = ManagementStats::new(&cfg)
        .unwrap()
        .service(&"billing".parse().unwrap(), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ManagementError::Unreachable { setting, .. } if setting == "Config::management_url"),
        "{e:?}"
    );
    assert!(e.to_string().contains("rabbitmq_management"), "{e}");
}

/// `warren stats <t>` with the broker and exchange of `cfg` and
/// WARREN_MANAGEMENT_URL=`api`.
async fn warren_stats(
    cfg: &Config,
    api: &str,
    t: &ServiceType,
    args: &[&str],
) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_warren"));
    cmd.args(args)
        .args(["stats", t.as_str()])
        .env_remove("RABBITMQ_URL")
        .env("WARREN_AMQP_URL", cfg.urls[0].expose())
        .env("WARREN_EXCHANGE", &cfg.exchange)
        .env("WARREN_MANAGEMENT_URL", api)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("warren stats finished")
        .expect("run warren")
}
