//! Publishing a batch of outbox rows through the events [`Publisher`]: in
//! order within each ordering key, keys side by side.

use super::backend::Row;
use super::tables::time_of;
use crate::error::Error;
use crate::events::Publisher;
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
    concurrency: usize,
}

impl Publishing {
    pub(crate) fn new(publisher: Publisher, concurrency: usize) -> Self {
        Self {
            publisher,
            concurrency: concurrency.max(1),
        }
    }

    /// Publishes `rows` (oldest first): each key's rows one after the
    /// other, each after the previous one's confirm, so that they reach
    /// the broker in order; a key stops at its first failure, so that a
    /// later event of that key never overtakes an earlier one.
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
        for row in rows {
            match self.publish_row(&row).await {
                Ok(()) => sent.push(row.id),
                Err(e) => return (sent, Some(e)),
            }
        }
        (sent, None)
    }

    async fn publish_row(&self, row: &Row) -> Result<(), Error> {
        let payload: serde_json::Value = serde_json::from_str(&row.payload).map_err(|e| {
            Error::Codec(crate::codec::CodecError::Decode {
                content_type: crate::ContentType::Json,
                message: format!("outbox row {} ({}): {e}", row.id, row.event_id),
            })
        })?;
        let version = u32::try_from(row.version).unwrap_or(1);
        match self
            .publisher
            .publish_with_id(
                &row.event_id,
                &row.event_type,
                version,
                time_of(row.created_ms),
                row.traceparent.as_deref(),
                &payload,
            )
            .await
        {
            // Dropped by the broker as the publisher's policy says: it
            // counts it and logs it; nothing waits for it here.
            Ok(()) | Err(Error::Unroutable { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
