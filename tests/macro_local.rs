//! `#[warren::service]` end to end over the in-process transport: typed
//! calls, errors, codecs, scatter-gather, deadlines and tower layers.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::{ServiceBuilder, ServiceExt};
use warren::{
    Address, Code, ContentType, Context, Delivery, Error, Local, Request, Response, Status,
};

/// The application error of `divide`.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum MathError {
    /// `b` was zero.
    DivideByZero,
}

impl std::fmt::Display for MathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("division by zero")
    }
}

/// The service under test.
#[warren::service]
pub trait Calculator {
    /// `a + b`.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// `a / b`, or an application error.
    async fn divide(&self, a: f64, b: f64) -> Result<f64, MathError>;
    /// Sleeps, then answers `ms`.
    #[warren(rename = "Calculator.sleep")]
    async fn slow(&self, ms: u64) -> u64;
    /// What the handler's context says is left of the caller's deadline.
    async fn remaining_ms(&self) -> Option<u64>;
    /// A header of the call, as the handler sees it.
    async fn header(&self, name: String) -> Option<String>;
    /// The id of the instance that answers.
    #[warren(idempotent)]
    async fn whoami(&self) -> String;
    /// Panics.
    async fn boom(&self) -> i64;
    /// Adds `n` to a running total; nothing comes back.
    #[warren(oneway)]
    async fn record(&self, n: i64);
    /// The running total.
    async fn total(&self) -> i64;
}

#[derive(Default)]
struct Calc {
    id: String,
    total: AtomicI64,
}

impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
    async fn divide(&self, a: f64, b: f64) -> Result<f64, MathError> {
        if b == 0.0 {
            return Err(MathError::DivideByZero);
        }
        Ok(a / b)
    }
    async fn slow(&self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }
    async fn remaining_ms(&self) -> Option<u64> {
        let left = Context::current()?.remaining()?;
        Some(left.as_millis() as u64)
    }
    async fn header(&self, name: String) -> Option<String> {
        Some(Context::current()?.headers.get(&name)?.to_owned())
    }
    async fn whoami(&self) -> String {
        self.id.clone()
    }
    async fn boom(&self) -> i64 {
        panic!("boom")
    }
    async fn record(&self, n: i64) {
        self.total.fetch_add(n, Ordering::SeqCst);
    }
    async fn total(&self) -> i64 {
        self.total.load(Ordering::SeqCst)
    }
}

fn calc(id: &str) -> CalculatorServer<Calc> {
    CalculatorServer::new(Calc {
        id: id.to_owned(),
        ..Calc::default()
    })
}

/// A transport with one calculator instance, `calc-1`.
fn one_instance() -> Local {
    let mut local = Local::new();
    local.serve(
        "calculator".parse().unwrap(),
        "calc-1".parse().unwrap(),
        calc("calc-1"),
    );
    local
}

#[tokio::test]
async fn typed_calls_in_both_codecs() -> Result<(), Error> {
    for ct in [ContentType::MsgPack, ContentType::Json] {
        let client = CalculatorClient::new(one_instance()).with_content_type(ct);
        assert_eq!(client.add(2, 3).await?, 5);
        assert_eq!(client.divide(1.0, 4.0).await?, Ok(0.25));
        assert_eq!(client.slow(1).await?, 1);
        assert_eq!(client.whoami().await?, "calc-1");
    }
    Ok(())
}

#[tokio::test]
async fn application_errors_are_not_transport_errors() {
    let client = CalculatorClient::new(one_instance());
    assert_eq!(
        client.divide(1.0, 0.0).await.unwrap(),
        Err(MathError::DivideByZero)
    );
    let nobody = client.clone().with_address(Address::any("nobody").unwrap());
    let err = nobody.divide(1.0, 0.0).await.unwrap_err();
    assert!(matches!(err, Error::NoRoute { .. }), "{err:?}");
    let err = CalculatorClient::new(Local::new()).add(1, 2).await;
    assert!(matches!(err, Err(Error::NoRoute { .. })), "{err:?}");
}

#[tokio::test]
async fn constants_name_the_service_and_its_methods() {
    assert_eq!(CalculatorServer::<Calc>::SERVICE, "calculator");
    assert_eq!(CalculatorClient::<Local>::SERVICE, "calculator");
    let methods = CalculatorClient::<Local>::METHODS;
    assert_eq!(methods.len(), 9);
    assert_eq!(
        &methods[..3],
        ["Calculator.add", "Calculator.divide", "Calculator.sleep"]
    );
    assert_eq!(methods, CalculatorServer::<Calc>::METHODS);
}

