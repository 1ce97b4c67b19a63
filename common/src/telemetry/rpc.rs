//! gRPC handlers as spans, when this process exports spans: named by the method, a child of the
//! caller's span when the request carries a `traceparent`, and marked as an error when the call
//! fails. `metrics::RpcMetricsLayer`, which sees every call, opens and closes them. Methods called
//! at every training step (a parameter server's pushes and pulls) can be left out unless their
//! caller sends a trace context, so that tracing a job does not mean a span per step per rank per
//! shard.

use crate::metrics::RpcLabel;

/// The span `method`'s handler runs in, or `None` when spans are not exported (or `hot` methods
/// are called outside a trace).
pub fn handler_span<B>(request: &http::Request<B>, method: &RpcLabel, hot: bool) -> Option<tracing::Span> {
    if !super::exporting() || (hot && !request.headers().contains_key("traceparent")) {
        return None;
    }
    let span = tracing::info_span!(
        "rpc",
        otel.name = format!("{}/{}", method.service, method.method),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = method.service,
        rpc.method = method.method,
        rpc.grpc.status_code = tracing::field::Empty,
    );
    super::context::adopt_from_headers(&span, request.headers());
    Some(span)
}

/// Records how the call ended. A failed call answers with its status in the headers ("trailers
/// only"); a successful one puts 0 in trailers that come after the handler is done.
pub fn record_outcome<R>(span: &tracing::Span, response: &http::Response<R>) {
    let code = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    span.record("rpc.grpc.status_code", code);
    if code != 0 {
        span.record("otel.status_code", "ERROR");
    }
}
