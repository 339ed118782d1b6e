//! Cross-language tests: Python peers (pika) that know only docs/PROTOCOL.md.
//!
//! A pika caller calls a warren node with JSON, and a warren client calls a
//! plain pika RPC server. Both need `python3` with `pika` (scripts/test
//! installs `python3-pika`); without it these tests fail, they never skip.
mod support;

#[path = "interop/python.rs"]
mod python;

use python::{python, script, Peer};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::process::Command;
use tower::service_fn;
use warren::{
    Address, Client, Code, ContentType, Context, Delivery, Error, Gather, Node, Request, Response,
    Status,
};

#[derive(Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

/// `Calc.add` and `Calc.context`, as a hand-written tower service.
async fn calc(req: Request) -> Result<Response, Error> {
    let ct = req.content_type;
    match req.method.as_str() {
        "Calc.add" => {
            let Add { a, b } = req.decode()?;
            Response::encode(ct, &(a + b))
        }
        "Calc.context" => {
            let ctx = Context::current().expect("handlers run in a context");
            let seen = json!({
                "tenant": ctx.headers.get("tenant"),
                "n": ctx.headers.get("n"),
                "traceparent": ctx.headers.get("traceparent"),
                "caller_id": ctx.caller.id.as_deref(),
                "caller_type": ctx.caller.service.as_deref(),
                "deadline_ms": ctx.remaining().map(|d| d.as_millis() as u64),
                "message_id": ctx.message_id,
            });
            Response::encode(ct, &seen)
        }
        other => Ok(Response::error(
            ct,
            &Status::new(Code::UnknownMethod, format!("Calc has no method `{other}`")),
        )),
    }
}

