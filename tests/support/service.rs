//! The service fault tests call: an echo with a delay, and a sink that
//! records the numbered one-way messages it receives.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warren::{Address, ContentType, Error, Request, Response};

/// The handler of fault tests: `Echo.say` answers with its body after
/// `delay` (so that calls are in flight when a fault strikes), `Sink.put`
/// records the `u64` it carries.
#[derive(Clone, Debug, Default)]
pub struct Service {
    /// How long `Echo.say` takes.
    pub delay: Duration,
    /// Every `Sink.put` number received.
    pub received: Arc<Mutex<HashSet<u64>>>,
    /// `Sink.put` deliveries, duplicates included.
    pub deliveries: Arc<AtomicUsize>,
}

impl tower::Service<Request> for Service {
    type Response = Response;
    type Error = Error;
    type Future = futures::future::BoxFuture<'static, Result<Response, Error>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            match req.method.as_str() {
                "Sink.put" => {
                    let n: u64 = req.decode()?;
                    this.received.lock().unwrap().insert(n);
                    this.deliveries.fetch_add(1, Ordering::SeqCst);
                    Ok(Response::ok(req.content_type, bytes::Bytes::new()))
                }
                _ => {
                    tokio::time::sleep(this.delay).await;
                    Ok(Response::ok(req.content_type, req.body))
                }
            }
        })
    }
}

/// An echo call to `address` with `timeout`.
pub fn echo(address: &Address, timeout: Duration) -> Request {
    Request::encode(address.clone(), "Echo.say", ContentType::MsgPack, &"ping")
        .unwrap()
        .with_timeout(timeout)
}
