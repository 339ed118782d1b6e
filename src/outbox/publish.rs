//! Publishing a batch of outbox rows through the events [`Publisher`]: in
//! order within each ordering key, keys side by side.

use super::backend::Row;
use super::tables::time_of;
use crate::error::Error;
use crate::events::{Outgoing, Publisher};
use crate::tracecontext::TRACEPARENT;
use crate::{Address, Client, ContentType, Delivery, Request};
use futures::StreamExt;
use std::collections::HashMap;

/// What a batch came to: the rows published (their ids), and the first
/// failure, if one stopped a key.
#[derive(Debug, Default)]
pub struct Published {
    /// The ids of the rows the broker confirmed.
    pub sent: Vec<i64>,
    /// Why a key stopped, if one did.
    pub error: Option<Error>,
}

/// The relay's publisher, and how many keys it publishes at once.
#[derive(Debug)]
pub struct Publishing {
    publisher: Publisher,
    client: Client,
    concurrency: usize,
    pipeline: usize,
    /// The relay's own id, for the lease.
    pub(crate) relay: String,
}

impl Publishing {
    pub(crate) fn new(publisher: Publisher, concurrency: usize, pipeline: usize) -> Self {
        Self {
            client: Client::new(publisher.connection()),
            publisher,
            concurrency: concurrency.max(1),
            pipeline: pipeline.max(1),
            relay: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// Publishes `rows` (oldest first): each key's rows in order on one
    /// channel, up to `pipeline` of them before their confirms are awaited
    /// (the broker keeps a channel's order); a key stops at its first
    /// failure, and what follows it is left for the next round.
    pub async fn publish(&self, rows: Vec<Row>) -> Published {
        let mut order: Vec<Vec<Row>> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for row in rows {
            let i = *index.entry(row.key.clone()).or_insert_with(|| {
                order.push(Vec::new());
                order.len() - 1
            });
            order[i].push(row);
        }
        let mut results = futures::stream::iter(order)
            .map(|rows| self.publish_key(rows))
            .buffer_unordered(self.concurrency);
        let mut published = Published::default();
        while let Some((sent, error)) = results.next().await {
            published.sent.extend(sent);
            if published.error.is_none() {
                published.error = error;
            }
        }
        published
    }

    async fn publish_key(&self, rows: Vec<Row>) -> (Vec<i64>, Option<Error>) {
        let mut sent = Vec::with_capacity(rows.len());
        let mut rest = &rows[..];
        while !rest.is_empty() {
            // A one-way request on its own; else the events up to the next
            // request, at most `pipeline` of them, together.
            let (done, error) = if rest[0].address.is_some() {
                match self.send(&rest[0]).await {
                    Ok(()) => (1, None),
                    Err(e) => (0, Some(e)),
                }
            } else {
                let events = rest
                    .iter()
                    .take(self.pipeline)
                    .take_while(|r| r.address.is_none())
                    .count();
                self.publish_events(&rest[..events]).await
            };
            sent.extend(rest[..done].iter().map(|r| r.id));
            if error.is_some() {
                return (sent, error);
            }
            rest = &rest[done..];
        }
        (sent, None)
    }

    /// Publishes event `rows` pipelined: how many were settled, and the
    /// error that stopped the rest.
    async fn publish_events(&self, rows: &[Row]) -> (usize, Option<Error>) {
        let mut ready = Vec::with_capacity(rows.len());
        for row in rows {
            match self.outgoing(row) {
                Ok(out) => ready.push(out),
                // The rows before it go out; it stops the key.
                Err(e) => {
                    let (done, error) = self.publisher.publish_in_order(&ready).await;
                    return (done, Some(error.unwrap_or(e)));
                }
            }
        }
        self.publisher.publish_in_order(&ready).await
    }

    /// Sends the one-way request in `row`, with the message id it got when
    /// added, and returns once the broker confirmed it.
    async fn send(&self, row: &Row) -> Result<(), Error> {
        let address: Address = row.address.as_deref().unwrap_or_default().parse()?;
        let mut request = Request::new(
            address,
            row.event_type.clone(),
            ContentType::Json,
            row.payload.clone().into_bytes(),
        )?
        .with_delivery(Delivery::OneWay);
        request.message_id = Some(row.event_id.clone());
        if let Some(tp) = &row.traceparent {
            request.headers.insert(TRACEPARENT, tp.clone());
        }
        self.client.call(request).await.map(drop)
    }

    /// The message for `row`, with the eventId and time it got when added.
    fn outgoing(&self, row: &Row) -> Result<Outgoing, Error> {
        let payload: serde_json::Value = serde_json::from_str(&row.payload).map_err(|e| {
            Error::Codec(crate::codec::CodecError::Decode {
                content_type: crate::ContentType::Json,
                message: format!("outbox row {} ({}): {e}", row.id, row.event_id),
            })
        })?;
        let version = u32::try_from(row.version).unwrap_or(1);
        self.publisher.outgoing(
            &row.event_id,
            &row.event_type,
            version,
            time_of(row.created_ms),
            row.traceparent.as_deref(),
            &payload,
        )
    }
}