#[tokio::test]
async fn json_wire_format() -> Result<(), Error> {
    let local = one_instance();
    let raw = |method: &str, body: &'static str| {
        let to = Address::any("calculator").unwrap();
        let req = Request::new(to, method, ContentType::Json, body).unwrap();
        ServiceExt::<Request>::oneshot(local.clone(), req)
    };
    let reply = raw("Calculator.add", r#"{"a":1,"b":2}"#).await?;
    assert_eq!(&reply.body[..], b"3");
    // Unknown keys are ignored; a positional array is read in declaration order.
    let reply = raw("Calculator.add", r#"{"b":2,"a":40,"c":9}"#).await?;
    assert_eq!(&reply.body[..], b"42");
    let reply = raw("Calculator.add", "[40,2]").await?;
    assert_eq!(&reply.body[..], b"42");
    let Err(Error::Remote(status)) = raw("Calculator.add", r#"{"a":1}"#).await else {
        panic!("a missing argument must be refused")
    };
    assert_eq!(status.code(), &Code::BadRequest);
    let reply = raw("Calculator.whoami", "{}").await?;
    assert_eq!(&reply.body[..], br#""calc-1""#);
    let Err(Error::Remote(status)) = raw("Calculator.divide", r#"{"a":1.0,"b":0.0}"#).await else {
        panic!("divide by zero must fail")
    };
    assert_eq!(status.code(), &Code::Application);
    assert_eq!(status.message(), "division by zero");
    assert_eq!(
        status.details::<MathError>()?,
        Some(MathError::DivideByZero)
    );
    let body = status.to_body(ContentType::Json)?;
    assert_eq!(
        &body[..],
        br#"{"code":"application","message":"division by zero","details":"DivideByZero"}"#
    );
    // What a client sends: the arguments as a map, by name.
    let spy = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&spy);
    let transport = ServiceBuilder::new()
        .map_request(move |req: Request| {
            seen.lock().unwrap().push(req.clone());
            req
        })
        .service(local);
    let client = CalculatorClient::new(transport).with_content_type(ContentType::Json);
    client.add(1, 2).await?;
    client.total().await?;
    let sent = spy.lock().unwrap();
    assert_eq!(&sent[0].body[..], br#"{"a":1,"b":2}"#);
    assert_eq!(&sent[1].body[..], b"{}");
    Ok(())
}

#[tokio::test]
async fn method_options_reach_the_request() -> Result<(), Error> {
    let spy = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&spy);
    let transport = ServiceBuilder::new()
        .map_request(move |req: Request| {
            seen.lock().unwrap().push((
                req.method.clone(),
                req.idempotent,
                req.delivery == Delivery::OneWay,
            ));
            req
        })
        .service(one_instance());
    let client = CalculatorClient::new(transport).with_header("x-tenant", "acme");
    assert_eq!(
        client.header("x-tenant".into()).await?.as_deref(),
        Some("acme")
    );
    client.whoami().await?;
    client.record(5).await?;
    client.record(6).await?;
    // Oneway calls return before their handler ran: wait for the effect.
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.total().await? != 11 {
        assert!(Instant::now() < deadline, "the oneway calls never ran");
        tokio::task::yield_now().await;
    }
    let sent = spy.lock().unwrap();
    assert_eq!(sent[0], ("Calculator.header".to_owned(), false, false));
    assert_eq!(sent[1], ("Calculator.whoami".to_owned(), true, false));
    assert_eq!(sent[2], ("Calculator.record".to_owned(), false, true));
    Ok(())
}

#[tokio::test]
async fn gather_returns_one_typed_result_per_instance() -> Result<(), Error> {
    let mut local = one_instance();
    local.serve("calculator".parse()?, "calc-2".parse()?, calc("calc-2"));
    // An instance of another service, which has none of the methods.
    local.serve(
        "other".parse()?,
        "other-1".parse()?,
        tower::service_fn(|req: Request| async move {
            let status = Status::new(Code::UnknownMethod, "not here");
            Ok::<_, Error>(Response::error(req.content_type, &status))
        }),
    );
    let client = CalculatorClient::new(local).with_timeout(Duration::from_secs(5));
    // By default a gather goes to every instance of the service.
    let mut ids: Vec<_> = client
        .gather()
        .expect(2)
        .whoami()
        .await?
        .into_iter()
        .map(|(peer, id)| (peer.id.unwrap().to_string(), id.unwrap()))
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            ("calc-1".into(), "calc-1".into()),
            ("calc-2".into(), "calc-2".into())
        ]
    );
    let divided = client.gather().expect(2).divide(1.0, 0.0).await?;
    assert_eq!(divided.len(), 2);
    for (_, result) in divided {
        assert_eq!(result?, Err(MathError::DivideByZero));
    }
    // Sent to all, with its own timeout: the other service's "no such
    // method" is not counted as a failure of this one.
    let all = client
        .gather()
        .with_address(Address::all())
        .with_timeout(Duration::from_millis(300))
        .remaining_ms()
        .await?;
    let mut from: Vec<_> = all.iter().map(|(p, _)| p.id.as_deref().unwrap()).collect();
    from.sort();
    assert_eq!(from, ["calc-1", "calc-2"]);
    for (_, remaining) in all {
        assert!(remaining?.is_some_and(|ms| ms <= 300));
    }
    Ok(())
}

#[tokio::test]
async fn handler_sees_the_callers_deadline() -> Result<(), Error> {
    let client = CalculatorClient::new(one_instance()).with_timeout(Duration::from_secs(5));
    let left = client.remaining_ms().await?.expect("a deadline");
    assert!((4_000..=5_000).contains(&left), "{left} ms left");
    Ok(())
}

