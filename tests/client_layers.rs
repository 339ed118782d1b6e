//! warren's caller-side tower layers over RabbitMQ: a timeout the server
//! hears of, and retries of what is safe to retry.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::retry::RetryLayer;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use warren::layer::{RetryPolicy, TimeoutLayer};
use warren::Backoff;
use warren::{Address, Client, ContentType, Context, Error, Node, Request, Response};

/// Answers with the time its context says is left (ms); `Slow.finish`
/// sleeps 2 s first and counts the handlers that got to the end.
fn handler(
    finished: Arc<AtomicUsize>,
) -> impl Service<Request, Response = Response, Error = Error, Future: Send> + Clone + Send + Sync {
    service_fn(move |req: Request| {
        let finished = Arc::clone(&finished);
        async move {
            if req.method == "Slow.finish" {
                tokio::time::sleep(Duration::from_secs(2)).await;
                finished.fetch_add(1, Ordering::SeqCst);
            }
            let left = Context::current()
                .and_then(|c| c.remaining())
                .map(|d| d.as_millis() as u64);
            Response::encode(req.content_type, &left)
        }
    })
}

fn call(address: &Address, method: &str) -> Request {
    Request::encode(address.clone(), method, ContentType::Json, &()).unwrap()
}

#[tokio::test]
async fn the_timeout_layer_shortens_the_deadline_the_server_sees() {
    let conn = support::connect(support::config()).await;
    let t = support::service_type("layer-timeout");
    let finished = Arc::new(AtomicUsize::new(0));
    let node = Node::builder(t.clone())
        .serve(&conn, handler(Arc::clone(&finished)))
        .await
        .unwrap();
    let address = Address::Any(t);
    let mut transport = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_millis(800)))
        .service(Client::new(&conn));

    // The server hears of the caller's timeout, not the 30 s default.
    let reply = ServiceExt::<Request>::ready(&mut transport)
        .await
        .unwrap()
        .call(call(&address, "Slow.left"))
        .await
        .unwrap();
    let left: Option<u64> = reply.decode().unwrap();
    assert!(left.is_some_and(|ms| ms <= 800), "{left:?}");

    // A slow call fails as warren's own Timeout, and the server stops
    // working on it then instead of finishing for nobody.
    let err = ServiceExt::<Request>::ready(&mut transport)
        .await
        .unwrap()
        .call(call(&address, "Slow.finish"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(finished.load(Ordering::SeqCst), 0);
    node.shutdown().await;
}

#[tokio::test]
async fn a_call_past_its_deadline_always_ends_as_a_timeout() {
    // The node cuts the handler off at the deadline the caller waits for
    // and says `deadline_exceeded`; whichever of that reply and the
    // caller's own timer comes first, the caller sees one error.
    let conn = support::connect(support::config()).await;
    let t = support::service_type("layer-deadline");
    let node = Node::builder(t.clone())
        .serve(&conn, handler(Arc::new(AtomicUsize::new(0))))
        .await
        .unwrap();
    let client = Client::new(&conn);
    for _ in 0..20 {
        let request =
            call(&Address::Any(t.clone()), "Slow.finish").with_timeout(Duration::from_millis(100));
        let err = client.call(request).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    }
    node.shutdown().await;
}

#[tokio::test]
async fn the_retry_policy_waits_for_a_service_that_is_starting() {
    let conn = support::connect(support::config()).await;
    let t = support::service_type("layer-retry");
    let address = Address::Any(t.clone());
    let policy = RetryPolicy::new(
        20,
        Backoff::default()
            .initial(Duration::from_millis(50))
            .factor(1.5)
            .max(Duration::from_millis(200))
            .max_attempts(None),
    );
    let retrying = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(10)))
        .layer(RetryLayer::new(policy))
        .service(Client::new(&conn));

    // Nobody listens yet: without retries, NoRoute at once.
    let err = Client::new(&conn)
        .oneshot(call(&address, "Slow.left"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoRoute { .. }), "{err}");

    // With them, the call goes through once the node is up.
    let pending = tokio::spawn(retrying.oneshot(call(&address, "Slow.left")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let node = Node::builder(t)
        .serve(&conn, handler(Arc::default()))
        .await
        .unwrap();
    let reply = pending.await.unwrap().unwrap();
    assert!(reply.decode::<Option<u64>>().unwrap().is_some());
    node.shutdown().await;
}

#[test]
fn only_what_cannot_run_twice_is_retried() {
    let address = Address::any("svc").unwrap();
    let plain = call(&address, "M.m");
    let idempotent = call(&address, "M.m").idempotent(true);
    let no_route = Error::NoRoute { address };
    let unavailable = Error::Unavailable {
        reason: "down".into(),
    };
    for request in [&plain, &idempotent] {
        assert!(RetryPolicy::is_safe(request, &no_route));
        assert!(RetryPolicy::is_safe(request, &unavailable));
        assert!(!RetryPolicy::is_safe(
            request,
            &Error::Timeout {
                after: Duration::ZERO
            }
        ));
    }
    assert!(!RetryPolicy::is_safe(&plain, &Error::ConnectionLost));
    assert!(RetryPolicy::is_safe(&idempotent, &Error::ConnectionLost));
}
