//! Tracing set-up shared by the binaries: `RUST_LOG`-style filters, human or JSON output, always on
//! stderr so that stdout stays free for results.

use std::str::FromStr;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

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

/// Installs the global subscriber writing to stderr. `filter` uses `RUST_LOG` syntax
/// (`info,shoal_worker=debug`); `RUST_LOG` itself wins when set. Errors if the filter does not parse.
pub fn init(format: LogFormat, filter: &str) -> Result<(), String> {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    init_with_writer(format, filter, std::io::stderr, ansi)
}

/// Like [`init`], writing wherever `writer` says (a log file, for example).
pub fn init_with_writer<W>(format: LogFormat, filter: &str, writer: W, ansi: bool) -> Result<(), String>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => EnvFilter::from_str(&env).map_err(|e| format!("RUST_LOG: {e}"))?,
        _ => EnvFilter::from_str(filter).map_err(|e| format!("log filter `{filter}`: {e}"))?,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let result = match format {
        LogFormat::Pretty => builder.with_target(false).with_ansi(ansi).try_init(),
        LogFormat::Json => {
            builder.json().with_current_span(true).with_span_list(true).with_span_events(FmtSpan::NONE).try_init()
        }
    };
    result.map_err(|e| format!("tracing already initialised: {e}"))
}
