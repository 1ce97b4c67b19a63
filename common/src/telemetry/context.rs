//! Carrying a trace across processes: a span's W3C `traceparent` out (into an `Assignment`, a
//! request's headers) and back in as the parent of a span in another process.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

const TRACEPARENT: &str = "traceparent";

static EXPORTING: AtomicBool = AtomicBool::new(false);

pub(super) fn set_exporting() {
    EXPORTING.store(true, Ordering::Relaxed);
}

/// Whether this process exports spans. Spans that exist only for the export (RPC handlers, step
/// windows) are made only when it does, so that tracing costs nothing when it is off.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// `span`'s W3C trace context (`00-TRACE-SPAN-01`), or an empty string when it is not exported.
pub fn trace_parent(span: &tracing::Span) -> String {
    if !exporting() {
        return String::new();
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return String::new();
    }
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT).unwrap_or_default()
}

/// Makes `span` a child of the remote span `traceparent` names. An empty or malformed value
/// leaves it where it is (a root, or under the current span): a trace is never worth a failure.
pub fn adopt_parent(span: &tracing::Span, traceparent: &str) {
    if traceparent.is_empty() || !exporting() {
        return;
    }
    adopt(span, &One(traceparent));
}

/// Like [`adopt_parent`], from a request's headers.
pub(super) fn adopt_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    adopt(span, &Headers(headers));
}

fn adopt(span: &tracing::Span, carrier: &dyn Extractor) {
    let cx = TraceContextPropagator::new().extract(carrier);
    if cx.span().span_context().is_valid() {
        // Fails only when the span is disabled, and then there is nothing to parent.
        let _ = span.set_parent(cx);
    }
}

/// Request headers read as a trace context carrier.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct One<'a>(&'a str);

impl Extractor for One<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}
