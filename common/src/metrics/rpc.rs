//! A tower layer on a gRPC server that times each call, from its request to its response (for a
//! stream, its first message), into a histogram family labelled by service and method, and runs
//! its handler in a span when the process exports spans (`telemetry::rpc`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tracing::Instrument as _;

use super::{EncodeLabelSet, Family, Histogram, seconds_histogram};

/// The labels of an RPC's duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabel {
    pub service: String,
    pub method: String,
}

/// Durations of RPCs in seconds, by service and method.
pub type RpcDurations = Family<RpcLabel, Histogram, fn() -> Histogram>;

/// An empty family over the usual buckets.
pub fn rpc_durations() -> RpcDurations {
    Family::new_with_constructor(seconds_histogram)
}

#[derive(Clone)]
pub struct RpcMetricsLayer {
    durations: RpcDurations,
    /// Methods whose handlers get a span only when the request carries a `traceparent`.
    hot: &'static [&'static str],
}

impl RpcMetricsLayer {
    pub fn new(durations: RpcDurations) -> Self {
        Self { durations, hot: &[] }
    }

    /// Spans `methods` (by method name, `Push`) only for callers that send a trace context.
    pub fn traced_only_by_caller(self, methods: &'static [&'static str]) -> Self {
        Self { hot: methods, ..self }
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = Timed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timed { inner, durations: self.durations.clone(), hot: self.hot }
    }
}

#[derive(Clone)]
pub struct Timed<S> {
    inner: S,
    durations: RpcDurations,
    hot: &'static [&'static str],
}

/// `/shoal.v1.JobService/SubmitJob` as (`shoal.v1.JobService`, `SubmitJob`); other paths are not
/// gRPC methods and get one label, so a stray client cannot make new series.
pub(crate) fn label(path: &str) -> RpcLabel {
    match path.trim_start_matches('/').split_once('/') {
        Some((service, method)) if !service.is_empty() && !method.contains('/') && method.len() <= 64 => {
            RpcLabel { service: service.to_owned(), method: method.to_owned() }
        }
        _ => RpcLabel { service: "other".into(), method: "other".into() },
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for Timed<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let label = label(request.uri().path());
        let span = crate::telemetry::rpc::handler_span(&request, &label, self.hot.contains(&label.method.as_str()));
        let durations = self.durations.clone();
        let started = Instant::now();
        let response = match &span {
            Some(span) => span.in_scope(|| self.inner.call(request)),
            None => self.inner.call(request),
        };
        Box::pin(async move {
            let out = match span {
                Some(span) => {
                    let out = response.instrument(span.clone()).await;
                    if let Ok(r) = &out {
                        crate::telemetry::rpc::record_outcome(&span, r);
                    }
                    out
                }
                None => response.await,
            };
            durations.get_or_create(&label).observe(started.elapsed().as_secs_f64());
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_service_and_method() {
        let l = label("/shoal.v1.JobService/SubmitJob");
        assert_eq!((l.service.as_str(), l.method.as_str()), ("shoal.v1.JobService", "SubmitJob"));
        let l = label("/a/b/c");
        assert_eq!((l.service.as_str(), l.method.as_str()), ("other", "other"));
        assert_eq!(label("/").service, "other");
    }
}
