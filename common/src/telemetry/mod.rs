//! Tracing set-up shared by the binaries: `RUST_LOG`-style filters, human or JSON output, always on
//! stderr so that stdout stays free for results; and, with `otlp_endpoint` set, spans exported over
//! OTLP (`otlp.rs`), with the helpers that carry a trace across processes (`context.rs`) and make
//! gRPC handlers spans (`rpc.rs`). Without an endpoint nothing of OpenTelemetry is installed.

mod context;
mod otlp;
pub(crate) mod rpc;

use std::str::FromStr;

use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

pub use context::{adopt_parent, exporting, trace_parent};
pub use otlp::{Export, Telemetry};

/// How log lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, one line per event.
    #[default]
    Pretty,
    /// One JSON object per line, with the current span fields (job_id, worker_id, step...).
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pretty" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format `{other}` (expected pretty or json)")),
        }
    }
}

/// Why tracing could not be set up; each names the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("{key}: {reason}")]
    Filter { key: &'static str, reason: String },
    #[error("otlp_endpoint: {reason}")]
    Endpoint { reason: String },
    #[error("otlp_endpoint: cannot start the exporter: {reason}")]
    Exporter { reason: String },
    #[error("tracing already initialised: {0}")]
    AlreadySet(String),
}

type Boxed = Box<dyn Layer<Registry> + Send + Sync>;

/// What a daemon does first: reads its `otlp_endpoint` setting, then [`init`]s tracing with it.
/// `service` and `version` name the process in its spans.
pub fn start(
    service: &'static str,
    version: &'static str,
    format: LogFormat,
    filter: &str,
    otlp_endpoint: &str,
) -> Result<Telemetry, TelemetryError> {
    init(format, filter, Export::from_setting(service, version, otlp_endpoint)?)
}

/// Installs the global subscriber writing to stderr. `filter` uses `RUST_LOG` syntax
/// (`info,shoal_worker=debug`); `RUST_LOG` itself wins when set. With `export`, spans also go to
/// its OTLP endpoint until the returned guard is dropped.
pub fn init(format: LogFormat, filter: &str, export: Option<Export>) -> Result<Telemetry, TelemetryError> {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    init_with_writer(format, filter, std::io::stderr, ansi, export)
}

/// Like [`init`], writing wherever `writer` says (a log file, for example).
pub fn init_with_writer<W>(
    format: LogFormat,
    filter: &str,
    writer: W,
    ansi: bool,
    export: Option<Export>,
) -> Result<Telemetry, TelemetryError>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => {
            EnvFilter::from_str(&env).map_err(|e| TelemetryError::Filter { key: "RUST_LOG", reason: e.to_string() })?
        }
        _ => EnvFilter::from_str(filter)
            .map_err(|e| TelemetryError::Filter { key: "log", reason: format!("`{filter}`: {e}") })?,
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    let logs: Boxed = match format {
        LogFormat::Pretty => fmt.with_target(false).with_ansi(ansi).with_filter(filter).boxed(),
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_span_events(FmtSpan::NONE)
            .with_filter(filter)
            .boxed(),
    };
    let mut layers = vec![logs];
    let telemetry = match export {
        Some(export) => {
            let (telemetry, layer) = export.start()?;
            layers.push(layer);
            telemetry
        }
        None => Telemetry::off(),
    };
    tracing_subscriber::registry().with(layers).try_init().map_err(|e| TelemetryError::AlreadySet(e.to_string()))?;
    if telemetry.is_on() {
        context::set_exporting();
    }
    Ok(telemetry)
}
