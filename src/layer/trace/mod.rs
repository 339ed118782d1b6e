//! One span per call, `warren.call` (or `warren.gather`), with its method,
//! address and delivery; the transport below records what it knows
//! (`transport`, `correlation_id`, `peer`) and the span ends with the call's
//! `outcome` (`ok`, the reply's status code, or the transport error's
//! kind) and `duration_us`.

mod future;
mod layer;

pub(crate) use future::ResponseFuture;
pub(crate) use layer::TraceLayer;
