//! W3C trace context: which trace a piece of work belongs to, and which
//! span of it is running.
//!
//! Every message warren sends from inside a traced piece of work (a
//! handler, an event handler, a PostOffice request, or code run in
//! [`Context::scope`](crate::Context::scope) with a [`TraceContext`])
//! carries a `traceparent` header, `00-<trace id>-<span id>-<flags>`, whose
//! span id is the sender's. The receiver runs its handler as a new span of
//! the same trace whose parent is that id, so a chain of calls and events
//! A → B → C is one trace whatever transport each hop took.
//!
//! With the `otel` feature and an OpenTelemetry layer installed
//! ([`otel`](crate::otel)), the ids are those of the exported spans;
//! without it, warren draws them itself and they still travel.

use std::fmt;

/// The `traceparent` header's name, on AMQP messages, HTTP requests and
/// PostOffice frames alike.
pub const TRACEPARENT: &str = "traceparent";

/// A trace id: 16 bytes, never all zero, written as 32 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceId(pub(crate) u128);

/// A span id: 8 bytes, never all zero, written as 16 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpanId(pub(crate) u64);

/// The bytes, hex digits and random draw of an id type over the integer
/// `$int`, `$n` bytes long.
macro_rules! id_bytes {
    ($ty:ident, $what:literal, $int:ty, $n:literal) => {
        impl $ty {
            #[doc = concat!("A random ", $what, " id.")]
            #[must_use]
            pub fn random() -> Self {
                // A v4 UUID (122 random bits), or its low half (62) for a span id.
                Self((uuid::Uuid::new_v4().as_u128() as $int).max(1))
            }

            #[doc = concat!("The id's ", $n, " bytes, big-endian.")]
            #[must_use]
            pub fn to_bytes(self) -> [u8; $n] {
                self.0.to_be_bytes()
            }

            #[doc = concat!("The id of ", $n, " bytes, big-endian; `None` for all zeros (invalid).")]
            #[must_use]
            pub fn from_bytes(bytes: [u8; $n]) -> Option<Self> {
                let v = <$int>::from_be_bytes(bytes);
                (v != 0).then_some(Self(v))
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:0digits$x}", self.0, digits = 2 * $n)
            }
        }
    };
}

id_bytes!(TraceId, "trace", u128, 16);
id_bytes!(SpanId, "span", u64, 8);

/// A `traceparent` that does not follow the W3C format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a traceparent: write `00-<32 hex digits>-<16 hex digits>-<2 hex digits>`, ids not all zero (W3C trace context)")]
pub struct BadTraceparent {
    /// The value refused (at most its first 64 characters).
    pub value: String,
}

/// The trace a piece of work belongs to, its own span, and the span it
/// was started from, if that came from elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: TraceId,
    span_id: SpanId,
    parent_id: Option<SpanId>,
    sampled: bool,
}

impl TraceContext {
    /// The first span of a new trace (sampled).
    #[must_use]
    pub fn new_root() -> Self {
        Self {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            parent_id: None,
            sampled: true,
        }
    }

    /// A new span of the trace a received `traceparent` names, its parent
    /// the sender's span.
    ///
    /// # Errors
    /// [`BadTraceparent`] for a value not in the W3C format (version `00`;
    /// a later version is read for its first four fields, as the
    /// specification asks).
    pub fn child_of(traceparent: &str) -> Result<Self, BadTraceparent> {
        let (trace_id, parent, sampled) = parse(traceparent).ok_or_else(|| BadTraceparent {
            value: traceparent.chars().take(64).collect(),
        })?;
        Ok(Self {
            trace_id,
            span_id: SpanId::random(),
            parent_id: Some(parent),
            sampled,
        })
    }

    /// The trace this belongs to.
    #[must_use]
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// This piece of work's span.
    #[must_use]
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// The span it was started from, when it was received.
    #[must_use]
    pub fn parent_id(&self) -> Option<SpanId> {
        self.parent_id
    }

    /// Whether the trace is recorded (the `sampled` flag).
    #[must_use]
    pub fn sampled(&self) -> bool {
        self.sampled
    }

    /// A span of this trace started from this one.
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    pub(crate) fn child(&self) -> Self {
        Self {
            span_id: SpanId::random(),
            parent_id: Some(self.span_id),
            ..*self
        }
    }

    /// The same work under other ids: what an exporter assigned.
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    pub(crate) fn with_ids(self, trace_id: TraceId, span_id: SpanId, sampled: bool) -> Self {
        Self {
            trace_id,
            span_id,
            sampled,
            ..self
        }
    }

