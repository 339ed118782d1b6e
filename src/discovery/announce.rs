//! Announcements: a node serving HTTP tells the others its URL, on the
//! broker, when it starts and then periodically; callers listen and learn
//! where to go when the broker is down.
//!
//! An announcement is a JSON object published on the topic exchange with
//! routing key `warren.announce`:
//! `{"id": "calc-1", "type": "calc", "http_url": "http://10.0.0.5:8080", "interval_ms": 10000,
//! "methods": ["Calc.add"]}` (`methods` when the node knows them).
//! A listener forgets an instance not heard from in `3 × interval_ms`.

use super::peers::{Peers, WeakPeers};
use crate::address::{ServiceId, ServiceType};
use crate::amqp::connection::{until_closed, Link, Links};
use crate::amqp::{declare_exchange, Connection};
use futures::{FutureExt, StreamExt};
use lapin::options::BasicPublishOptions;
use lapin::BasicProperties;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, warn};

/// The routing key of announcements on the topic exchange.
pub const ANNOUNCE_KEY: &str = "warren.announce";

/// What a node says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// The instance id.
    pub id: String,
    /// The service type.
    #[serde(rename = "type")]
    pub service: String,
    /// The base URL of its HTTP endpoint.
    pub http_url: String,
    /// How often it announces itself, in milliseconds.
    pub interval_ms: u64,
    /// The wire names of the methods it serves (`Calculator.add`), when it
    /// says; absent from the JSON when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}

/// Announces `what` every `every` on each connection until `stop` turns
/// true, while the node consumes on that connection (`consuming` holds its
/// generation): a caller that hears the announcement may send over the
/// broker again, so it must not come before the node takes requests there.
pub(crate) async fn announce(
    conn: Connection,
    what: Announcement,
    every: Duration,
    mut consuming: watch::Receiver<Option<u64>>,
    mut stop: watch::Receiver<bool>,
) {
    let body = match serde_json::to_vec(&what) {
        Ok(b) => b,
        Err(e) => return warn!(error = %e, "cannot encode the announcement"),
    };
    let ttl_ms = every.saturating_mul(3).as_millis().max(1).to_string();
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_type(ANNOUNCE_KEY.into())
        .with_expiration(ttl_ms.into());
    let exchange_name = conn.config().exchange.as_str();
    let mut links = conn.link();
    let mut relink = Links::new(&conn);
    'links: while let Some(link) = relink.next(until_closed(&mut stop)).await {
        let opened = async {
            let channel = link.conn.create_channel().await?;
            declare_exchange(&channel, exchange_name.into()).await?;
            Ok::<_, lapin::Error>(channel)
        };
        let Ok(channel) = opened.await.inspect_err(|e| {
            debug!(error = %e, "cannot open the announcement channel; retrying");
        }) else {
            continue;
        };
        let gen = Some(link.generation);
        let replaced = |l: &Option<Link>| l.as_ref().map(|l| l.generation) != gen;
        loop {
            tokio::select! {
                r = consuming.wait_for(|g| *g == gen) => if r.is_err() { return },
                _ = links.wait_for(replaced) => continue 'links,
                () = until_closed(&mut stop) => return,
            }
            let sent = channel
                .basic_publish(
                    exchange_name.into(),
                    ANNOUNCE_KEY.into(),
                    BasicPublishOptions::default(),
                    &body,
                    props.clone(),
                )
                .await;
            if let Err(e) = sent {
                debug!(error = %e, "announcement not sent; opening another channel");
                continue 'links;
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                // A new connection: announce there as soon as the node
                // consumes, not a period later.
                () = links.wait_for(replaced).map(drop) => {
                    continue 'links;
                }
                () = until_closed(&mut stop) => {
                    let _ = channel.close(200, "node stopped".into()).await;
                    return;
                }
            }
        }
    }
}

impl Peers {
    /// Learns peers from the announcements on `conn`'s exchange while the
    /// connection is up, in a background task that lives as long as this
    /// registry (any clone of it) and the connection.
    pub fn learn_from(&self, conn: &Connection) {
        tokio::spawn(learn(conn.clone(), self.downgrade()));
    }
}

