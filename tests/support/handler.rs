//! A handler for tests: echoes, sleeps, fails and panics on request, and
//! counts every request that reached it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tower::service_fn;
use tower::util::BoxCloneSyncService;
use warren::{Code, Error, Request, Response, Status};

/// Any handler a node can serve.
pub type Handler = BoxCloneSyncService<Request, Response, Error>;

/// How many requests reached a handler, a way to wait for more, and the
/// gate that `Echo.hold` waits at.
#[derive(Clone, Debug)]
pub struct Hits {
    count: Arc<watch::Sender<usize>>,
    gate: Arc<watch::Sender<bool>>,
}

impl Default for Hits {
    fn default() -> Self {
        Self {
            count: Arc::new(watch::channel(0).0),
            gate: Arc::new(watch::channel(false).0),
        }
    }
}

impl Hits {
    /// Requests counted so far.
    pub fn count(&self) -> usize {
        *self.count.borrow()
    }

    /// Counts one request.
    pub fn hit(&self) {
        self.count.send_modify(|n| *n += 1);
    }

    /// Lets every `Echo.hold`, running or to come, finish.
    pub fn release(&self) {
        self.gate.send_replace(true);
    }

    /// Waits until [`Hits::release`] was called.
    pub async fn held(&self) {
        let mut rx = self.gate.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }

    /// Waits until at least `n` requests came; fails the test after 10 s.
    pub async fn wait_for(&self, n: usize) {
        let mut rx = self.count.subscribe();
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("waited 10 s for {n} requests; {} came", self.count()))
            .expect("the counter lives as long as the handler");
    }
}

/// The application error `Echo.fail` returns, with details.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Refused {
    /// Why.
    pub reason: String,
    /// A number for the details to carry.
    pub attempt: u32,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused: {}", self.reason)
    }
}

/// The test handler. Methods:
/// - `Echo.say`: replies with the request body, unchanged.
/// - `Echo.upper`: decodes a string and replies with it in upper case.
/// - `Echo.sleep`: decodes milliseconds, sleeps that long, replies with them.
/// - `Echo.hold`: waits for [`Hits::release`], then echoes the body.
/// - `Echo.fail`: an application error with [`Refused`] as details.
/// - `Echo.panic`: panics.
/// - anything else: `unknown_method`.
pub fn echo(hits: &Hits) -> Handler {
    let hits = hits.clone();
    BoxCloneSyncService::new(service_fn(move |req: Request| {
        hits.hit();
        let hits = hits.clone();
        async move {
            let ct = req.content_type;
            match req.method.as_str() {
                "Echo.say" => Ok(Response::ok(ct, req.body)),
                "Echo.upper" => Response::encode(ct, &req.decode::<String>()?.to_uppercase()),
                "Echo.sleep" => {
                    let ms = req.decode::<u64>()?;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Response::encode(ct, &ms)
                }
                "Echo.hold" => {
                    hits.held().await;
                    Ok(Response::ok(ct, req.body))
                }
                "Echo.fail" => {
                    let refused = Refused {
                        reason: req.decode::<String>()?,
                        attempt: 3,
                    };
                    Err(Error::Remote(Status::application(&refused, ct)?))
                }
                "Echo.panic" => panic!("asked to panic"),
                other => Err(Error::Remote(Status::new(
                    Code::UnknownMethod,
                    format!("no method `{other}`"),
                ))),
            }
        }
    }))
}
