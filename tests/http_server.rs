//! A node's HTTP endpoint, called for real: tokens, body limits, codecs,
//! status mapping, headers, health, and refusals that never run the handler.
#[path = "support/degraded.rs"]
mod degraded;
mod support;

use degraded::http_config;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use warren::discovery::Peers;
use warren::http::{Health, HttpClient, HttpConfig, PeerUrl, Token};
use warren::{Address, Code, ContentType, Error, Node, Request, Response, Status, Transport};

/// Echoes, fails with an application error, or does not know the method;
/// counts every call it sees.
fn handler(
    calls: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
) -> impl tower::Service<Request, Response = Response, Error = Error, Future = impl Send>
       + Clone
       + Send
       + Sync
       + 'static {
    tower::service_fn(move |req: Request| {
        calls.fetch_add(1, Ordering::SeqCst);
        let gate = gate.clone();
        async move {
            match req.method.as_str() {
                "Echo.say" => {
                    let mut resp = Response::ok(req.content_type, req.body);
                    if let Some(tp) = req.headers.get("traceparent") {
                        resp.headers.insert("traceparent", tp);
                    }
                    Ok(resp)
                }
                "Echo.hold" => {
                    let _pass = gate.acquire().await;
                    Ok(Response::ok(req.content_type, req.body))
                }
                "Math.div" => Err(Status::application(&"divide by zero", req.content_type)
                    .unwrap()
                    .into()),
                other => Ok(Response::error(
                    req.content_type,
                    &Status::new(Code::UnknownMethod, format!("no method {other}")),
                )),
            }
        }
    })
}

