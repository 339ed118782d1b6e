//! Raw AMQP for tests: publish messages with any properties and body (the
//! malformed ones warren's client would never send) and read the replies
//! and dead letters they cause.

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};
use std::time::Duration;
use warren::{Code, ContentType, Status};

/// The direct reply-to pseudo queue.
pub const REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// A plain lapin connection with a channel that takes direct replies.
pub struct Raw {
    _conn: Connection,
    /// The channel everything is published on.
    pub channel: Channel,
    replies: Consumer,
}

impl Raw {
    /// Connects to the test broker and starts consuming direct replies.
    pub async fn open() -> Self {
        let conn = Connection::connect(&super::url(), ConnectionProperties::default())
            .await
            .expect("raw connection to the test broker");
        let channel = conn.create_channel().await.expect("raw channel");
        let replies = channel
            .basic_consume(
                REPLY_TO.into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume direct replies");
        Self {
            _conn: conn,
            channel,
            replies,
        }
    }

    /// Publishes `body` with `props` and waits until the broker has it.
    pub async fn publish(&self, exchange: &str, key: &str, props: BasicProperties, body: &[u8]) {
        self.channel
            .basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .expect("raw publish")
            .await
            .expect("raw publish confirmation");
    }

    /// The next direct reply; fails the test if none comes within 10 s.
    pub async fn reply(&mut self) -> Delivery {
        next(&mut self.replies).await
    }

    /// A fanout exchange and a queue bound to it, both of this test alone,
    /// for a node's `dead_letter_exchange`. Returns the exchange's name and
    /// a consumer of the queue.
    pub async fn dead_letters(&self) -> (String, Consumer) {
        let exchange = super::unique("dlx");
        self.channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    auto_delete: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare the dead-letter exchange");
        let queue = super::unique("dlq");
        self.channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare the dead-letter queue");
        self.channel
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind the dead-letter queue");
        let consumer = self
            .channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume the dead-letter queue");
        (exchange, consumer)
    }

    /// How many messages wait in `queue` (which must exist).
    pub async fn depth(&self, queue: &str) -> u32 {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("the queue exists")
            .message_count()
    }
}

/// The next delivery of `consumer`; fails the test if none comes within 10 s.
pub async fn next(consumer: &mut Consumer) -> Delivery {
    tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a delivery within 10 s")
        .expect("the consumer is open")
        .expect("a delivery, not an error")
}

/// Properties of a call: `method` as `type` (if any), `content_type` (if
/// any), a correlation id and `reply_to` set to direct reply-to.
pub fn call(
    method: Option<&str>,
    content_type: Option<&str>,
    correlation_id: &str,
) -> BasicProperties {
    let mut props = BasicProperties::default()
        .with_correlation_id(correlation_id.into())
        .with_reply_to(REPLY_TO.into());
    if let Some(m) = method {
        props = props.with_type(m.into());
    }
    if let Some(ct) = content_type {
        props = props.with_content_type(ct.into());
    }
    props
}

/// Adds a header holding a string.
pub fn with_header(props: BasicProperties, name: &str, value: AMQPValue) -> BasicProperties {
    let mut table = props.headers().clone().unwrap_or_default();
    table.insert(ShortString::from(name), value);
    props.with_headers(table)
}

/// The correlation id of a delivery, as text.
pub fn correlation_id(d: &Delivery) -> Option<&str> {
    d.properties
        .correlation_id()
        .as_ref()
        .map(ShortString::as_str)
}

/// The status a reply carries: its `x-status` header (absent means ok) and,
/// for an error, the status object in its body.
pub fn status(d: &Delivery) -> Status {
    let code = d
        .properties
        .headers()
        .as_ref()
        .and_then(|t| t.inner().get("x-status").cloned())
        .map_or(Code::Ok, |v| match v {
            AMQPValue::LongString(s) => Code::from_wire(&String::from_utf8_lossy(s.as_bytes())),
            other => panic!("x-status is not a string: {other:?}"),
        });
    let ct = d
        .properties
        .content_type()
        .as_ref()
        .map_or(ContentType::Json, |c| {
            ContentType::parse(c.as_str()).expect("a known codec")
        });
    Status::from_body(code, ct, d.data.clone().into())
}

/// Why the broker dead-lettered `d` (the `reason` of its first `x-death`).
pub fn death_reason(d: &Delivery) -> String {
    let headers = d
        .properties
        .headers()
        .as_ref()
        .expect("dead letters have headers");
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("no x-death header: {headers:?}");
    };
    let Some(AMQPValue::FieldTable(first)) = deaths.as_slice().first() else {
        panic!("empty x-death: {deaths:?}");
    };
    match first.inner().get("reason") {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("x-death without a reason: {other:?}"),
    }
}