/// A service that calls another: deadlines carry over the hop.
#[warren::service]
pub trait Relay {
    /// Asks a calculator how much time its handler has.
    async fn remaining_behind(&self) -> Option<u64>;
}

struct Forward(CalculatorClient<Local>);

impl Relay for Forward {
    async fn remaining_behind(&self) -> Option<u64> {
        self.0.remaining_ms().await.ok()?
    }
}

#[tokio::test]
async fn deadlines_carry_over_to_calls_a_handler_makes() -> Result<(), Error> {
    let mut local = one_instance();
    let inner = CalculatorClient::new(local.clone()); // no timeout of its own
    local.serve(
        "relay".parse()?,
        "relay-1".parse()?,
        RelayServer::new(Forward(inner)),
    );
    let relay = RelayClient::new(local).with_timeout(Duration::from_secs(2));
    let left = relay.remaining_behind().await?.expect("a deadline");
    assert!((1_000..=2_000).contains(&left), "{left} ms left");
    Ok(())
}

#[tokio::test]
async fn tower_layers_on_the_client_transport() {
    // Stock tower layers fail with a BoxError; the generated client speaks
    // warren::Error, so the stack maps it back.
    let transport = ServiceBuilder::new()
        .map_err(Error::from)
        .timeout(Duration::from_millis(50))
        .service(one_instance());
    let client = CalculatorClient::new(transport);
    assert_eq!(client.add(1, 1).await.unwrap(), 2);
    let err = client.slow(2_000).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn tower_layers_on_the_generated_server() -> Result<(), Error> {
    let limited = ServiceBuilder::new()
        .concurrency_limit(1)
        .service(calc("calc-1"));
    let mut local = Local::new();
    local.serve("calculator".parse()?, "calc-1".parse()?, limited);
    let client = CalculatorClient::new(local);
    let started = Instant::now();
    let (a, b) = tokio::join!(client.slow(150), client.slow(150));
    assert_eq!((a?, b?), (150, 150));
    // One at a time: the second call waited for the first.
    assert!(started.elapsed() >= Duration::from_millis(300));
    Ok(())
}

#[tokio::test]
async fn bad_requests_get_error_replies() -> Result<(), Error> {
    let to = Address::any("calculator")?;
    let unknown = Request::new(to.clone(), "Calculator.nope", ContentType::Json, "{}")?;
    // Straight to the server: an error reply, not a failed service.
    let reply: Response = calc("calc-1").oneshot(unknown.clone()).await?;
    assert_eq!(reply.status, Code::UnknownMethod);
    // Through a transport: the reply becomes an Error::Remote.
    let err = ServiceExt::<Request>::oneshot(one_instance(), unknown)
        .await
        .unwrap_err();
    let status = err.status().expect("a remote error");
    assert_eq!(status.code(), &Code::UnknownMethod);
    assert!(status.message().contains("Calculator.add"), "{status}");

    let bad = Request::new(to, "Calculator.add", ContentType::Json, r#"{"a":"x"}"#)?;
    let reply = calc("calc-1").oneshot(bad).await?;
    assert_eq!(reply.status, Code::BadRequest);
    Ok(())
}

#[tokio::test]
async fn a_panicking_handler_does_not_stop_the_server() -> Result<(), Error> {
    let client = CalculatorClient::new(one_instance());
    let err = client.boom().await.unwrap_err();
    let status = err.status().expect("a remote error");
    assert_eq!(status.code(), &Code::Internal);
    assert_eq!(status.message(), warren::PANIC_MESSAGE);
    assert_eq!(client.add(2, 2).await?, 4);
    Ok(())
}

#[tokio::test]
async fn client_futures_can_be_spawned() -> Result<(), Error> {
    let client = CalculatorClient::new(one_instance());
    let call = tokio::spawn(client.add(20, 22));
    assert_eq!(call.await.expect("no panic")?, 42);
    Ok(())
}

#[tokio::test]
async fn a_single_reply_call_to_every_is_refused_when_built() {
    let every = Address::every("calculator").unwrap();
    let client = CalculatorClient::new(one_instance()).with_address(every.clone());
    let err = client.add(1, 1).await.unwrap_err();
    assert!(
        matches!(&err, Error::MulticastCall { address } if *address == every),
        "{err:?}"
    );
    // A hand-made request is refused before it is sent.
    let request = Request::new(Address::all(), "Calculator.add", ContentType::Json, "{}").unwrap();
    let err = ServiceExt::<Request>::oneshot(one_instance(), request)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MulticastCall { .. }), "{err:?}");
}

#[tokio::test]
async fn a_call_past_its_deadline_always_ends_as_a_timeout() {
    // The server layer cuts the handler off at the deadline the caller
    // waits for; whichever notices first, the caller sees one error.
    let client = CalculatorClient::new(one_instance()).with_timeout(Duration::from_millis(100));
    for _ in 0..20 {
        let err = client.slow(1_000).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    }
}
