//! Spans exported over OTLP/gRPC to a collector (the OpenTelemetry Collector, Jaeger, Tempo...).
//!
//! The exporter's gRPC channel lives on a one-thread runtime of its own, so exporting never takes
//! a thread from the process's runtime and the guard can flush from anywhere. Spans leave in
//! batches from the SDK's own thread; a collector that is down costs a failed export per batch
//! (bounded by the export deadline), never a stalled step. Only Shoal's own spans and events go
//! out: the exporter's libraries log through `tracing` too, and must not trace their own exports.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};

use super::{Boxed, TelemetryError};

/// How long one batch may take to reach the collector.
const EXPORT_DEADLINE: Duration = Duration::from_secs(5);

/// Where and as what a process exports its spans.
#[derive(Clone, Debug)]
pub struct Export {
    endpoint: String,
    service: &'static str,
    version: &'static str,
}

impl Export {
    /// Reads the `otlp_endpoint` setting: empty turns exporting off (`None`); otherwise it must be
    /// `http://HOST:PORT`, a collector's OTLP/gRPC port (usually 4317).
    pub fn from_setting(
        service: &'static str,
        version: &'static str,
        endpoint: &str,
    ) -> Result<Option<Self>, TelemetryError> {
        let endpoint = endpoint.trim();
        if endpoint.is_empty() {
            return Ok(None);
        }
        let bad = |reason: String| Err(TelemetryError::Endpoint { reason });
        let uri: http::Uri = match endpoint.parse() {
            Ok(u) => u,
            Err(e) => return bad(format!("`{endpoint}` is not a URL: {e}")),
        };
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return bad(format!(
                    "`{endpoint}`: spans go out over plain gRPC; send them to a collector on this host or network \
                     over http:// and let it forward them over TLS"
                ));
            }
            _ => return bad(format!("`{endpoint}` must start with http://")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return bad(format!("`{endpoint}` has no host"));
        }
        if uri.port_u16().is_none() {
            return bad(format!("`{endpoint}` has no port (a collector's OTLP/gRPC port is usually 4317)"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return bad(format!("`{endpoint}`: give only the scheme, host and port"));
        }
        Ok(Some(Self { endpoint: endpoint.trim_end_matches('/').to_owned(), service, version }))
    }

    /// The endpoint spans go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Starts the exporter: the guard that flushes it and the layer that feeds it.
    pub(super) fn start(self) -> Result<(Telemetry, Boxed), TelemetryError> {
        let failed = |e: &dyn std::fmt::Display| TelemetryError::Exporter { reason: e.to_string() };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()
            .map_err(|e| failed(&e))?;
        let exporter = {
            let _entered = runtime.enter();
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(self.endpoint.clone())
                .with_timeout(EXPORT_DEADLINE)
                .build()
                .map_err(|e| failed(&e))?
        };
        let resource = Resource::builder()
            .with_service_name(self.service)
            .with_attribute(KeyValue::new("service.version", self.version))
            .with_attribute(KeyValue::new("process.pid", i64::from(std::process::id())))
            .build();
        let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
        let tracer = provider.tracer("shoal");
        let ours = Targets::new().with_target("shoal", LevelFilter::INFO);
        let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(ours).boxed();
        Ok((Telemetry { running: Some(Running { provider, runtime }) }, layer))
    }
}

/// Keeps the exporter alive; dropping it sends what is still queued (within the export deadline).
/// Drop it outside any async runtime, after the process's work is done.
#[must_use = "dropping the guard stops exporting"]
pub struct Telemetry {
    running: Option<Running>,
}

struct Running {
    provider: SdkTracerProvider,
    runtime: tokio::runtime::Runtime,
}

impl Telemetry {
    pub(super) fn off() -> Self {
        Self { running: None }
    }

    /// Whether spans are being exported.
    pub fn is_on(&self) -> bool {
        self.running.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(Running { provider, runtime }) = self.running.take() {
            if let Err(e) = provider.shutdown() {
                tracing::warn!(error = %e, "some spans were not exported");
            }
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(endpoint: &str) -> String {
        match Export::from_setting("t", "0", endpoint) {
            Err(e) => e.to_string(),
            Ok(x) => panic!("{endpoint} accepted as {x:?}"),
        }
    }

    #[test]
    fn an_empty_endpoint_turns_exporting_off() {
        assert!(Export::from_setting("t", "0", "").expect("empty is fine").is_none());
        assert!(Export::from_setting("t", "0", "  ").expect("blank is fine").is_none());
    }

    #[test]
    fn endpoints_need_http_a_host_and_a_port() {
        let ok = Export::from_setting("t", "0", "http://127.0.0.1:4317/").expect("valid").expect("on");
        assert_eq!(ok.endpoint(), "http://127.0.0.1:4317");
        assert!(reason("127.0.0.1:4317").contains("must start with http://"));
        assert!(reason("https://collector:4317").contains("plain gRPC"));
        assert!(reason("http://collector").contains("no port"));
        assert!(reason("http://collector:4317/v1/traces").contains("only the scheme"));
        assert!(reason("http://:4317").starts_with("otlp_endpoint: "));
    }
}
