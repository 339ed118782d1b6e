//! A node with a 1 MiB body limit and 8 MiB of bodies in flight at most:
//! a 32 MiB request is refused with `payload_too_large` without the node
//! ever holding it, and the node goes on serving.
//!
//! Run with: `scripts/broker start && WARREN_AMQP_URL=$(scripts/broker url) cargo run --example body_limit`
use std::time::Duration;
use tower::service_fn;
use warren::{Address, Client, Code, Config, Connection, ContentType, Error, Node, Request};
use warren::{Response, ServiceType};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // The node's limits (WARREN_MAX_BODY, WARREN_BODY_BUDGET): prefetch
    // 8 MiB / 1 MiB = 8, so at most 8 MiB of bodies wait in the node.
    let node_config = Config::from_env()?
        .max_body(1024 * 1024)
        .body_budget(8 * 1024 * 1024);
    let node_conn = Connection::connect(node_config).await?;
    let service = ServiceType::new("uploads")?;
    let node = Node::builder(service.clone())
        .serve(
            &node_conn,
            service_fn(|req: Request| async move {
                Ok::<_, Error>(Response::ok(req.content_type, req.body.len().to_string()))
            }),
        )
        .await?;

    // A caller that allows itself large requests.
    let conn = Connection::connect(
        Config::from_env()?
            .max_body(64 * 1024 * 1024)
            .default_timeout(Duration::from_secs(60)),
    )
    .await?;
    let client = Client::new(&conn);
    let address = Address::Any(service);
    let big = Request::new(
        address.clone(),
        "Upload.put",
        ContentType::Json,
        vec![0; 32 << 20],
    )?;
    match client.call(big).await {
        Err(Error::Remote(status)) if status.code() == &Code::PayloadTooLarge => {
            println!("refused: {}", status.message());
        }
        other => println!("unexpected: {:?}", other.map(|r| r.body.len())),
    }
    let small = Request::new(address, "Upload.put", ContentType::Json, vec![0; 1000])?;
    let reply = client.call(small).await?;
    println!("stored {} bytes", String::from_utf8_lossy(&reply.body));
    node.shutdown().await;
    Ok(())
}
