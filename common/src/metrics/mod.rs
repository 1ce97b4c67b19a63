//! Prometheus metrics: each process keeps its series in a `prometheus_client` registry and serves
//! them in the OpenMetrics text format at `/metrics`, which Prometheus scrapes. Names start with
//! `shoal_`; labels stay few-valued (states, kinds, methods, GPU indices), never job ids.

pub(crate) mod rpc;

pub use rpc::{RpcDurations, RpcLabel, RpcMetricsLayer, rpc_durations};

use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
pub use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::Histogram;
pub use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of every duration histogram: 1 ms to 10 minutes.
pub const SECONDS_BUCKETS: [f64; 18] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// What `/metrics` answers with.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A histogram of durations in seconds over [`SECONDS_BUCKETS`].
pub fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS_BUCKETS)
}

/// A gauge holding a float (a rate, a share, bytes).
pub type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The text exposition of `registry`.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// A router answering `GET /metrics` with what `scrape` renders at that moment.
pub fn router(scrape: Arc<dyn Fn() -> String + Send + Sync>) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        get(move || {
            let scrape = scrape.clone();
            async move { ([(CONTENT_TYPE, OPENMETRICS)], scrape()) }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_render_with_their_names_labels_and_buckets() {
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct State {
            state: &'static str,
        }
        let mut registry = Registry::with_prefix("shoal");
        let jobs = Family::<State, Gauge>::default();
        registry.register("jobs", "Jobs by state", jobs.clone());
        let latency = seconds_histogram();
        registry.register("scheduling_latency_seconds", "Queue wait", latency.clone());
        jobs.get_or_create(&State { state: "queued" }).set(3);
        latency.observe(0.2);
        let text = render(&registry);
        assert!(text.contains("shoal_jobs{state=\"queued\"} 3"), "{text}");
        assert!(text.contains("shoal_scheduling_latency_seconds_bucket{le=\"0.25\"} 1"), "{text}");
        assert!(text.contains("shoal_scheduling_latency_seconds_bucket{le=\"0.1\"} 0"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