async fn learn(conn: Connection, peers: WeakPeers) {
    let mut links = Links::new(&conn);
    while let Some(link) = links.next(std::future::pending()).await {
        let Ok((channel, consumer)) = subscribe(&link, &conn.config().exchange)
            .await
            .inspect_err(|e| debug!(error = %e, "cannot listen to announcements; retrying"))
        else {
            continue;
        };
        match peers.upgrade() {
            Some(p) => p.listening(true),
            None => return,
        }
        let alive = listen(consumer, channel, &conn, &peers).await;
        if let Some(p) = peers.upgrade() {
            p.listening(false);
            // Most likely the connection is gone, maybe with the broker:
            // until a peer announces itself again, its node may not
            // consume there.
            p.connection_lost(conn.config().settle);
        }
        if !alive {
            return;
        }
    }
}

/// The announcements' consumer, and its channel's number.
async fn subscribe(
    link: &Link,
    exchange_name: &str,
) -> Result<(u16, lapin::Consumer), lapin::Error> {
    let channel = link.conn.create_channel().await?;
    declare_exchange(&channel, exchange_name.into()).await?;
    let keys = [ANNOUNCE_KEY.into()];
    let consumer = crate::amqp::temporary_consumer(&channel, &exchange_name.into(), keys).await?;
    Ok((channel.id(), consumer))
}

/// Feeds announcements into the registry until the consumer ends (`true`)
/// or the registry is dropped (`false`). `channel` is the consumer's, on
/// `conn`: where a body over the limit was noted when it was dropped.
async fn listen(
    mut consumer: lapin::Consumer,
    channel: u16,
    conn: &Connection,
    peers: &WeakPeers,
) -> bool {
    let mut check = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            d = consumer.next() => match d {
                Some(Ok(d)) => {
                    let Some(p) = peers.upgrade() else { return false };
                    if let Some(size) = conn.oversized(channel, d.delivery_tag, &d.data) {
                        debug!(size, "ignoring an announcement over the body limit");
                        continue;
                    }
                    match read(&d.data) {
                        Some((t, id, url, every, methods)) => p.learn(t, id, url, every, methods),
                        None => debug!("ignoring a malformed announcement"),
                    }
                }
                Some(Err(_)) | None => return true,
            },
            _ = check.tick() => if peers.upgrade().is_none() { return false },
        }
    }
}

fn read(body: &[u8]) -> Option<(ServiceType, ServiceId, String, Duration, Vec<String>)> {
    let a: Announcement = serde_json::from_slice(body).ok()?;
    let url = a.http_url.trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return None;
    }
    Some((
        ServiceType::new(&a.service).ok()?,
        ServiceId::new(&a.id).ok()?,
        url.to_owned(),
        Duration::from_millis(a.interval_ms.max(1)),
        a.methods
            .into_iter()
            .filter(|m| crate::address::check_method(m).is_ok())
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_are_plain_json() {
        let a = Announcement {
            id: "calc-1".into(),
            service: "calc".into(),
            http_url: "http://10.0.0.5:8080/".into(),
            interval_ms: 10_000,
            methods: Vec::new(),
        };
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(
            json,
            r#"{"id":"calc-1","type":"calc","http_url":"http://10.0.0.5:8080/","interval_ms":10000}"#
        );
        let (t, id, url, every, methods) = read(json.as_bytes()).unwrap();
        assert!(methods.is_empty());
        assert_eq!((t.as_str(), id.as_str()), ("calc", "calc-1"));
        assert_eq!(url, "http://10.0.0.5:8080");
        assert_eq!(every, Duration::from_secs(10));
        assert!(
            read(br#"{"id":"a.b","type":"t","http_url":"http://h","interval_ms":1}"#).is_none()
        );
        assert!(read(br#"{"id":"a","type":"t","http_url":"ftp://h","interval_ms":1}"#).is_none());
        let with = br#"{"id":"a","type":"t","http_url":"http://h","interval_ms":1,"methods":["T.m","bad name"]}"#;
        assert_eq!(read(with).unwrap().4, vec!["T.m".to_owned()]);
    }
}
