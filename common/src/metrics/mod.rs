//! Prometheus metrics: each process keeps its series in a `prometheus_client` registry and serves
//! them in the OpenMetrics text format at `/metrics`, which Prometheus scrapes. Names start with
//! `shoal_`; labels stay few-valued (states, kinds, methods, GPU indices), never job ids.

mod rpc;

pub use rpc::{RpcDurations, RpcLabel, RpcMetricsLayer, rpc_durations};

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
pub use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::Histogram;
pub use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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

/// Why an HTTP endpoint could not start; the message names the setting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{key}: `{addr}` is not an address (host:port): {source}")]
    Address { key: &'static str, addr: String, source: std::net::AddrParseError },
    #[error(
        "{key}: {addr} is not a loopback address; this endpoint has no TLS, so it listens on other \
         addresses only with insecure_listen = true"
    )]
    Insecure { key: &'static str, addr: SocketAddr },
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind { key: &'static str, addr: SocketAddr, source: std::io::Error },
}

/// Parses the setting `key` = `addr`; a non-loopback address needs `insecure` (plain HTTP).
pub fn parse_listen(key: &'static str, addr: &str, insecure: bool) -> Result<SocketAddr, ServeError> {
    let parsed: SocketAddr =
        addr.parse().map_err(|source| ServeError::Address { key, addr: addr.to_owned(), source })?;
    if !parsed.ip().is_loopback() && !insecure {
        return Err(ServeError::Insecure { key, addr: parsed });
    }
    Ok(parsed)
}

/// Binds `addr` and serves `router` on a task until `shutdown`; the address bound (its real
/// port when `addr` asked for port 0).
pub async fn serve(
    key: &'static str,
    addr: SocketAddr,
    router: axum::Router,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { key, addr, source })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind { key, addr, source })?;
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await;
        if let Err(e) = served {
            tracing::error!(error = %e, %local, "{key} server failed");
        }
    });
    Ok((local, task))
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

    #[test]
    fn other_addresses_need_the_insecure_flag() {
        assert!(parse_listen("metrics_listen", "127.0.0.1:0", false).is_ok());
        let err = parse_listen("metrics_listen", "0.0.0.0:9464", false).expect_err("insecure");
        assert!(err.to_string().starts_with("metrics_listen: 0.0.0.0:9464 is not a loopback"), "{err}");
        assert!(parse_listen("metrics_listen", "0.0.0.0:9464", true).is_ok());
        let err = parse_listen("http_listen", "nowhere", false).expect_err("bad");
        assert!(err.to_string().starts_with("http_listen: `nowhere` is not an address"), "{err}");
    }
}
