//! Run with: `P=5673; WARREN_BROKER_PORT=$P WARREN_BROKER_PLUGINS='[rabbitmq_management].' scripts/broker start && WARREN_AMQP_URL=$(WARREN_BROKER_PORT=$P scripts/broker url) WARREN_MANAGEMENT_URL=http://127.0.0.1:$((P + 10000)) cargo run --example queue_rates`
//!
//! Reads a service's queues through the broker's management API
//! (`WARREN_MANAGEMENT_URL`; the broker URL's credentials when it names no
//! user): a node of `rates` takes one-way messages sent for a few seconds,
//! and the example prints messages ready, unacknowledged, consumers and the
//! publish, deliver and ack rates the broker sampled, as `warren stats`
//! does.

use std::time::Duration;
use warren::{
    Address, Client, Config, Connection, ContentType, Delivery, ManagementStats, Node, Request,
    Response,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    // Fails here, not later, when the variable is missing.
    let stats = ManagementStats::new(&config)?;
    let conn = Connection::connect(config).await?;
    let service: warren::ServiceType = "rates".parse()?;
    let node = Node::builder(service.clone())
        .serve(
            &conn,
            tower::service_fn(|req: Request| async move {
                Ok::<_, warren::Error>(Response::ok(req.content_type, req.body))
            }),
        )
        .await?;
    let client = Client::new(&conn);
    let to = Address::any(service.as_str())?;
    let until = tokio::time::Instant::now() + Duration::from_secs(6);
    while tokio::time::Instant::now() < until {
        let send = Request::encode(to.clone(), "Rates.tick", ContentType::Json, &1)?
            .with_delivery(Delivery::OneWay);
        client.call(send).await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for q in stats.service(&service, &[node.id().clone()]).await? {
        println!(
            "{:<40} {:<9} ready {:>5} unacked {:>5} consumers {:>2} publish/s {:?} deliver/s {:?} ack/s {:?}",
            q.queue,
            q.kind.as_str(),
            q.messages,
            q.unacked,
            q.consumers,
            q.rates.publish,
            q.rates.deliver,
            q.rates.ack
        );
    }
    node.shutdown().await;
    conn.close();
    Ok(())
}
