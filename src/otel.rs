//! OpenTelemetry export of warren's spans (the `otel` feature).
//!
//! warren's spans are `tracing` spans (`warren.call`, `warren.handle`,
//! `warren.event`, `warren.postoffice.request`, …). This module turns them
//! into OpenTelemetry spans exported over OTLP, and links them across
//! processes: a handler's span takes the span named by the received
//! `traceparent` as its parent, and every message sent from inside a span
//! carries that span's id on. A chain of calls and events A → B → C is one
//! trace in the backend.
//!
//! ```no_run
//! # fn run() -> Result<(), warren::otel::OtelError> {
//! // OTLP over HTTP to OTEL_EXPORTER_OTLP_ENDPOINT (default
//! // http://localhost:4318); spans are sent in batches.
//! let otel = warren::otel::init("billing")?;
//! // ... run the service ...
//! otel.shutdown(); // sends what is left
//! # Ok(())
//! # }
//! ```
//!
//! [`init`] installs a subscriber holding only the OpenTelemetry layer; to
//! keep your own layers (logs, filters), build it with [`layer`] and add
//! it to your `tracing_subscriber::registry()`. Spans of calls and
//! handlers are at level INFO: a filter that drops `warren=info` drops
//! them from the export too, and the ids that travel are then warren's own
//! (the trace still propagates, [`TraceContext`]).
//!
//! The crates this builds on are re-exported ([`opentelemetry`],
//! [`opentelemetry_sdk`], [`tracing_opentelemetry`]) so that your versions
//! match warren's.

use crate::tracecontext::{SpanId, TraceContext, TraceId};
use opentelemetry::trace::{
    SpanContext, TraceContextExt, TraceFlags, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::Span;
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt as _};
use tracing_subscriber::layer::SubscriberExt as _;

pub use opentelemetry;
pub use opentelemetry_sdk;
pub use tracing_opentelemetry;

/// Why OpenTelemetry export could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtelError {
    /// The OTLP exporter could not be built (a bad endpoint in
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, for one).
    #[error("cannot build the OTLP exporter; check OTEL_EXPORTER_OTLP_ENDPOINT")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    /// A global `tracing` subscriber was installed already: use [`layer`]
    /// and add it to yours.
    #[error("a tracing subscriber is installed already; add warren::otel::layer to it instead")]
    SubscriberSet(#[source] tracing::subscriber::SetGlobalDefaultError),
}

/// The tracer provider exporting warren's spans; dropping it (or
/// [`Otel::shutdown`]) sends the spans not sent yet.
#[derive(Debug)]
pub struct Otel {
    provider: SdkTracerProvider,
}

impl Otel {
    /// The provider, to make tracers of your own from.
    #[must_use]
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// Sends the spans not sent yet and stops exporting.
    pub fn shutdown(self) {
        // Drop does it.
    }
}

impl Drop for Otel {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "OpenTelemetry shutdown");
        }
    }
}

/// A provider exporting over OTLP/HTTP (protobuf) in batches, with
/// `service.name` = `service_name`. The endpoint and headers come from the
/// standard `OTEL_EXPORTER_OTLP_*` variables.
///
/// # Errors
/// [`OtelError::Exporter`] if the exporter cannot be built.
pub fn provider(service_name: &str) -> Result<SdkTracerProvider, OtelError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()
        .map_err(OtelError::Exporter)?;
    Ok(SdkTracerProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .with_batch_exporter(exporter)
        .build())
}

/// The `tracing` layer turning spans into `provider`'s OpenTelemetry spans.
#[must_use]
pub fn layer_for<S>(provider: &SdkTracerProvider) -> OpenTelemetryLayer<S, SdkTracer>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("warren"))
}

/// The `tracing` layer exporting spans over OTLP as `service_name`
/// ([`provider`]), and the [`Otel`] handle to keep while it runs.
///
/// # Errors
/// [`OtelError::Exporter`] if the exporter cannot be built.
pub fn layer<S>(service_name: &str) -> Result<(OpenTelemetryLayer<S, SdkTracer>, Otel), OtelError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let provider = provider(service_name)?;
    Ok((layer_for(&provider), Otel { provider }))
}

/// Installs a global subscriber that exports every span over OTLP as
/// `service_name` ([`layer`]); keep the [`Otel`] until the process ends.
///
/// # Errors
/// [`OtelError::Exporter`] if the exporter cannot be built;
/// [`OtelError::SubscriberSet`] if a subscriber is installed already.
pub fn init(service_name: &str) -> Result<Otel, OtelError> {
    let (layer, otel) = layer(service_name)?;
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::set_global_default(subscriber).map_err(OtelError::SubscriberSet)?;
    Ok(otel)
}

/// `span`'s OpenTelemetry span context, if it has one.
fn span_context(span: &Span) -> Option<SpanContext> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// The ids of an OpenTelemetry span context.
fn ids(sc: &SpanContext) -> (TraceId, SpanId, bool) {
    (
        TraceId(u128::from_be_bytes(sc.trace_id().to_bytes())),
        SpanId(u64::from_be_bytes(sc.span_id().to_bytes())),
        sc.is_sampled(),
    )
}

/// The current span's ids, when an OpenTelemetry layer gave it some.
pub(crate) fn current_ids() -> Option<(TraceId, SpanId, bool)> {
    span_context(&Span::current()).map(|sc| ids(&sc))
}

/// Makes `span` (a call's) a child of the current [`Context`]'s span when
/// the current exported span is not in that trace: code that started a
/// trace with [`Context::with_trace`] outside any exported span.
///
/// [`Context`]: crate::Context
/// [`Context::with_trace`]: crate::Context::with_trace
pub(crate) fn follow_context(span: &Span) {
    if span.is_disabled() {
        return;
    }
    if let Some(trace) = crate::context::current_trace() {
        set_remote_parent(span, &trace.child());
    }
}

/// Makes `span` a child of the remote span named by `traceparent`, unless
/// the current span is in that trace already (a transport's span that
/// adopted it).
pub(crate) fn remote_parent(span: &Span, traceparent: Option<&str>) {
    if span.is_disabled() {
        return;
    }
    if let Some(received) = traceparent.and_then(|tp| TraceContext::child_of(tp).ok()) {
        set_remote_parent(span, &received);
    }
}

fn set_remote_parent(span: &Span, received: &TraceContext) {
    let Some(parent) = received.parent_id() else {
        return;
    };
    if let Some(current) = span_context(&Span::current()) {
        if ids(&current).0 == received.trace_id() {
            return;
        }
    }
    let flags = if received.sampled() {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let remote = SpanContext::new(
        opentelemetry::trace::TraceId::from_bytes(received.trace_id().to_bytes()),
        opentelemetry::trace::SpanId::from_bytes(parent.to_bytes()),
        flags,
        true,
        TraceState::default(),
    );
    let cx = opentelemetry::Context::new().with_remote_span_context(remote);
    if let Err(e) = span.set_parent(cx) {
        tracing::debug!(error = %e, "cannot set a span's remote parent");
    }
}

/// `trace` (received) as `span`'s: the span takes the received parent,
/// and the ids become the exported span's.
pub(crate) fn adopt(trace: Option<TraceContext>, span: &Span) -> Option<TraceContext> {
    if span.is_disabled() {
        return trace;
    }
    if let Some(t) = &trace {
        set_remote_parent(span, t);
    }
    let Some(sc) = span_context(span) else {
        return trace;
    };
    let (trace_id, span_id, sampled) = ids(&sc);
    let base = trace.unwrap_or_else(TraceContext::new_root);
    Some(base.with_ids(trace_id, span_id, sampled))
}
