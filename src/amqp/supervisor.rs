//! The supervisor task behind a [`Connection`](super::Connection): connects
//! (each URL in turn, with backoff), watches the connection (closed socket,
//! missed heartbeats, `connection.blocked`), and on loss starts over. It
//! logs each change of state once; failed attempts only at debug level.
//!
//! A failure retrying cannot fix (a refused login, an unknown vhost, TLS
//! spoken to a plain port: `refusal.rs`) ends the supervisor at once if the
//! connection was never up: the configuration is wrong, and
//! [`Connection::connect`](super::Connection::connect) says which setting.
//! Once a connection was up the configuration was right, so such a failure
//! means the broker changed (a password rotated, a vhost deleted): it is
//! logged as an error and retried like any other, so that the service heals
//! once the broker is fixed.

use super::bodies::{Filter, Filtered, Kit, Oversized};
use super::connection::{until_closed, ConnectionState, Link, Shared};
use super::refusal::{connect_failure, ConnectFailure};
use crate::config::{BrokerUrl, Config};
use crate::error::Error;
use async_rs::Runtime;
use futures::StreamExt;
use lapin::{ConnectionProperties, Event};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tracing::{debug, error, info, warn};

async fn open(
    config: &Config,
    url: &BrokerUrl,
    oversized: &Arc<Oversized>,
) -> Result<lapin::Connection, ConnectFailure> {
    // (`BrokerUrl` parsed it already.)
    let mut uri: lapin::uri::AMQPUri = url.expose().parse().map_err(|reason| {
        ConnectFailure::Permanent(Error::InvalidUrl {
            url: url.to_string(),
            setting: url.setting().to_owned(),
            reason,
        })
    })?;
    #[cfg(feature = "tls")]
    let tls = tls_config(config, url)?;
    #[cfg(not(feature = "tls"))]
    if config.tls.is_set() {
        return Err(ConnectFailure::Permanent(Error::Config(format!(
            "{}: TLS files need warren's `tls` feature",
            config.tls.setting
        ))));
    }
    if let Some((vhost, _)) = config.vhost_override() {
        uri.vhost = vhost.to_owned();
    }
    if uri.query.heartbeat.is_none() {
        uri.query.heartbeat = Some(config.heartbeat.as_secs().clamp(1, 65_535) as u16);
    }
    let name = config.connection_name.as_deref().unwrap_or("warren");
    let props = ConnectionProperties::default().with_connection_name(name.into());
    // The broker's frames reach lapin through the body filter
    // (`bodies.rs`); with TLS, the filter reads the decrypted stream.
    let amqps = uri.scheme == lapin::uri::AMQPScheme::AMQPS;
    #[cfg(feature = "tls")]
    let tls = amqps.then(|| (config.tls.server_name.clone(), tls));
    let (limit, oversized) = (config.max_body, oversized.clone());
    let runtime = Kit::runtime();
    let connect = async move |uri: lapin::uri::AMQPUri, _: Runtime<Kit>| {
        let host = (uri.authority.host.as_str(), uri.authority.port);
        let addrs: Vec<_> = tokio::net::lookup_host(host).await?.collect();
        let stream =
            lapin::tcp::AsyncTcpStream::connect(&async_rs::Tokio::current(), addrs).await?;
        // The connection goes to the URL's host; the certificate is
        // checked against the server-name override if one is set.
        #[cfg(feature = "tls")]
        let stream = match &tls {
            Some((name, tls)) => {
                let name = name.as_deref().unwrap_or(&uri.authority.host);
                stream.into_tls(name, tls.as_ref()).await?
            }
            None => stream,
        };
        Ok(lapin::tcp::AsyncTcpStream::Plain(Filtered::new(
            stream,
            Filter::new(limit as u64, oversized.clone()),
        )))
    };
    let connect = async {
        #[cfg(not(feature = "tls"))]
        if amqps {
            // lapin's own refusal: no TLS in this build.
            return lapin::Connection::connect_uri(uri, props).await;
        }
        lapin::Connection::connector(uri, runtime, connect, props).await
    };
    match tokio::time::timeout(config.connect_timeout, connect).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(connect_failure(&e, url, config.vhost_override())),
        Err(_) => Err(ConnectFailure::Transient(format!(
            "no answer from {url} within {:?}",
            config.connect_timeout
        ))),
    }
}

/// lapin's TLS configuration from the files of `config.tls`, read now.
#[cfg(feature = "tls")]
fn tls_config(
    config: &Config,
    url: &BrokerUrl,
) -> Result<lapin::tcp::OwnedTLSConfig, ConnectFailure> {
    let mut tls = lapin::tcp::OwnedTLSConfig::default();
    if !config.tls.is_set() {
        return Ok(tls);
    }
    if !url.expose().starts_with("amqps://") {
        return Err(ConnectFailure::Permanent(Error::Config(format!(
            "{} sets TLS files, but {} is amqp://; use amqps:// and the broker's TLS port",
            config.tls.setting,
            url.setting()
        ))));
    }
    let pem = config.tls.read().map_err(ConnectFailure::Permanent)?;
    tls.cert_chain = pem.ca;
    tls.identity = pem
        .client
        .map(|(pem, key)| lapin::tcp::OwnedIdentity::PKCS8 { pem, key });
    Ok(tls)
}