/// A node serving `http`; its `Echo.hold` calls wait for a permit on the
/// returned gate.
async fn node_gated(http: HttpConfig) -> (Node, Arc<AtomicUsize>, Arc<Semaphore>) {
    let conn = support::connect(support::config()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let t = support::service_type("http");
    let node = Node::builder(t)
        .http(http)
        .serve(&conn, handler(calls.clone(), gate.clone()))
        .await
        .unwrap();
    (node, calls, gate)
}

async fn node(http: HttpConfig) -> (Node, Arc<AtomicUsize>) {
    let (node, calls, _) = node_gated(http).await;
    (node, calls)
}

fn client_for(node: &Node, token: Option<&str>) -> HttpClient {
    degraded::client_for(node).token(token.map(|t| Token::new(t).unwrap()))
}

fn rpc_url(node: &Node, method: &str) -> String {
    format!("{}/rpc/{method}", node.http_url().unwrap())
}

#[tokio::test]
async fn a_missing_or_wrong_token_gets_401_and_the_handler_never_runs() {
    let token = Token::new("s3cret-token").unwrap();
    let (node, calls) = node(http_config().token(token)).await;
    let http = reqwest::Client::new();
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cret-toke"),
        Some("s3cret-token"),
    ] {
        let mut req = http
            .post(rpc_url(&node, "Echo.say"))
            .header("content-type", "application/json")
            .body("1");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
        assert_eq!(resp.headers()["x-status"], "unauthenticated");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let to = Address::Instance(node.id().clone());
    let req = Request::encode(to.clone(), "Echo.say", ContentType::Json, &1).unwrap();
    let err = client_for(&node, Some("nope"))
        .call(req.clone())
        .await
        .unwrap_err();
    assert_eq!(err.status().map(Status::code), Some(&Code::Unauthenticated));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let resp = client_for(&node, Some("s3cret-token"))
        .call(req)
        .await
        .unwrap();
    assert_eq!(resp.decode::<i32>().unwrap(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_oversized_body_gets_413_and_the_handler_never_runs() {
    let (node, calls) = node(http_config().max_body(1024)).await;
    let resp = reqwest::Client::new()
        .post(rpc_url(&node, "Echo.say"))
        .header("content-type", "application/msgpack")
        .body(vec![0u8; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.headers()["x-status"], "payload_too_large");
    assert_eq!(resp.headers()["content-type"], "application/msgpack");

    // Without a Content-Length the limit holds while reading.
    let mut tcp = tokio::net::TcpStream::connect(node.http_addr().unwrap())
        .await
        .unwrap();
    let chunk = "x".repeat(1000);
    let mut raw = "POST /rpc/Echo.say HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                   transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        .to_owned();
    for _ in 0..3 {
        raw.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    raw.push_str("0\r\n\r\n");
    tcp.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn json_and_msgpack_statuses_and_headers_travel_over_http() {
    let (node, calls) = node(http_config()).await;
    let client = client_for(&node, None);
    let to = Address::Instance(node.id().clone());
    for ct in [ContentType::Json, ContentType::MsgPack] {
        let req = Request::encode(to.clone(), "Echo.say", ct, &("é", 1.5f64))
            .unwrap()
            .with_header("traceparent", "00-abc-def-01");
        let resp = client.call(req).await.unwrap();
        assert_eq!((resp.transport, resp.content_type), (Transport::Http, ct));
        assert_eq!(resp.decode::<(String, f64)>().unwrap(), ("é".into(), 1.5));
        assert_eq!(resp.headers.get("traceparent"), Some("00-abc-def-01"));
        assert_eq!(resp.from.id.as_deref(), Some(node.id().as_str()));

        let req = Request::encode(to.clone(), "Math.div", ct, &(1, 0)).unwrap();
        let status = client
            .call(req)
            .await
            .unwrap_err()
            .status()
            .cloned()
            .unwrap();
        assert_eq!(status.code(), &Code::Application);
        assert_eq!(
            status.details::<String>().unwrap().as_deref(),
            Some("divide by zero")
        );

        let req = Request::encode(to.clone(), "Nope.none", ct, &()).unwrap();
        let err = client.call(req).await.unwrap_err();
        assert_eq!(err.status().map(Status::code), Some(&Code::UnknownMethod));
    }
    // The raw HTTP statuses a non-warren caller sees.
    let http = reqwest::Client::new();
    for (method, expect) in [("Echo.say", 200), ("Math.div", 422), ("Nope.none", 404)] {
        let resp = http
            .post(rpc_url(&node, method))
            .body("[1,0]")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), expect, "{method}");
    }
    let resp = http
        .post(rpc_url(&node, "Echo.say"))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let expired = http
        .post(rpc_url(&node, "Echo.say"))
        .header("x-timeout-ms", "0")
        .body("1");
    assert_eq!(expired.send().await.unwrap().status(), 504);
    let far = http
        .post(rpc_url(&node, "Echo.say"))
        .header("x-timeout-ms", u64::MAX.to_string())
        .body("1");
    assert_eq!(
        far.send().await.unwrap().status(),
        200,
        "a far deadline is served"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        10,
        "refused requests never ran"
    );
}

#[tokio::test]
async fn health_binding_and_stale_peers() {
    let (node, calls, gate) = node_gated(http_config()).await;
    let addr = node.http_addr().unwrap();
    assert!(
        addr.ip().is_loopback(),
        "only the configured address: {addr}"
    );
    let health_url = format!("{}/health", node.http_url().unwrap());
    let slow = {
        let client = client_for(&node, None);
        let req = Request::encode(
            Address::Instance(node.id().clone()),
            "Echo.hold",
            ContentType::Json,
            &1,
        );
        tokio::spawn(async move { client.call(req.unwrap()).await })
    };
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let health: Health = reqwest::get(&health_url).await.unwrap().json_body().await;
    assert_eq!(health.id, node.id().as_str());
    assert_eq!(
        (health.broker.as_str(), health.consumers, health.in_flight),
        ("connected", 2, 1)
    );
    gate.add_permits(1);
    slow.await.unwrap().unwrap();
    let health: Health = reqwest::get(&health_url).await.unwrap().json_body().await;
    assert_eq!(health.in_flight, 0);

    // A peer list that names the wrong instance for a URL: refused (421),
    // never run, and reported as not sent.
    let peers = Peers::new();
    let ghost = format!("{}/ghost={}", node.service(), node.http_url().unwrap());
    peers.insert(PeerUrl::parse(&ghost).unwrap());
    let req = Request::encode(
        Address::instance("ghost").unwrap(),
        "Echo.say",
        ContentType::Json,
        &1,
    );
    let err = HttpClient::new(peers)
        .unwrap()
        .call(req.unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let conn = support::connect(support::config()).await;
    let plain = Node::builder(support::service_type("plain"))
        .serve(&conn, handler(Arc::default(), Arc::new(Semaphore::new(0))))
        .await
        .unwrap();
    assert_eq!(plain.http_addr(), None);
}

trait JsonBody {
    async fn json_body<T: serde::de::DeserializeOwned>(self) -> T;
}

impl JsonBody for reqwest::Response {
    async fn json_body<T: serde::de::DeserializeOwned>(self) -> T {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}
