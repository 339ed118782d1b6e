//! OpenTelemetry export, for real: A calls B over the broker, B publishes
//! an event, C's handler of it calls D; the spans exported (in memory) are
//! one trace, each hop's span a child of the one that sent to it.
mod support;

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry::Value as OtelValue;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::json;
use std::time::{Duration, Instant};
use tower::ServiceExt;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use warren::events::{Delivery, Publisher, Subscription};
use warren::{Address, Client, ContentType, Context, Error, Node, Request, Response};

#[derive(serde::Serialize, serde::Deserialize, warren::Event)]
#[event(name = "otel.hop")]
struct Hop {
    n: u32,
}

fn method(span: &SpanData) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == "method")
        .map(|kv| match &kv.value {
            OtelValue::String(s) => s.to_string(),
            other => other.to_string(),
        })
}

/// The one span named `name` (with `method`, if given).
fn one<'a>(spans: &'a [SpanData], name: &str, with: Option<&str>) -> &'a SpanData {
    let found: Vec<_> = spans
        .iter()
        .filter(|s| s.name == name && (with.is_none() || method(s).as_deref() == with))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one `{name}` span with {with:?}: {found:#?}"
    );
    found[0]
}

#[tokio::test]
async fn a_chain_of_calls_and_events_exports_as_one_trace() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry().with(warren::otel::layer_for(&provider));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let conn =
        support::connect(support::config().events_exchange(support::unique("otel-events"))).await;
    let b = support::service_type("otel-b");
    let d = support::service_type("otel-d");
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();

    let publisher = Publisher::new(&conn);
    let b_handler = support::handler::Handler::new(tower::service_fn(move |req: Request| {
        let publisher = publisher.clone();
        async move {
            publisher.publish(&Hop { n: 1 }).await?;
            Ok::<_, Error>(Response::ok(req.content_type, req.body))
        }
    }));
    let d_handler = support::handler::Handler::new(tower::service_fn(move |req: Request| {
        let seen = seen_tx.clone();
        async move {
            let _ = seen.send(Context::current().and_then(|c| c.trace));
            Ok::<_, Error>(Response::ok(req.content_type, req.body))
        }
    }));
    let _b = Node::builder(b.clone())
        .serve(&conn, b_handler)
        .await
        .unwrap();
    let _d = Node::builder(d.clone())
        .serve(&conn, d_handler)
        .await
        .unwrap();
    let client = Client::new(&conn);
    let to_d = Address::any(d.as_str()).unwrap();
    let c_client = client.clone();
    let c = tower::service_fn(move |_: Delivery<Hop>| {
        let (client, to) = (c_client.clone(), to_d.clone());
        async move {
            let req = support::request(to, "D.record", ContentType::Json, &json!(null));
            client.oneshot(req).await?.into_result()?;
            Ok::<_, Error>(())
        }
    });
    let _c = Subscription::new(support::unique("otel-c"))
        .on(c)
        .start(&conn)
        .await
        .unwrap();

    // A: a span of the caller's own, and the call to B inside it.
    let a = tracing::info_span!("a");
    let req = support::request(
        Address::any(b.as_str()).unwrap(),
        "B.work",
        ContentType::Json,
        &1,
    );
    client
        .oneshot(req)
        .instrument(a.clone())
        .await
        .unwrap()
        .into_result()
        .unwrap();
    drop(a);
    let d_trace = tokio::time::timeout(Duration::from_secs(10), seen.recv())
        .await
        .expect("D is called within 10 s")
        .unwrap()
        .expect("D's handler sees its trace");

    // D's span ends after its reply is out: wait for it.
    let started = Instant::now();
    let spans = loop {
        let spans = exporter.get_finished_spans().unwrap();
        let delivered = spans.iter().filter(|s| s.name == "warren.deliver").count();
        if delivered == 2 && spans.iter().any(|s| s.name == "warren.event") {
            break spans;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "spans: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let a = one(&spans, "a", None);
    let trace: TraceId = a.span_context.trace_id();
    let parent_of = |s: &SpanData| s.parent_span_id;
    let id = |s: &SpanData| s.span_context.span_id();

    let call_b = one(&spans, "warren.call", Some("B.work"));
    let deliver_b = spans
        .iter()
        .find(|s| s.name == "warren.deliver" && method(s).as_deref() == Some("B.work"))
        .expect("B's delivery span");
    let handle_b = one(&spans, "warren.handle", Some("B.work"));
    let event = one(&spans, "warren.event", None);
    let call_d = one(&spans, "warren.call", Some("D.record"));
    let deliver_d = spans
        .iter()
        .find(|s| s.name == "warren.deliver" && method(s).as_deref() == Some("D.record"))
        .expect("D's delivery span");
    let handle_d = one(&spans, "warren.handle", Some("D.record"));

    for s in [
        call_b, deliver_b, handle_b, event, call_d, deliver_d, handle_d,
    ] {
        assert_eq!(
            s.span_context.trace_id(),
            trace,
            "{} is in A's trace",
            s.name
        );
    }
    assert_eq!(parent_of(a), SpanId::INVALID);
    assert_eq!(parent_of(call_b), id(a));
    assert_eq!(parent_of(deliver_b), id(call_b));
    assert!(deliver_b.parent_span_is_remote);
    assert_eq!(parent_of(handle_b), id(deliver_b));
    assert_eq!(
        parent_of(event),
        id(handle_b),
        "the event's span: a child of the publisher's"
    );
    assert!(event.parent_span_is_remote);
    assert_eq!(parent_of(call_d), id(event));
    assert_eq!(parent_of(deliver_d), id(call_d));
    assert_eq!(parent_of(handle_d), id(deliver_d));

    // The handler's Context names the exported span.
    assert_eq!(d_trace.span_id().to_bytes(), id(handle_d).to_bytes());
    assert_eq!(d_trace.trace_id().to_bytes(), trace.to_bytes());
    provider.shutdown().unwrap();
}
