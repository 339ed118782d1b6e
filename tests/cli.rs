//! The `warren` command line, run as a subprocess against the test broker:
//! call, send, gather, services, events publish and tail, the dead-letter
//! commands, and its one-line errors with their exit codes.
mod support;

use serde_json::Value;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::handler::{echo, Hits};
use tokio::io::{AsyncBufReadExt, BufReader};
use tower::service_fn;
use warren::events::{permanent, Delivery, Subscription};
use warren::{Config, Node};

/// The binary, with the environment of `cfg`'s broker and exchanges.
struct Warren {
    env: Vec<(&'static str, String)>,
}

impl Warren {
    fn new(cfg: &Config) -> Self {
        Self {
            env: vec![
                ("WARREN_AMQP_URL", support::url()),
                ("WARREN_EXCHANGE", cfg.exchange.clone()),
                ("WARREN_EVENTS_EXCHANGE", cfg.events_exchange.clone()),
            ],
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_warren"));
        cmd.args(args)
            .env_remove("RABBITMQ_URL")
            .env_remove("RABBITMQ_RETRY_ATTEMPTS")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str]) -> Output {
        tokio::time::timeout(Duration::from_secs(30), self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("warren {args:?} did not finish"))
            .expect("run warren")
    }

    /// Runs it and expects success; its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "warren {args:?}: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs it and expects exit code `code` with a one-line message.
    async fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args).await;
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(code), "warren {args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.starts_with("warren: "), "{stderr}");
        stderr
    }
}