/// Connects and reconnects until closed.
pub(super) async fn supervise(shared: Arc<Shared>) {
    let config = &shared.config;
    let mut closed = shared.closed.subscribe();
    let mut generation = 0u64;
    let mut attempts = 0u32;
    let mut since = SystemTime::now();
    // Where this connection starts: spread over a cluster's nodes, or the first.
    let mut next_url = config.url_order.first(config.urls.len());
    let mut last_error = None::<String>;
    // The last refusal retrying cannot fix, since the last connection.
    let mut refused = None::<Error>;
    'outer: loop {
        if *closed.borrow() {
            break;
        }
        // One round: every URL once, starting from the last that worked (or,
        // after a loss, from the one after it).
        let mut connected = None;
        let mut permanent = None;
        for i in 0..config.urls.len() {
            let idx = (next_url + i) % config.urls.len();
            let url = &config.urls[idx];
            let attempt = tokio::select! {
                r = open(config, url, &shared.oversized) => r,
                () = until_closed(&mut closed) => break 'outer,
            };
            match attempt {
                Ok(conn) => {
                    next_url = idx;
                    connected = Some(conn);
                    break;
                }
                Err(ConnectFailure::Transient(e)) => {
                    debug!(%url, error = %e, "connection attempt failed");
                    last_error = Some(format!("{url}: {e}"));
                }
                Err(ConnectFailure::Permanent(e)) => {
                    debug!(%url, error = %e, "connection attempt refused");
                    last_error = Some(e.to_string());
                    permanent.get_or_insert(e);
                }
            }
        }
        let Some(conn) = connected else {
            if let Some(e) = permanent {
                if generation == 0 {
                    error!(error = %e, "the broker refused the connection; not retrying");
                    refused = Some(e);
                    break 'outer;
                }
                if refused.is_none() {
                    error!(error = %e, "the broker refused the connection; retrying until it is fixed");
                }
                refused = Some(e);
            }
            attempts += 1;
            let err = last_error.clone().unwrap_or_default();
            let delay = if config.backoff.max_attempts.is_some_and(|m| attempts >= m) {
                if !matches!(&*shared.state.borrow(), ConnectionState::Down { .. }) {
                    error!(error = %err, attempts, "cannot reach the broker; still trying");
                }
                shared.state.send_replace(ConnectionState::Down {
                    since,
                    last_error: err,
                });
                config.backoff.max
            } else {
                shared.state.send_replace(ConnectionState::Reconnecting {
                    since,
                    attempts,
                    last_error: Some(err),
                });
                config.backoff.delay(attempts - 1)
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => continue,
                () = until_closed(&mut closed) => break 'outer,
            }
        };

        generation += 1;
        if generation > 1 {
            crate::record::reconnected();
        }
        refused = None;
        let conn = Arc::new(conn);
        let mut events = conn.events_listener();
        info!(url = %config.urls[next_url], generation, "connected to the broker");
        attempts = 0;
        shared.state.send_replace(ConnectionState::Connected {
            since: SystemTime::now(),
            blocked: None,
        });
        shared.link.send_replace(Some(Link {
            conn: conn.clone(),
            generation,
            connected_at: std::time::Instant::now(),
        }));

        // Watch the connection: lapin reports most losses as events; the
        // status poll catches the rest (a close that raised no event).
        let mut poll = tokio::time::interval(Duration::from_millis(250));
        let set_blocked = |reason: Option<String>| {
            shared.state.send_modify(|s| {
                if let ConnectionState::Connected { blocked, .. } = s {
                    *blocked = reason;
                }
            });
        };
        let lost = loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Event::ConnectionBlocked(reason)) => {
                        warn!(%reason, "the broker blocked publishing");
                        set_blocked(Some(reason));
                    }
                    Some(Event::ConnectionUnblocked) => {
                        info!("the broker unblocked publishing");
                        set_blocked(None);
                    }
                    Some(Event::Error(e)) if !conn.status().connected() => break e.to_string(),
                    Some(_) => {}
                    None => break "the connection's event stream ended".to_owned(),
                },
                _ = poll.tick() => {
                    if !conn.status().connected() {
                        break "the connection is no longer open".to_owned();
                    }
                }
                () = until_closed(&mut closed) => {
                    shared.link.send_replace(None);
                    let _ = conn.close(200, "closing".into()).await;
                    break 'outer;
                }
            }
        };
        warn!(error = %lost, generation, "lost the broker connection; reconnecting");
        // Its node may be the one that died: try the others first.
        next_url = (next_url + 1) % config.urls.len();
        shared.link.send_replace(None);
        since = SystemTime::now();
        last_error = Some(lost.clone());
        shared.state.send_replace(ConnectionState::Reconnecting {
            since,
            attempts: 0,
            last_error: Some(lost),
        });
        // Make sure lapin's side is torn down too (a stalled socket), without
        // holding up the next attempt.
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(1), conn.close(320, "lost".into())).await;
        });
    }
    shared.link.send_replace(None);
    match refused.filter(|_| generation == 0) {
        Some(e) => {
            // Clients and nodes waiting for a connection stop, and say why
            // (the error is in place before anyone sees the state).
            let reason = e.to_string();
            let _ = shared.refused.set(e);
            shared
                .state
                .send_replace(ConnectionState::Refused { reason });
            shared.closed.send_replace(true);
        }
        None => {
            shared.state.send_replace(ConnectionState::Closed);
            info!("broker connection closed");
        }
    }
}
