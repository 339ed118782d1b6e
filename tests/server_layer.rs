//! One handler, two transports: served in process by `Local` and over
//! RabbitMQ by a `Node`, it gives the same answers (context, application
//! and transport errors, panics, deadlines), because both run it under the
//! same server layer.

mod support;

use std::time::Duration;
use tower::{service_fn, Service, ServiceExt};
use warren::Local;
use warren::{Address, Client, ContentType, Context, Error, Node, Request, Response, ServiceId};
use warren::{Code, Status};

/// A hand-written handler: what it does depends on the method.
async fn handle(req: Request) -> Result<Response, Error> {
    let ct = req.content_type;
    match req.method.as_str() {
        "Probe.context" => {
            let ctx = Context::current().expect("every transport sets the context");
            let remaining = ctx
                .remaining()
                .expect("the caller's deadline reaches the handler");
            let seen = format!(
                "{} {} {}",
                ctx.method,
                ctx.headers.get("x-tenant").unwrap_or("-"),
                remaining <= Duration::from_secs(5),
            );
            Response::encode(ct, &seen)
        }
        "Probe.refuse" => Err(Error::InvalidRequest("no such account".into())),
        "Probe.application" => Ok(Response::error(
            ct,
            &Status::new(Code::Application, "over the limit"),
        )),
        "Probe.panic" => panic!("the secret is 42"),
        "Probe.slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Response::encode(ct, &"late")
        }
        _ => Ok(Response::error(
            ct,
            &Status::new(Code::UnknownMethod, "no such method"),
        )),
    }
}

/// What a caller sees for each method, as text.
async fn outcomes<T>(transport: T, address: &Address) -> Vec<String>
where
    T: Service<Request, Response = Response, Error = Error> + Clone,
{
    let mut seen = Vec::new();
    for (method, timeout) in [
        ("Probe.context", 5_000),
        ("Probe.refuse", 5_000),
        ("Probe.application", 5_000),
        ("Probe.panic", 5_000),
        ("Probe.slow", 300),
        ("Probe.nothing", 5_000),
    ] {
        let req = Request::encode(address.clone(), method, ContentType::Json, &())
            .unwrap()
            .with_header("x-tenant", "acme")
            .with_timeout(Duration::from_millis(timeout));
        let outcome = match transport.clone().oneshot(req).await {
            Ok(resp) => format!("ok {}", resp.decode::<String>().unwrap()),
            Err(Error::Remote(s)) => format!("{} {}", s.code(), s.message()),
            Err(Error::Timeout { .. }) => "timeout".to_owned(),
            Err(e) => format!("other {e}"),
        };
        seen.push(outcome);
    }
    seen
}

#[tokio::test]
async fn local_and_rabbitmq_answer_alike() {
    let service = support::service_type("probe");
    let expected = vec![
        "ok Probe.context acme true".to_owned(),
        "bad_request invalid request: no such account".to_owned(),
        "application over the limit".to_owned(),
        format!("internal {}", warren::PANIC_MESSAGE),
        "timeout".to_owned(),
        "unknown_method no such method".to_owned(),
    ];

    let mut local = Local::new();
    local.serve(service.clone(), ServiceId::random(), service_fn(handle));
    let address = Address::Any(service.clone());
    let in_process = outcomes(local, &address).await;

    let conn = support::connect(support::config()).await;
    let node = Node::builder(service.clone())
        .serve(&conn, service_fn(handle))
        .await
        .unwrap();
    let over_rabbitmq = outcomes(Client::new(&conn), &address).await;
    node.shutdown().await;

    assert_eq!(in_process, over_rabbitmq);
    assert_eq!(in_process, expected);
}
