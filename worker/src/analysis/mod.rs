//! The commands that analyse a model or its data (`shoal evaluate`, `shoal monitor`,
//! `shoal analyze-data`), run here because they run the model or read data as training does;
//! `[evaluate]` jobs run the same evaluation on shares of a file (`run/evaluate.rs`). The statistics are `shoal-analysis`'s; these files read the
//! files, run the artifact and write the reports. Bad input exits with code 2 and a message
//! naming the option or column.

mod analyze;
mod evaluate;
mod explain;
mod follow;
mod model;
mod monitor;
mod pages;
mod table;

use std::process::ExitCode;

use shoal_analysis::AnalysisError;
use shoal_train::TrainError;

pub use analyze::{AnalyzeDataArgs, analyze_data};
pub use evaluate::{
    EvaluateArgs, FLAGS, Report as EvaluationReport, SPEC, Shard, evaluate, evaluate_shard,
    summarize as summarize_evaluation, write_report,
};
pub use monitor::{MonitorArgs, monitor};

/// Why an analysis command stopped.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    #[error("{field}: {source}")]
    Output { field: &'static str, source: std::io::Error },
    #[error("{field}: {reason}")]
    Usage { field: &'static str, reason: String },
}

impl Failure {
    pub fn usage(field: &'static str, reason: impl Into<String>) -> Self {
        Failure::Usage { field, reason: reason.into() }
    }

    /// Whether running again (elsewhere) may help: only when the ranks of a job lost each other.
    pub fn retryable(&self) -> bool {
        matches!(self, Failure::Train(e) if e.retryable())
    }

    /// Exit code 2 for what the user gave (a file, column or option), 1 for anything else.
    pub fn exit(self) -> ExitCode {
        eprintln!("shoal-worker: {self}");
        match self {
            Failure::Train(
                TrainError::Quantize { .. } | TrainError::Checkpoint { .. } | TrainError::Dataset { .. },
            )
            | Failure::Analysis(_)
            | Failure::Output { .. }
            | Failure::Usage { .. } => ExitCode::from(2),
            Failure::Train(_) => ExitCode::FAILURE,
        }
    }
}

/// Writes `value` as pretty JSON to `path`, or to standard output when there is none.
pub fn write_json(value: &impl serde::Serialize, path: Option<&std::path::Path>) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure::usage("--json", e.to_string()))?;
    match path {
        Some(p) => std::fs::write(p, text + "\n").map_err(|source| Failure::Output { field: "--json", source }),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}

/// Writes a report page to `path` (`--html`).
pub fn write_html(page: &shoal_analysis::report::Page, path: &std::path::Path) -> Result<(), Failure> {
    std::fs::write(path, page.render()).map_err(|source| Failure::Output { field: "--html", source })
}
