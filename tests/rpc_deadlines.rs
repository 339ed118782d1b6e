//! Deadlines: a call fails at its deadline, a request whose deadline passed
//! before it ran is dropped without running, and a handler's own calls
//! inherit what is left of its deadline.
mod support;

use lapin::types::AMQPValue;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::handler::{echo, Hits};
use support::raw::{self, Raw};
use support::request;
use tower::service_fn;
use warren::{Address, Client, ContentType, Context, Error, Node, Request, Response};

#[tokio::test]
async fn a_call_fails_at_its_deadline_and_the_handler_is_stopped() {
    let conn = support::connect(support::config()).await;
    let t = support::service_type("slow");
    let hits = Hits::default();
    let node = support::echo_node(&conn, &t, &hits).await;
    let client = Client::new(&conn);
    let timeout = Duration::from_millis(200);
    let start = Instant::now();
    let err = client
        .call(
            request(
                Address::Any(t.clone()),
                "Echo.sleep",
                ContentType::MsgPack,
                &60_000u64,
            )
            .with_timeout(timeout),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout { after } if after <= timeout),
        "{err}"
    );
    assert!(start.elapsed() >= timeout);
    assert_eq!(client.in_flight(), 0);
    // The node gives up on the handler at the same deadline rather than
    // letting it run for its whole minute.
    tokio::time::timeout(Duration::from_secs(10), async {
        while node.in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the handler was stopped at the deadline");
    assert_eq!(hits.count(), 1);
    node.shutdown().await;
}

#[tokio::test]
async fn a_request_that_expired_while_the_node_was_busy_is_not_run() {
    let conn = support::connect(support::config()).await;
    let t = support::service_type("busy");
    let hits = Hits::default();
    let node = Node::builder(t.clone())
        .concurrency(1)
        .serve(&conn, echo(&hits))
        .await
        .unwrap();
    let client = Client::new(&conn);
    let busy = tokio::spawn({
        let (client, t) = (client.clone(), t.clone());
        async move {
            client
                .call(request(
                    Address::Any(t),
                    "Echo.hold",
                    ContentType::Json,
                    &"busy",
                ))
                .await
        }
    });
    hits.wait_for(1).await;
    // Reaches the node at once, but waits there behind the held handler
    // until after its deadline.
    let err = client
        .call(
            request(
                Address::Any(t.clone()),
                "Echo.say",
                ContentType::Json,
                &"late",
            )
            .with_timeout(Duration::from_millis(100)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    // The node counts the deadline from when the request reached it, a
    // hop's transit time after the caller did: let that pass too.
    tokio::time::sleep(Duration::from_millis(100)).await;
    hits.release();
    busy.await.unwrap().unwrap();
    // With one handler at a time, this reply means the late one was dealt with.
    client
        .call(request(
            Address::Any(t.clone()),
            "Echo.say",
            ContentType::Json,
            &"after",
        ))
        .await
        .unwrap();
    assert_eq!(hits.count(), 2, "the expired request ran");
    node.shutdown().await;
}

#[tokio::test]
async fn a_request_sent_long_ago_is_dropped_not_run() {
    let conn = support::connect(support::config()).await;
    let t = support::service_type("old");
    let hits = Hits::default();
    let node = Node::builder(t.clone())
        .concurrency(1)
        .serve(&conn, echo(&hits))
        .await
        .unwrap();
    let mut raw = Raw::open().await;
    let a_minute_ago = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60;
    let body = br#""x""#;
    let props = |id: &str| raw::call(Some("Echo.say"), Some("application/json"), id);
    // A warren caller's deadline header, then a plain AMQP peer's
    // `expiration`: each gave 5 s, a minute ago.
    let old = raw::with_header(
        props("old-header"),
        "x-timeout-ms",
        AMQPValue::LongLongInt(5000),
    )
    .with_timestamp(a_minute_ago);
    raw.publish("", t.as_str(), old, body).await;
    let old = props("old-expiration")
        .with_expiration("5000".into())
        .with_timestamp(a_minute_ago);
    raw.publish("", t.as_str(), old, body).await;
    raw.publish("", t.as_str(), props("fresh"), body).await;
    let reply = raw.reply().await;
    assert_eq!(raw::correlation_id(&reply), Some("fresh"));
    assert_eq!(hits.count(), 1);
    node.shutdown().await;
}

type Seen = Arc<Mutex<Option<Instant>>>;

/// Records the deadline the handler was given, then runs `then`.
fn deadline_probe<F, Fut>(
    seen: Seen,
    then: F,
) -> impl tower::Service<Request, Response = Response, Error = Error, Future = impl Send>
       + Clone
       + Send
       + Sync
where
    F: Fn(Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response, Error>> + Send,
{
    service_fn(move |req: Request| {
        let ctx = Context::current().expect("handlers run with a context");
        *seen.lock().unwrap() = ctx.deadline;
        then(req)
    })
}

#[tokio::test]
async fn a_handler_passes_its_remaining_deadline_on() {
    let conn = support::connect(support::config()).await;
    let (outer_t, inner_t) = (
        support::service_type("outer"),
        support::service_type("inner"),
    );
    let (outer_seen, inner_seen) = (Seen::default(), Seen::default());
    let inner = Node::builder(inner_t.clone())
        .serve(
            &conn,
            deadline_probe(inner_seen.clone(), |req: Request| async move {
                Ok(Response::ok(req.content_type, req.body))
            }),
        )
        .await
        .unwrap();
    let hop = Client::new(&conn);
    let outer = Node::builder(outer_t.clone())
        .serve(
            &conn,
            deadline_probe(outer_seen.clone(), move |req: Request| {
                let (hop, inner_t) = (hop.clone(), inner_t.clone());
                // No deadline of its own: the call inherits the caller's.
                async move {
                    hop.call(Request::new(
                        Address::Any(inner_t),
                        "Inner.echo",
                        req.content_type,
                        req.body,
                    )?)
                    .await
                }
            }),
        )
        .await
        .unwrap();
    let client = Client::new(&conn);
    let req = request(
        Address::Any(outer_t),
        "Outer.echo",
        ContentType::MsgPack,
        &1,
    )
    .with_timeout(Duration::from_secs(2));
    let caller = req.deadline.unwrap();
    client.call(req).await.unwrap();
    let outer_deadline = outer_seen
        .lock()
        .unwrap()
        .expect("the outer handler had a deadline");
    let inner_deadline = inner_seen
        .lock()
        .unwrap()
        .expect("the inner handler had a deadline");
    // Deadlines travel as the time left (no clock skew between hosts), so
    // each hop may gain the time the message took to reach it: well under
    // the slack allowed here, and far from the 10 s default a lost deadline
    // would give.
    let hop_slack = Duration::from_millis(50);
    assert!(
        outer_deadline <= caller + hop_slack,
        "outer: {:?} after the caller's",
        outer_deadline - caller
    );
    assert!(
        inner_deadline <= outer_deadline + hop_slack,
        "inner: {:?} after the outer's",
        inner_deadline - outer_deadline
    );
    inner.shutdown().await;
    outer.shutdown().await;
}
