//! Running a model over labelled data and writing what was found: the evaluation `[evaluate]`
//! jobs run on shares of a file (`run/evaluate.rs`) and `shoal evaluate` runs on all of it, and
//! the model-reading parts the other analysis commands share. The statistics are
//! `shoal-analysis`'s; these files read the files, run the artifact and write the reports. The
//! commands' console side (options, summaries, exit codes) is the binary's (`commands/`).

mod evaluate;
mod explain;
mod pages;
pub mod table;

use shoal_analysis::AnalysisError;
use shoal_train::TrainError;

pub use evaluate::{
    EvaluateArgs, FLAGS, Report as EvaluationReport, SPEC, Shard, evaluate_shard, summarize as summarize_evaluation,
    write_report,
};

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
}

/// Writes `value` as pretty JSON to `path`; `field` names the option or setting it came from.
pub fn write_json(value: &impl serde::Serialize, path: &std::path::Path, field: &'static str) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure::usage(field, e.to_string()))?;
    std::fs::write(path, text + "\n").map_err(|source| Failure::Output { field, source })
}

/// Writes a report page to `path`; `field` names the option or setting it came from.
pub fn write_html(
    page: &shoal_analysis::report::Page,
    path: &std::path::Path,
    field: &'static str,
) -> Result<(), Failure> {
    std::fs::write(path, page.render()).map_err(|source| Failure::Output { field, source })
}
