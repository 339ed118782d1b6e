//! Senders of numbered one-way messages for fault tests, and the check
//! that every confirmed one arrived.

use super::load::kind;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use warren::{Address, Client, ContentType, Delivery, Request};

/// One send: its number, how it ended, how long it took.
#[derive(Debug, Clone)]
pub struct Sent {
    pub n: u64,
    pub result: Result<(), String>,
    pub took: Duration,
}

/// Senders of numbered one-way `Sink.put` messages, in a loop until stopped.
#[derive(Debug)]
pub struct Sends {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Sent>>>,
    timeout: Duration,
}

impl Sends {
    /// `senders` tasks sending to `address`, each send with `timeout`.
    pub fn start(client: &Client, address: &Address, senders: u64, timeout: Duration) -> Self {
        let (stop, _) = watch::channel(false);
        let tasks = (0..senders)
            .map(|s| {
                let (client, address) = (client.clone(), address.clone());
                let stop = stop.subscribe();
                tokio::spawn(async move {
                    let mut sent = Vec::new();
                    let mut n = s << 32;
                    while !*stop.borrow() {
                        n += 1;
                        let req =
                            Request::encode(address.clone(), "Sink.put", ContentType::MsgPack, &n)
                                .unwrap()
                                .with_timeout(timeout);
                        let start = Instant::now();
                        let result = client
                            .call(req.with_delivery(Delivery::OneWay))
                            .await
                            .map(drop)
                            .map_err(|e| kind(&e));
                        sent.push(Sent {
                            n,
                            result,
                            took: start.elapsed(),
                        });
                    }
                    sent
                })
            })
            .collect();
        Self {
            stop,
            tasks,
            timeout,
        }
    }

    /// Stops sending; returns every send.
    pub async fn stop(self) -> Vec<Sent> {
        self.stop.send_replace(true);
        let mut all = Vec::new();
        for task in self.tasks {
            let sent = tokio::time::timeout(self.timeout + Duration::from_secs(1), task)
                .await
                .expect("a send hung past its deadline")
                .unwrap();
            all.extend(sent);
        }
        all
    }
}

/// Waits until every number whose send returned `Ok` was received (bounded
/// by `within`); returns how many were confirmed.
pub async fn all_received(
    sent: &[Sent],
    received: &Mutex<HashSet<u64>>,
    within: Duration,
) -> usize {
    let confirmed: Vec<u64> = sent
        .iter()
        .filter(|s| s.result.is_ok())
        .map(|s| s.n)
        .collect();
    let until = Instant::now() + within;
    loop {
        let missing: Vec<u64> = {
            let got = received.lock().unwrap();
            confirmed
                .iter()
                .filter(|n| !got.contains(n))
                .copied()
                .collect()
        };
        if missing.is_empty() {
            return confirmed.len();
        }
        assert!(
            Instant::now() < until,
            "{} of {} confirmed sends never arrived: {missing:?}",
            missing.len(),
            confirmed.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
