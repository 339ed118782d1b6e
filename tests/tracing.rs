//! One trace across hops, for real: a call, an event its handler
//! publishes, a call from the event's handler, and a call through the
//! PostOffice's WebSocket, each hop a span whose parent is the sender's.
mod support;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tower::ServiceExt;
use warren::events::{Delivery, Publisher, Subscription};
use warren::postoffice::{Identity, PostOffice, TokenList};
use warren::{
    Address, Client, Connection, ContentType, Context, Error, Node, Request, Response, ServiceType,
    TraceContext, TRACEPARENT,
};

const WAIT: Duration = Duration::from_secs(10);

#[derive(serde::Serialize, serde::Deserialize, warren::Event)]
#[event(name = "trace.hop")]
struct Hop {
    from: String,
}

/// What one hop saw: its name and its trace context.
type Seen = mpsc::UnboundedSender<(String, Option<TraceContext>)>;

fn seen_here(seen: &Seen, hop: &str) {
    let trace = Context::current().and_then(|c| c.trace);
    seen.send((hop.to_owned(), trace)).unwrap();
}

/// `B.work` publishes a `trace.hop` event; `D.record` only records.
async fn services(conn: &Connection, seen: &Seen) -> (ServiceType, Vec<Node>) {
    let b = support::service_type("trace-b");
    let d = support::service_type("trace-d");
    let publisher = Publisher::new(conn);
    let s = seen.clone();
    let b_handler = support::handler::Handler::new(tower::service_fn(move |req: Request| {
        let (s, publisher) = (s.clone(), publisher.clone());
        async move {
            seen_here(&s, "b");
            publisher.publish(&Hop { from: "b".into() }).await?;
            Ok::<_, Error>(Response::ok(req.content_type, req.body))
        }
    }));
    let s = seen.clone();
    let d_handler = support::handler::Handler::new(tower::service_fn(move |req: Request| {
        let s = s.clone();
        async move {
            seen_here(&s, "d");
            Ok::<_, Error>(Response::ok(req.content_type, req.body))
        }
    }));
    let nodes = vec![
        Node::builder(b.clone())
            .serve(conn, b_handler)
            .await
            .unwrap(),
        Node::builder(d.clone())
            .serve(conn, d_handler)
            .await
            .unwrap(),
    ];
    // C: handles the event and calls D.
    let client = Client::new(conn);
    let s = seen.clone();
    let d_address = Address::any(d.as_str()).unwrap();
    let c = tower::service_fn(move |_: Delivery<Hop>| {
        let (s, client, to) = (s.clone(), client.clone(), d_address.clone());
        async move {
            seen_here(&s, "c");
            let req = support::request(to, "D.record", ContentType::Json, &json!(null));
            client.oneshot(req).await?.into_result()?;
            Ok::<_, Error>(())
        }
    });
    let sub = Subscription::new(support::unique("trace-c"))
        .on(c)
        .start(conn)
        .await
        .unwrap();
    std::mem::forget(sub);
    (b, nodes)
}

async fn next(
    rx: &mut mpsc::UnboundedReceiver<(String, Option<TraceContext>)>,
) -> (String, TraceContext) {
    let (hop, trace) = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a hop within 10 s")
        .unwrap();
    (
        hop.clone(),
        trace.unwrap_or_else(|| panic!("hop {hop} saw no trace")),
    )
}

/// Hops b, c, d in order; each one's parent is the one before.
async fn chain(
    rx: &mut mpsc::UnboundedReceiver<(String, Option<TraceContext>)>,
) -> [TraceContext; 3] {
    let (hop_b, b) = next(rx).await;
    let (hop_c, c) = next(rx).await;
    let (hop_d, d) = next(rx).await;
    assert_eq!(
        [hop_b, hop_c, hop_d].map(|h| h),
        ["b", "c", "d"].map(String::from)
    );
    assert_eq!(c.trace_id(), b.trace_id());
    assert_eq!(d.trace_id(), b.trace_id());
    assert_eq!(
        c.parent_id(),
        Some(b.span_id()),
        "the event's span is a child of B's"
    );
    assert_eq!(
        d.parent_id(),
        Some(c.span_id()),
        "D's span is a child of the event's"
    );
    [b, c, d]
}

fn connect_config() -> warren::Config {
    support::config().events_exchange(support::unique("trace-events"))
}

