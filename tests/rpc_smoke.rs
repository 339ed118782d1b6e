//! Smoke test: one node, one client, the basic outcomes of a call.
mod support;

use std::time::{Duration, Instant};
use tower::service_fn;
use warren::{Address, Code, ContentType, Error, Gather, Node, Request, Response};

fn echo() -> impl tower::Service<Request, Response = Response, Error = Error, Future = impl Send>
       + Clone
       + Send
       + Sync
       + 'static {
    service_fn(|req: Request| async move {
        match req.method.as_str() {
            "Echo.say" => Ok(Response::ok(req.content_type, req.body)),
            "Echo.fail" => Err(Error::Remote(warren::Status::new(
                Code::Internal,
                "asked to fail",
            ))),
            other => Ok(Response::error(
                req.content_type,
                &warren::Status::new(Code::UnknownMethod, other),
            )),
        }
    })
}

#[tokio::test]
async fn call_reply_noroute_timeout() {
    let cfg = support::config();
    let conn = support::connect(cfg).await;
    let t = support::service_type("echo");
    let node = Node::builder(t.clone()).serve(&conn, echo()).await.unwrap();
    let client = warren::Client::new(&conn);

    let req = Request::encode(
        Address::Any(t.clone()),
        "Echo.say",
        ContentType::Json,
        &"hi",
    )
    .unwrap();
    let resp = client.call(req).await.unwrap();
    assert_eq!(resp.decode::<String>().unwrap(), "hi");
    assert_eq!(resp.from.id.as_deref(), Some(node.id().as_str()));

    let req = Request::encode(
        Address::Instance(node.id().clone()),
        "Echo.say",
        ContentType::MsgPack,
        &42u32,
    )
    .unwrap();
    assert_eq!(client.call(req).await.unwrap().decode::<u32>().unwrap(), 42);

    let start = Instant::now();
    let req = Request::encode(
        Address::any("nobody-here").unwrap(),
        "Echo.say",
        ContentType::Json,
        &1,
    )
    .unwrap();
    let err = client.call(req).await.unwrap_err();
    assert!(matches!(err, Error::NoRoute { .. }), "{err}");
    println!("no route after {:?}", start.elapsed());

    let req = Request::encode(Address::Any(t.clone()), "Echo.fail", ContentType::Json, &1).unwrap();
    let err = client.call(req).await.unwrap_err();
    assert_eq!(err.status().unwrap().code(), &Code::Internal);

    let g = Gather::new(
        Request::encode(Address::Every(t.clone()), "Echo.say", ContentType::Json, &7)
            .unwrap()
            .with_timeout(Duration::from_millis(300)),
    );
    let replies = client.gather(g).await.unwrap();
    assert_eq!(replies.len(), 1);

    let start = Instant::now();
    for _ in 0..200 {
        let req = Request::encode(
            Address::Any(t.clone()),
            "Echo.say",
            ContentType::MsgPack,
            &"x",
        )
        .unwrap();
        client.call(req).await.unwrap();
    }
    println!("200 sequential calls: {:?}", start.elapsed());
    node.shutdown().await;
}