fn events_config() -> Config {
    support::config().events_exchange(support::unique("cli-ev"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_sends_gathers_and_errors() {
    let cfg = events_config();
    let conn = support::connect(cfg.clone()).await;
    let t = support::service_type("cli");
    let hits = Hits::default();
    let node = Node::builder(t.clone())
        .serve(&conn, echo(&hits))
        .await
        .unwrap();
    let w = Warren::new(&cfg);
    let any = format!("any({t})");

    let out = w.ok(&["call", &any, "Echo.upper", "\"hi\""]).await;
    assert_eq!(out.trim(), "\"HI\"");
    let out = w
        .ok(&["--json", "call", &any, "Echo.upper", "\"hi\""])
        .await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["status"].as_str(), v["reply"].as_str()),
        (Some("ok"), Some("HI"))
    );
    assert_eq!(
        v["from"].as_str(),
        Some(format!("{t}/{}", node.id()).as_str())
    );

    // Exit codes by status and by failure.
    let err = w.fails(&["call", &any, "Echo.fail", "\"no\""], 17).await;
    assert!(err.contains("application"), "{err}");
    w.fails(&["call", &any, "Echo.nope"], 11).await;
    let err = w.fails(&["call", &any, "Echo.say", "{bad"], 2).await;
    assert!(err.contains("not JSON"), "{err}");
    let err = w.fails(&["call", "calculator", "Echo.say"], 2).await;
    assert!(err.contains("not an address"), "{err}");
    let nobody = format!("any({})", support::unique("cli-nobody"));
    w.fails(&["call", &nobody, "Echo.say", "1"], 4).await;
    let unreachable = Warren {
        env: vec![
            (
                "WARREN_AMQP_URL",
                format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port()),
            ),
            ("RABBITMQ_RETRY_DELAY", "10ms".into()),
        ],
    };
    let err = unreachable.fails(&["call", &any, "Echo.say", "1"], 3).await;
    assert!(err.contains("cannot reach the broker"), "{err}");

    // A send is confirmed by the broker, then handled.
    let before = hits.count();
    assert_eq!(
        w.ok(&["send", &any, "Echo.say", "\"x\""]).await.trim(),
        "sent"
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        while hits.count() == before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the send was handled");

    let out = w
        .ok(&[
            "--json",
            "gather",
            &format!("every({t})"),
            "Echo.upper",
            "\"a\"",
            "--expect",
            "1",
        ])
        .await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["reply"].as_str(), Some("A"));

    // Queue statistics: the work and instance queues have the node's
    // consumers; the service subscribes to no events, so those are absent.
    let out = w
        .ok(&[
            "--json",
            "stats",
            t.as_str(),
            "--instance",
            node.id().as_str(),
        ])
        .await;
    let v: Value = serde_json::from_str(&out).unwrap();
    let row = |i: usize| {
        (
            v[i]["kind"].as_str().unwrap().to_owned(),
            v[i]["exists"].as_bool().unwrap(),
            v[i]["consumers"].as_u64().unwrap(),
        )
    };
    assert_eq!(row(0), ("work".to_owned(), true, 1), "{v}");
    assert_eq!(row(1), ("instance".to_owned(), true, 1), "{v}");
    assert_eq!(row(2), ("events".to_owned(), false, 0), "{v}");
    assert_eq!(v[0]["queue"].as_str(), Some(t.as_str()));
    let kinds: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|q| q["kind"].as_str())
        .collect();
    assert_eq!(kinds.last(), Some(&"dead_letter"));
    assert!(kinds.contains(&"retry"), "{kinds:?}");

    let out = w.ok(&["--timeout", "1", "services"]).await;
    assert!(
        out.lines().any(|l| l == format!("{t} {}", node.id())),
        "{out}"
    );

    node.shutdown().await;
    conn.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tail_publish_and_dead_letter_replay() {
    let cfg = events_config();
    let conn = support::connect(cfg.clone()).await;
    let w = Warren::new(&cfg);

    // A tail sees what is published while it runs.
    let mut tail = w
        .command(&["--json", "events", "tail", "cli.*", "--count", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(tail.stderr.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), stderr.next_line())
        .await
        .expect("the tail started")
        .unwrap();
    assert_eq!(first.as_deref(), Some("warren: tailing cli.*"));
    let mut ids = Vec::new();
    for n in 0..2 {
        let id = w
            .ok(&["events", "publish", "cli.tested", &format!("{{\"n\":{n}}}")])
            .await;
        ids.push(id.trim().to_owned());
    }
    let out = tokio::time::timeout(Duration::from_secs(20), tail.wait_with_output())
        .await
        .expect("the tail stopped after two events")
        .unwrap();
    assert!(out.status.success());
    let seen: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(seen.len(), 2);
    for (v, id) in seen.iter().zip(&ids) {
        assert_eq!(v["type"].as_str(), Some("cli.tested"));
        assert_eq!(v["event_id"].as_str(), Some(id.as_str()));
    }
    w.fails(&["events", "publish", "cli.tested", "nope"], 2)
        .await;
    w.fails(&["events", "publish", "Not A Type", "{}"], 2).await;

    // The first attempt fails for good: the event waits in the DLQ until
    // replayed, then is handled.
    let service = support::unique("cli-dlq");
    let handled = Arc::new(AtomicUsize::new(0));
    let attempts = Arc::new(AtomicUsize::new(0));
    let sub = Subscription::new(&service)
        .on_pattern("cli.*", {
            let (handled, attempts) = (handled.clone(), attempts.clone());
            service_fn(move |_d: Delivery<Value>| {
                let first = attempts.fetch_add(1, Ordering::SeqCst) == 0;
                let handled = handled.clone();
                async move {
                    if first {
                        return Err(permanent("the first attempt fails"));
                    }
                    handled.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            })
        })
        .start(&conn)
        .await
        .unwrap();
    w.ok(&["events", "publish", "cli.tested", "{\"n\":9}"])
        .await;
    let list = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let out = w.ok(&["--json", "dlq", "list", &service]).await;
            let v: Value = serde_json::from_str(&out).unwrap();
            if v["count"].as_u64() == Some(1) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the event reached the DLQ");
    assert_eq!(list["events"][0]["type"].as_str(), Some("cli.tested"));
    let shown: Value =
        serde_json::from_str(&w.ok(&["--json", "dlq", "show", &service]).await).unwrap();
    assert!(
        shown[0]["reason"]
            .as_str()
            .unwrap()
            .contains("first attempt"),
        "{shown}"
    );
    let out = w.ok(&["dlq", "replay", &service]).await;
    assert_eq!(out.trim(), format!("replayed 1 event(s) to {service}.q"));
    tokio::time::timeout(Duration::from_secs(10), async {
        while handled.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the replayed event was handled");
    let out = w.ok(&["--json", "dlq", "purge", &service]).await;
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["purged"], 0);

    sub.shutdown().await;
    conn.close();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `warren topology` lists what a node and a subscription declare: each
/// queue declared again with the listed durability and arguments is taken
/// by the broker (other arguments would be refused), and it has the
/// consumer the node or subscription put on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_lists_what_is_declared() {
    use lapin::options::QueueDeclareOptions;
    use lapin::types::{AMQPValue, FieldTable};
    let cfg = events_config();
    let conn = support::connect(cfg.clone()).await;
    let t = support::service_type("cli-topo");
    let node = Node::builder(t.clone())
        .serve(&conn, echo(&Hits::default()))
        .await
        .unwrap();
    let pattern = "topology.*".to_owned();
    let sub = Subscription::new(t.as_str())
        .on_pattern(
            &pattern,
            service_fn(|_: Delivery<Value>| async { Ok::<_, std::io::Error>(()) }),
        )
        .start(&conn)
        .await
        .unwrap();
    let w = Warren::new(&cfg);
    let id = node.id().to_string();
    let out = w
        .ok(&[
            "--json",
            "topology",
            t.as_str(),
            "--instance",
            &id,
            "--binding",
            &pattern,
        ])
        .await;
    let v: Value = serde_json::from_str(&out).unwrap();
    let exchanges: Vec<&str> = v["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(
        exchanges,
        [cfg.exchange.as_str(), cfg.events_exchange.as_str()]
    );
    let keys: Vec<(&str, &str)> = v["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["queue"].as_str().unwrap(), b["key"].as_str().unwrap()))
        .collect();
    let instance = format!("{t}-{id}");
    let events_queue = format!("{t}.q");
    assert!(
        keys.contains(&(instance.as_str(), format!("message.{id}").as_str())),
        "{v}"
    );
    assert!(keys.contains(&(instance.as_str(), "message.all")), "{v}");
    assert!(
        keys.contains(&(events_queue.as_str(), pattern.as_str())),
        "{v}"
    );

    let raw = support::raw::Raw::open().await;
    for q in v["queues"].as_array().unwrap() {
        let name = q["name"].as_str().unwrap();
        let mut args = FieldTable::default();
        for (k, value) in q["arguments"].as_object().unwrap() {
            let value = value.as_str().unwrap();
            let value = match value.parse::<i64>() {
                Ok(n) => AMQPValue::LongLongInt(n),
                Err(_) => AMQPValue::LongString(value.into()),
            };
            args.insert(k.as_str().into(), value);
        }
        let options = QueueDeclareOptions {
            durable: q["durable"].as_bool().unwrap(),
            ..QueueDeclareOptions::default()
        };
        let declared = raw
            .channel
            .queue_declare(name.into(), options, args)
            .await
            .unwrap_or_else(|e| panic!("{name} as listed: {e}"));
        let consumers = match q["kind"].as_str().unwrap() {
            "work" | "instance" | "events" => 1,
            _ => 0,
        };
        assert_eq!(declared.consumer_count(), consumers, "{name}");
    }
    let kinds: Vec<&str> = v["queues"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|q| q["kind"].as_str())
        .collect();
    assert_eq!(kinds[..3], ["work", "instance", "events"], "{v}");
    assert_eq!(kinds.last(), Some(&"dead_letter"));

    // Without a broker too: it is read from the configuration alone.
    let offline = Warren {
        env: vec![
            ("WARREN_AMQP_URL", "amqp://127.0.0.1:1/%2f".to_owned()),
            ("WARREN_EXCHANGE", cfg.exchange.clone()),
        ],
    };
    let out = offline.ok(&["topology", t.as_str()]).await;
    assert!(out.contains(&format!("  {t} ")), "{out}");
    offline.fails(&["topology", "Bad Name"], 2).await;

    sub.shutdown().await;
    node.shutdown().await;
    conn.close();
}
