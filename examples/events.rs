//! Run with: `scripts/broker start && WARREN_AMQP_URL=$(scripts/broker url) cargo run --example events`
//!
//! The ticket flow of a property-management system: `tickets` publishes
//! `ticket.created` and `ticket.status_changed`; `notifications` subscribes
//! to `*.created`, `*.status_changed` and `payment.*`; `search` to
//! `ticket.created`. One notification fails twice and succeeds on its third
//! try; one event ends in the dead-letter queue and is replayed once the
//! fault is fixed.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::{service_fn, BoxError};
use warren::events::{DeadLetters, Delivery, Publisher, RetryPolicy, Subscription};
use warren::{Config, Connection, Error};

#[derive(Debug, Serialize, Deserialize, warren::Event)]
#[event(name = "ticket.created", version = 1)]
struct TicketCreated {
    id: u64,
    unit: String,
    title: String,
}

#[derive(Debug, Serialize, Deserialize, warren::Event)]
#[event(name = "ticket.status_changed", version = 1)]
struct StatusChanged {
    id: u64,
    status: String,
}

#[derive(Debug, Serialize, Deserialize, warren::Event)]
#[event(name = "payment.failed", version = 1)]
struct PaymentFailed {
    unit: String,
    amount_cents: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let conn = Connection::connect(Config::from_env()?).await?;
    // The mail server is down until we "fix" it below.
    let mail_up = Arc::new(AtomicBool::new(false));

    let up = mail_up.clone();
    let notifications = Subscription::new("notifications")
        .on_pattern(
            "*.created",
            service_fn(|d: Delivery<serde_json::Value>| async move {
                // The SMS gateway times out twice, then delivers.
                if d.attempt < 3 {
                    println!(
                        "notifications: sms for {} failed (attempt {})",
                        d.meta.event_type, d.attempt
                    );
                    return Err(BoxError::from("sms gateway timeout"));
                }
                println!(
                    "notifications: sms sent for {} on attempt {}",
                    d.meta.event_type, d.attempt
                );
                Ok(())
            }),
        )
        .on_pattern(
            "*.status_changed",
            service_fn(|d: Delivery<serde_json::Value>| async move {
                println!("notifications: tenant told of {}", d.payload);
                Ok::<_, Error>(())
            }),
        )
        .on_pattern(
            "payment.*",
            service_fn(move |d: Delivery<serde_json::Value>| {
                let up = up.load(Ordering::SeqCst);
                async move {
                    if up {
                        println!("notifications: dunning mail sent for {}", d.payload);
                        Ok(())
                    } else {
                        Err(BoxError::from("mail server down"))
                    }
                }
            }),
        )
        .retry(RetryPolicy::delays(
            [0, 200, 400].map(Duration::from_millis),
        ))
        .idempotent()
        .start(&conn)
        .await?;
    let search = Subscription::new("search")
        .on(service_fn(|d: Delivery<TicketCreated>| async move {
            println!(
                "search: indexed ticket {} ({}: {})",
                d.payload.id, d.payload.unit, d.payload.title
            );
            Ok::<_, Error>(())
        }))
        .start(&conn)
        .await?;

    let tickets = Publisher::new(&conn);
    tickets
        .publish(&TicketCreated {
            id: 1,
            unit: "4B".into(),
            title: "Leaking tap".into(),
        })
        .await?;
    tickets
        .publish(&StatusChanged {
            id: 1,
            status: "plumber booked".into(),
        })
        .await?;
    let billing = Publisher::new(&conn);
    billing
        .publish(&PaymentFailed {
            unit: "4B".into(),
            amount_cents: 95_000,
        })
        .await?;

    let dlq = DeadLetters::new(&conn, "notifications");
    while dlq.count().await? == 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for letter in dlq.peek(10).await? {
        println!(
            "dead letter: {} after {} attempts: {}",
            letter.event_type.unwrap_or_default(),
            letter.attempts,
            letter.reason.unwrap_or_default()
        );
    }
    mail_up.store(true, Ordering::SeqCst);
    println!("replayed {} event(s)", dlq.replay(10).await?);
    tokio::time::sleep(Duration::from_secs(1)).await;

    notifications.shutdown().await;
    search.shutdown().await;
    Ok(())
}
