//! Load for fault tests: concurrent callers that record how each call
//! ended, and the check every fault test makes on the outcome.

use super::service::echo;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tower::ServiceExt;
use warren::{Address, Code, Error, Request, Response};

/// A call of a [`Load`]: (caller, call number of that caller).
pub type CallId = (usize, u64);

/// How one call ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub id: CallId,
    pub started: Instant,
    pub ended: Instant,
    pub timeout: Duration,
    /// `Ok`, or the error's kind and message.
    pub result: Result<(), String>,
    /// The transport that answered (`amqp`, `http`), if one did.
    pub transport: Option<&'static str>,
}

impl Outcome {
    pub fn took(&self) -> Duration {
        self.ended - self.started
    }
}

/// Callers calling in a loop until stopped.
#[derive(Debug)]
pub struct Load {
    stop: watch::Sender<bool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    /// The call each caller is making now, if any.
    running: Arc<Mutex<Vec<Option<CallId>>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    timeout: Duration,
}

impl Load {
    /// `callers` tasks calling `address` through `client` (a `warren::Client`,
    /// or any transport such as the HTTP fallback), each call with `timeout`.
    pub fn start<S>(client: &S, address: &Address, callers: usize, timeout: Duration) -> Self
    where
        S: tower::Service<Request, Response = Response, Error = Error> + Clone + Send + 'static,
        S::Future: Send,
    {
        let (stop, _) = watch::channel(false);
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(Mutex::new(vec![None; callers]));
        let tasks = (0..callers)
            .map(|caller| {
                let (client, address, outcomes) =
                    (client.clone(), address.clone(), outcomes.clone());
                let running = running.clone();
                let stop = stop.subscribe();
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !*stop.borrow() {
                        n += 1;
                        let id = (caller, n);
                        running.lock().unwrap()[caller] = Some(id);
                        let started = Instant::now();
                        let result = client.clone().oneshot(echo(&address, timeout)).await;
                        let ended = Instant::now();
                        running.lock().unwrap()[caller] = None;
                        let transport = result.as_ref().ok().map(|r| r.transport.as_str());
                        let result = result.map(drop).map_err(|e| kind(&e));
                        if result.is_err() {
                            // A failed call may fail at once (fail-fast, no route):
                            // do not spin.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        outcomes.lock().unwrap().push(Outcome {
                            id,
                            started,
                            ended,
                            timeout,
                            result,
                            transport,
                        });
                    }
                })
            })
            .collect();
        Self {
            stop,
            outcomes,
            running,
            tasks,
            timeout,
        }
    }

    /// The calls running now.
    pub fn in_flight(&self) -> Vec<CallId> {
        self.running
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .copied()
            .collect()
    }

    /// Waits until the calls `ids` ended (bounded by `within`) and returns how.
    pub async fn ended(&self, ids: &[CallId], within: Duration) -> Vec<Outcome> {
        let outcomes = self
            .wait_for(within, |all| {
                ids.iter().all(|id| all.iter().any(|o| o.id == *id))
            })
            .await;
        outcomes
            .into_iter()
            .filter(|o| ids.contains(&o.id))
            .collect()
    }

    /// The outcomes so far.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.lock().unwrap().clone()
    }

    /// Waits until at least `n` calls started after `after` succeeded
    /// (bounded by `within`), and says when the first of them ended.
    pub async fn successes_after(&self, after: Instant, n: usize, within: Duration) -> Instant {
        let until = Instant::now() + within;
        loop {
            let mut oks: Vec<Instant> = self
                .outcomes()
                .iter()
                .filter(|o| o.result.is_ok() && o.started > after)
                .map(|o| o.ended)
                .collect();
            if oks.len() >= n {
                oks.sort();
                return oks[0];
            }
            assert!(
                Instant::now() < until,
                "fewer than {n} successful calls within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until the outcomes so far satisfy `done` (bounded by `within`).
    pub async fn wait_for(
        &self,
        within: Duration,
        done: impl Fn(&[Outcome]) -> bool,
    ) -> Vec<Outcome> {
        let until = Instant::now() + within;
        loop {
            let outcomes = self.outcomes();
            if done(&outcomes) {
                return outcomes;
            }
            assert!(
                Instant::now() < until,
                "not there within {within:?}: {outcomes:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the callers; every call still running must end within its deadline.
    pub async fn stop(self) -> Vec<Outcome> {
        self.stop.send_replace(true);
        let bound = self.timeout + Duration::from_secs(1);
        for task in self.tasks {
            tokio::time::timeout(bound, task)
                .await
                .expect("a call hung past its deadline")
                .unwrap();
        }
        let outcomes = self.outcomes.lock().unwrap().clone();
        outcomes
    }
}

/// The error's kind (its variant) and message.
pub fn kind(e: &Error) -> String {
    let k = match e {
        Error::ConnectionLost => "ConnectionLost",
        Error::Unavailable { .. } => "Unavailable",
        Error::Timeout { .. } => "Timeout",
        Error::NoRoute { .. } => "NoRoute",
        Error::Remote(s) if *s.code() == Code::DeadlineExceeded => "DeadlineExceeded",
        Error::Remote(_) => "Remote",
        Error::Shutdown => "Shutdown",
        _ => "Other",
    };
    format!("{k}: {e}")
}

/// Asserts what every fault test promises: each call ended within its
/// deadline plus 500 ms, with a reply or a typed error saying why; and
/// returns how many ended each way.
pub fn check(outcomes: &[Outcome]) -> Vec<(String, usize)> {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for o in outcomes {
        assert!(
            o.took() <= o.timeout + Duration::from_millis(500),
            "a call took {:?} with a deadline of {:?}: {:?}",
            o.took(),
            o.timeout,
            o.result
        );
        let k = match &o.result {
            Ok(()) => "Ok".to_owned(),
            Err(e) => e.split(':').next().unwrap().to_owned(),
        };
        assert!(
            [
                "Ok",
                "ConnectionLost",
                "Unavailable",
                "Timeout",
                "DeadlineExceeded"
            ]
            .contains(&k.as_str()),
            "unexpected outcome {:?}",
            o.result
        );
        *counts.entry(k).or_default() += 1;
    }
    counts.into_iter().collect()
}
