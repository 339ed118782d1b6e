//! What a subscription's handlers receive, how they fail, and how a typed
//! handler becomes the one shape the runner calls.

use super::envelope::{read_payload, EventMeta, Format};
use super::Event;
use futures::future::BoxFuture;
use futures::FutureExt;
use std::collections::HashMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use tower::{BoxError, Service, ServiceExt};

/// One event as a handler gets it: its meta data and its payload (the
/// [`Event`] type for a typed handler, a [`serde_json::Value`] for a
/// pattern handler).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Delivery<T> {
    /// The eventId, type, version, timestamp and routing key.
    pub meta: EventMeta,
    /// The payload (upcast to the handler's version, if an upcaster did).
    pub payload: T,
    /// Which attempt this is: 1 the first time, 2 on the first retry, ….
    pub attempt: u32,
}

/// A handler's failure that retrying cannot fix: the event goes to the
/// dead-letter queue at once. Return it (through [`permanent`]) from a
/// handler; any other error is retried.
#[derive(Debug)]
pub struct Permanent(pub BoxError);

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Permanent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Marks `error` as permanent: no retries, straight to the dead-letter
/// queue.
pub fn permanent(error: impl Into<BoxError>) -> BoxError {
    Box::new(Permanent(error.into()))
}

/// How handling one event ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Handled: ack.
    Done,
    /// Failed; retry (or dead-letter once the retries are spent).
    Retry(String),
    /// Cannot succeed: dead-letter at once.
    Dead(String),
}

/// Turns a payload written with one version into the next version's.
pub(crate) type Upcaster =
    std::sync::Arc<dyn Fn(serde_json::Value) -> Result<serde_json::Value, String> + Send + Sync>;

/// A handler of any payload type, as the runner calls it.
pub(crate) type Erased = Box<
    dyn Fn(EventMeta, u32, &[u8], Format, &Upcasters) -> BoxFuture<'static, Outcome> + Send + Sync,
>;

/// The upcasters of a subscription: (event type, from version) → to the
/// next version.
pub(crate) type Upcasters = HashMap<(String, u32), Upcaster>;

/// Runs `handler` on a decoded payload, turning its failures, and panics,
/// into an [`Outcome`].
async fn run<T, S>(handler: S, delivery: Delivery<T>) -> Outcome
where
    S: Service<Delivery<T>, Response = ()>,
    S::Error: Into<BoxError>,
{
    let event_type = delivery.meta.event_type.clone();
    match AssertUnwindSafe(handler.oneshot(delivery))
        .catch_unwind()
        .await
    {
        Ok(Ok(())) => Outcome::Done,
        Ok(Err(e)) => {
            let e: BoxError = e.into();
            match e.downcast::<Permanent>() {
                Ok(p) => Outcome::Dead(format!("the handler failed permanently: {p}")),
                Err(e) => Outcome::Retry(format!("the handler failed: {e}")),
            }
        }
        Err(panic) => {
            let what = crate::serve::panic_text(&*panic);
            tracing::error!(%event_type, panic = what, "event handler panicked");
            Outcome::Retry(crate::serve::PANIC_MESSAGE.to_owned())
        }
    }
}

/// A typed handler of `E`, accepting `versions` (and what upcasters bring
/// to `E::VERSION`).
pub(crate) fn typed<E, S>(handler: S, versions: Vec<u32>) -> Erased
where
    E: Event,
    S: Service<Delivery<E>, Response = ()> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    Box::new(move |meta, attempt, body, format, upcasters| {
        let payload = if versions.contains(&meta.version) {
            read_payload::<E>(format, meta.content_type, body)
        } else {
            upcast(&meta, body, format, upcasters, E::VERSION, &versions).and_then(|v| {
                serde_json::from_value::<E>(v)
                    .map_err(|e| format!("the upcast payload does not decode: {e}"))
            })
        };
        deliver(handler.clone(), meta, attempt, payload)
    })
}

/// A pattern handler: any event type, any version, the payload as JSON
/// values.
pub(crate) fn untyped<S>(handler: S) -> Erased
where
    S: Service<Delivery<serde_json::Value>, Response = ()> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    Box::new(move |meta, attempt, body, format, _| {
        let payload = read_payload(format, meta.content_type, body);
        deliver(handler.clone(), meta, attempt, payload)
    })
}

/// Runs `handler` on a payload that decoded; one that did not is
/// dead-lettered.
fn deliver<T, S>(
    handler: S,
    meta: EventMeta,
    attempt: u32,
    payload: Result<T, String>,
) -> BoxFuture<'static, Outcome>
where
    T: Send + 'static,
    S: Service<Delivery<T>, Response = ()> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    match payload {
        Err(reason) => std::future::ready(Outcome::Dead(reason)).boxed(),
        Ok(payload) => run(
            handler,
            Delivery {
                meta,
                payload,
                attempt,
            },
        )
        .boxed(),
    }
}

/// Brings a payload of `meta.version` up to `target` through the
/// upcasters, one version at a time.
fn upcast(
    meta: &EventMeta,
    body: &[u8],
    format: Format,
    upcasters: &Upcasters,
    target: u32,
    accepted: &[u32],
) -> Result<serde_json::Value, String> {
    let refused = || {
        format!(
            "version {} of `{}` is not accepted here (this service handles versions {accepted:?})",
            meta.version, meta.event_type
        )
    };
    if meta.version >= target {
        return Err(refused());
    }
    let mut value: serde_json::Value = read_payload(format, meta.content_type, body)?;
    for from in meta.version..target {
        let Some(up) = upcasters.get(&(meta.event_type.clone(), from)) else {
            return Err(refused());
        };
        value = up(value).map_err(|e| {
            format!(
                "upcasting `{}` from version {from} failed: {e}",
                meta.event_type
            )
        })?;
    }
    Ok(value)
}