#[tokio::test]
async fn a_python_caller_calls_a_warren_service() {
    let cfg = support::config();
    let exchange = cfg.exchange.clone();
    let conn = support::connect(cfg).await;
    let t = support::service_type("calc");
    let node = Node::builder(t.clone())
        .serve(&conn, service_fn(calc))
        .await
        .unwrap();

    let out = Command::new(python())
        .arg(script("call_warren.py"))
        .args([&support::url(), t.as_str(), node.id().as_str(), &exchange])
        .output()
        .await
        .expect("run call_warren.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "call_warren.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let context = r#"context: {"caller_id": "py-1", "caller_type": "python", "n": "5", "tenant": "acme", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}"#;
    assert_eq!(
        lines,
        [
            "add: 42",
            "instance add: 2",
            "every, all: 3",
            "callback queue add: 7",
            context,
            "bad args: bad_request",
            "unknown: unknown_method False",
            "no route: unroutable",
        ],
        "{stderr}"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_warren_client_calls_a_plain_pika_server() {
    let conn = support::connect(support::config()).await;
    let queue = support::unique("rpc_queue");
    let mut server = Peer::start("rpc_server.py", &[&support::url(), &queue]).await;
    let client = Client::new(&conn);
    let to = Address::any(&queue).unwrap();

    // A reply with no x-status and no content type: ok, read as JSON.
    let req = Request::encode(
        to.clone(),
        "Calc.add",
        ContentType::Json,
        &json!({"a": 2, "b": 3}),
    )
    .unwrap();
    let reply: Value = client.call(req).await.unwrap().decode().unwrap();
    assert_eq!(reply["sum"], 5, "{reply}");
    // What a foreign server sees of a warren request.
    assert_eq!(reply["method"], "Calc.add");
    assert_eq!(reply["content_type"], "application/json");
    assert_eq!(reply["reply_to"], true);
    // The deadline is `expiration` alone; a plain call has no header table.
    let timeout: u64 = reply["expiration"]
        .as_str()
        .and_then(|e| e.parse().ok())
        .expect("expiration is a number of ms");
    assert!(timeout > 0 && timeout <= 10_000, "{reply}");
    assert_eq!(reply["headers"], json!({}), "{reply}");
    // A plain Client names itself `/<its random id>`.
    let sender = reply["sender"].as_str().expect("app_id is a string");
    assert!(sender.starts_with('/') && sender.len() > 1, "{reply}");

    // An error reply the way PROTOCOL.md says to send one.
    let req = Request::encode(
        to.clone(),
        "Calc.fail",
        ContentType::Json,
        &json!({"reason": "asked"}),
    )
    .unwrap();
    let err = client.call(req).await.unwrap_err();
    let status = err.status().expect("a remote status");
    assert_eq!(status.code(), &Code::Application);
    assert_eq!(status.message(), "no luck");
    assert_eq!(
        status.details::<Value>().unwrap(),
        Some(json!({"reason": "asked"}))
    );

    // A one-way send: persistent, no reply_to, correlation id or expiry.
    let req = Request::encode(to, "Calc.log", ContentType::Json, &json!({"n": 1})).unwrap();
    client
        .call(req.with_delivery(Delivery::OneWay))
        .await
        .unwrap();
    let seen: Value = serde_json::from_str(&server.line().await).unwrap();
    assert_eq!(
        seen,
        json!({"send": "Calc.log", "args": {"n": 1}, "delivery_mode": 2,
               "correlation_id": null, "expiration": null})
    );
}

/// The application error `Calc.div` sends in the status object's details.
#[derive(Debug, PartialEq, Deserialize)]
enum MathError {
    DivideByZero,
}

#[tokio::test]
async fn warren_callers_reach_a_python_service_at_every_address() {
    let cfg = support::config();
    let exchange = cfg.exchange.clone();
    let conn = support::connect(cfg).await;
    let t = support::service_type("pycalc");
    let id = support::unique("py");
    let mut server = Peer::start(
        "serve_warren.py",
        &[&support::url(), &exchange, t.as_str(), &id],
    )
    .await;
    let client = Client::new(&conn);
    let add = |to: Address| {
        Request::encode(
            to,
            "Calc.add",
            ContentType::Json,
            &json!({"a": 20, "b": 22}),
        )
        .unwrap()
    };

    for to in [Address::Any(t.clone()), Address::instance(&id).unwrap()] {
        let reply = client.call(add(to.clone())).await.unwrap();
        assert_eq!(reply.decode::<i64>().unwrap(), 42, "{to}");
        assert_eq!(reply.from.id.as_deref(), Some(id.as_str()));
        assert_eq!(reply.from.service.as_deref(), Some(t.as_str()));
    }
    for to in [Address::Every(t.clone()), Address::All] {
        let replies = client.gather(Gather::new(add(to)).expect(1)).await.unwrap();
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].decode::<i64>().unwrap(), 42);
    }

    let req = Request::encode(
        Address::Any(t.clone()),
        "Calc.div",
        ContentType::Json,
        &json!({"a": 1, "b": 0}),
    )
    .unwrap();
    let err = client.call(req).await.unwrap_err();
    let status = err.status().expect("a remote status");
    assert_eq!(status.code(), &Code::Application);
    assert_eq!(
        status.details::<MathError>().unwrap(),
        Some(MathError::DivideByZero)
    );

    let req = Request::encode(
        Address::Any(t.clone()),
        "Calc.sub",
        ContentType::Json,
        &json!({}),
    )
    .unwrap();
    let err = client.call(req).await.unwrap_err();
    assert_eq!(err.status().unwrap().code(), &Code::UnknownMethod);

    // This service speaks only JSON; warren's default is MessagePack.
    let req = Request::encode(
        Address::Any(t.clone()),
        "Calc.add",
        ContentType::MsgPack,
        &json!({"a": 1, "b": 1}),
    )
    .unwrap();
    let err = client.call(req).await.unwrap_err();
    assert_eq!(err.status().unwrap().code(), &Code::UnsupportedContentType);

    client
        .call(add(Address::Any(t)).with_delivery(Delivery::OneWay))
        .await
        .unwrap();
    let seen: Value = serde_json::from_str(&server.line().await).unwrap();
    assert_eq!(seen, json!({"send": "Calc.add", "status": "ok"}));
}