    /// The `traceparent` a message sent from this span carries.
    #[must_use]
    pub fn traceparent(&self) -> String {
        format_traceparent(self.trace_id, self.span_id, self.sampled)
    }
}

/// `00-<trace id>-<span id>-<flags>`.
pub(crate) fn format_traceparent(trace_id: TraceId, span_id: SpanId, sampled: bool) -> String {
    format!("00-{trace_id}-{span_id}-{:02x}", u8::from(sampled))
}

/// (trace id, parent span id, sampled) of a `traceparent`.
fn parse(s: &str) -> Option<(TraceId, SpanId, bool)> {
    let b = s.as_bytes();
    let lower_hex = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .filter(|p| p.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
            .map(|_| &s[r])
    };
    let version = u8::from_str_radix(lower_hex(0..2)?, 16).ok()?;
    // Version ff is invalid; 00 is exactly 55 characters; a later version
    // may append fields after a dash.
    let fits = match version {
        0xff => false,
        0 => b.len() == 55,
        _ => b.len() == 55 || b.get(55) == Some(&b'-'),
    };
    if !fits || b[2] != b'-' || b.get(35) != Some(&b'-') || b.get(52) != Some(&b'-') {
        return None;
    }
    let trace = u128::from_str_radix(lower_hex(3..35)?, 16).ok()?;
    let span = u64::from_str_radix(lower_hex(36..52)?, 16).ok()?;
    let flags = u8::from_str_radix(lower_hex(53..55)?, 16).ok()?;
    (trace != 0 && span != 0).then_some((TraceId(trace), SpanId(span), flags & 1 == 1))
}

/// The `traceparent` a message sent now, from the current task, carries:
/// the current OpenTelemetry span's (with the `otel` feature and a layer
/// installed), else the current [`Context`](crate::Context)'s trace, else
/// none, and then nothing is allocated.
pub(crate) fn outgoing() -> Option<String> {
    let current = crate::context::current_trace();
    #[cfg(feature = "otel")]
    if let Some((trace_id, span_id, sampled)) = crate::otel::current_ids() {
        if current.is_none_or(|t| t.trace_id() == trace_id) {
            return Some(format_traceparent(trace_id, span_id, sampled));
        }
    }
    current.map(|t| t.traceparent())
}

/// With the `otel` feature, makes a call's `span` a child of the current
/// [`Context`](crate::Context)'s span if the exported span is not in its
/// trace yet.
pub(crate) fn follow_context(span: &tracing::Span) {
    #[cfg(feature = "otel")]
    crate::otel::follow_context(span);
    #[cfg(not(feature = "otel"))]
    let _ = span;
}

/// Starts a span's trace context: the one received (`traceparent`), or a
/// new trace; with the `otel` feature, `span` takes the received parent and
/// the ids become the exported span's.
pub(crate) fn start(traceparent: Option<&str>, span: &tracing::Span) -> Option<TraceContext> {
    let received = traceparent.and_then(|tp| TraceContext::child_of(tp).ok());
    adopt(received, span)
}

/// With the `otel` feature, makes a transport's `span` a child of the
/// span a received `traceparent` names.
pub(crate) fn remote_parent(span: &tracing::Span, traceparent: Option<&str>) {
    #[cfg(feature = "otel")]
    crate::otel::remote_parent(span, traceparent);
    #[cfg(not(feature = "otel"))]
    let _ = (span, traceparent);
}

/// `trace` as `span`'s: with the `otel` feature, `span`'s parent is set to
/// the received one and the ids are read back from the exported span.
pub(crate) fn adopt(trace: Option<TraceContext>, span: &tracing::Span) -> Option<TraceContext> {
    #[cfg(feature = "otel")]
    {
        crate::otel::adopt(trace, span)
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = span;
        trace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn reads_and_writes_traceparent() {
        let child = TraceContext::child_of(TP).unwrap();
        assert_eq!(
            child.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(child.parent_id().unwrap().to_string(), "00f067aa0ba902b7");
        assert!(child.sampled());
        assert_ne!(child.span_id(), child.parent_id().unwrap());
        let out = child.traceparent();
        assert!(
            out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{out}"
        );
        assert!(out.ends_with("-01"));
        let grandchild = TraceContext::child_of(&out).unwrap();
        assert_eq!(grandchild.parent_id(), Some(child.span_id()));
        assert_eq!(grandchild.trace_id(), child.trace_id());

        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra";
        assert!(!TraceContext::child_of(later).unwrap().sampled());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::child_of(bad).is_err(), "{bad}");
        }
        let root = TraceContext::new_root();
        assert_eq!(root.parent_id(), None);
        assert_eq!(root.traceparent().len(), 55);
    }
}
