//! Run with: `scripts/broker start && WARREN_AMQP_URL=$(scripts/broker url) cargo run --example tracing --features otel`
//!
//! One trace across three services: the front desk calls `tickets`
//! (`Tickets.open`), which publishes `ticket.opened`; `billing` handles the
//! event and calls `pricing` (`Pricing.quote`). Each hop prints the trace id
//! and its own and its parent's span ids: the trace id is the same
//! everywhere, and each parent is the hop before. With the `otel` feature the
//! spans are also exported over OTLP/HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (default `http://localhost:4318`, a collector or Jaeger), as one trace.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use tower::{service_fn, ServiceExt};
use warren::events::{Delivery, Publisher, Subscription};
use warren::{
    Address, Client, Config, Connection, ContentType, Context, Error, Node, Request, Response,
    ServiceType, TraceContext,
};

#[derive(Debug, Serialize, Deserialize, warren::Event)]
#[event(name = "ticket.opened")]
struct TicketOpened {
    id: u32,
}

/// Prints the trace this hop runs in.
fn show(hop: &str) {
    match Context::current().and_then(|c| c.trace) {
        Some(t) => println!(
            "{hop:<9} trace {} span {} parent {}",
            t.trace_id(),
            t.span_id(),
            t.parent_id().map_or("-".into(), |p| p.to_string())
        ),
        None => println!("{hop:<9} no trace"),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "otel")]
    let otel = warren::otel::init("tracing-example")?;

    let conn = Connection::connect(Config::from_env()?).await?;
    let publisher = Publisher::new(&conn);
    let tickets = Node::builder(ServiceType::new("tickets")?)
        .serve(
            &conn,
            service_fn(move |req: Request| {
                let publisher = publisher.clone();
                async move {
                    show("tickets");
                    publisher.publish(&TicketOpened { id: 7 }).await?;
                    Ok::<_, Error>(Response::ok(req.content_type, req.body))
                }
            }),
        )
        .await?;
    let pricing = Node::builder(ServiceType::new("pricing")?)
        .serve(
            &conn,
            service_fn(|req: Request| async move {
                show("pricing");
                Ok::<_, Error>(Response::ok(req.content_type, req.body))
            }),
        )
        .await?;
    let (done, mut finished) = tokio::sync::mpsc::channel::<()>(1);
    let client = Client::new(&conn);
    let billing_client = client.clone();
    let billing = Subscription::new("billing")
        .on(service_fn(move |_: Delivery<TicketOpened>| {
            let (client, done) = (billing_client.clone(), done.clone());
            async move {
                show("billing");
                let quote = Request::encode(
                    Address::any("pricing")?,
                    "Pricing.quote",
                    ContentType::Json,
                    &7,
                )?;
                client.oneshot(quote).await?.into_result()?;
                let _ = done.send(()).await;
                Ok::<_, Error>(())
            }
        }))
        .start(&conn)
        .await?;

    // The front desk starts the trace.
    let root = TraceContext::new_root();
    println!(
        "front     trace {} span {}",
        root.trace_id(),
        root.span_id()
    );
    let open = Request::encode(
        Address::any("tickets")?,
        "Tickets.open",
        ContentType::Json,
        &7,
    )?;
    Context::default()
        .with_trace(root)
        .scope(client.oneshot(open))
        .await?
        .into_result()?;
    tokio::time::timeout(Duration::from_secs(10), finished.recv()).await?;

    billing.shutdown().await;
    tickets.shutdown().await;
    pricing.shutdown().await;
    #[cfg(feature = "otel")]
    otel.shutdown();
    Ok(())
}