#[tokio::test]
async fn a_call_an_event_and_a_call_from_its_handler_are_one_trace() {
    let conn = support::connect(connect_config()).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (b, _nodes) = services(&conn, &tx).await;
    let client = Client::new(&conn);
    let to = Address::any(b.as_str()).unwrap();

    // A: code that starts a trace and calls B.
    let root = TraceContext::new_root();
    let req = support::request(to.clone(), "B.work", ContentType::Json, &json!(1));
    Context::default()
        .with_trace(root)
        .scope(client.clone().oneshot(req))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let [b_seen, ..] = chain(&mut rx).await;
    assert_eq!(b_seen.trace_id(), root.trace_id());
    assert_eq!(
        b_seen.parent_id(),
        Some(root.span_id()),
        "B's span is a child of A's"
    );

    // A request's own traceparent is kept.
    let theirs = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let req = support::request(to.clone(), "B.work", ContentType::Json, &json!(2))
        .with_header(TRACEPARENT, theirs);
    client
        .clone()
        .oneshot(req)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let [b_seen, ..] = chain(&mut rx).await;
    assert_eq!(
        b_seen.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(b_seen.parent_id().unwrap().to_string(), "00f067aa0ba902b7");

    // Outside any trace nothing is invented: the handler sees none.
    let req = support::request(to, "B.work", ContentType::Json, &json!(3));
    client.oneshot(req).await.unwrap().into_result().unwrap();
    let (hop, trace) = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((hop.as_str(), trace), ("b", None));
}

#[tokio::test]
async fn a_postoffice_call_carries_the_frames_trace_or_starts_one() {
    let conn = support::connect(connect_config()).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (b, _nodes) = services(&conn, &tx).await;
    let office = PostOffice::builder()
        .service(support::service_type("trace-po"))
        .authenticator(TokenList::new().token("t", Identity::user("ann")).unwrap())
        .start(&conn)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = office.router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    let mut call = async |frame: Value| -> Value {
        ws.send(Message::text(frame.to_string())).await.unwrap();
        loop {
            let m = tokio::time::timeout(WAIT, ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let Message::Text(t) = m {
                return serde_json::from_str(&t).unwrap();
            }
        }
    };
    let welcome = call(json!({"auth": "t"})).await;
    assert!(welcome["welcome"].is_object(), "{welcome}");
    let to = format!("any:{b}");

    // The browser's span: the PostOffice's span is its child, B's the
    // PostOffice's.
    let browser = TraceContext::new_root();
    let r = call(json!({"id": 1, "to": to, "method": "B.work", "body": 1,
        "traceparent": browser.traceparent()}))
    .await;
    assert_eq!(r["status"], "ok", "{r}");
    let [b_seen, ..] = chain(&mut rx).await;
    assert_eq!(b_seen.trace_id(), browser.trace_id());
    let parent = b_seen.parent_id().expect("B's span has a parent");
    assert_ne!(
        parent,
        browser.span_id(),
        "the PostOffice is a hop of its own"
    );

    // No traceparent: the PostOffice starts a trace.
    let r = call(json!({"id": 2, "to": to, "method": "B.work", "body": 2})).await;
    assert_eq!(r["status"], "ok", "{r}");
    let [b_seen, ..] = chain(&mut rx).await;
    assert_ne!(b_seen.trace_id(), browser.trace_id());
    assert!(b_seen.parent_id().is_some());

    // A malformed one is refused, naming the field's format.
    let r = call(json!({"id": 3, "to": to, "method": "B.work", "traceparent": "00-xyz"})).await;
    assert_eq!(r["error"], "bad_frame", "{r}");
    assert_eq!(r["id"], 3);
    assert!(
        r["message"].as_str().unwrap().contains("traceparent"),
        "{r}"
    );
}

/// An event added to the outbox is published, later and by the relay, in
/// the trace it was added in.
#[cfg(feature = "outbox")]
#[tokio::test]
async fn the_outbox_relay_publishes_in_the_trace_the_event_was_added_in() {
    use warren::outbox::{Outbox, Relay, Store};
    let conn = support::connect(connect_config()).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_b, _nodes) = services(&conn, &tx).await;
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("outbox");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.db", support::unique("traced")));
    let store = Store::sqlite(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    let root = TraceContext::new_root();
    let outbox = Outbox::new(&store);
    let mut db = store.pool().begin().await.unwrap();
    Context::default()
        .with_trace(root)
        .scope(outbox.add(&mut db, &Hop { from: "a".into() }))
        .await
        .unwrap();
    db.commit().await.unwrap();
    let relay = Relay::new(&store, Publisher::new(&conn)).start();
    let (hop_c, c) = next(&mut rx).await;
    let (hop_d, d) = next(&mut rx).await;
    assert_eq!((hop_c.as_str(), hop_d.as_str()), ("c", "d"));
    assert_eq!(c.trace_id(), root.trace_id());
    assert_eq!(c.parent_id(), Some(root.span_id()));
    assert_eq!(d.parent_id(), Some(c.span_id()));
    relay.shutdown().await;
}
