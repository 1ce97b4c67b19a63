//! The console side of the commands that analyse a model or its data (`shoal evaluate`,
//! `shoal monitor`, `shoal analyze-data`): their options, the summaries they print, where their
//! JSON goes when no file is named (standard output) and their exit codes. Bad input exits with
//! code 2 and a message naming the option or column. What they compute is the library's
//! (`shoal_worker::analysis`) and `shoal-analysis`'s.

mod analyze;
mod follow;
mod model;
mod monitor;
mod monitor_page;

use std::path::Path;
use std::process::ExitCode;

use shoal_train::TrainError;
use shoal_worker::analysis::{EvaluateArgs, FLAGS, Failure, Shard, evaluate_shard, summarize_evaluation, write_report};

pub use analyze::{AnalyzeDataArgs, analyze_data};
pub use monitor::{MonitorArgs, monitor};

/// `shoal-worker evaluate`: the report goes to `--json` or standard output, a short summary to
/// standard error.
pub fn evaluate(args: EvaluateArgs) -> ExitCode {
    let settings = args.settings();
    let explain = args.explain.explain.then_some(&args.explain);
    let result = evaluate_shard(&settings, &FLAGS, Shard::whole(), explain).and_then(|report| {
        let Some(report) = report else { return Ok(()) };
        summarize_evaluation(&report).iter().for_each(|line| eprintln!("shoal-worker: {line}"));
        if settings.output.is_none() {
            print_json(&report, FLAGS.output)?;
        }
        write_report(&report, &settings, &FLAGS)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit(e),
    }
}

/// Prints the failure and gives the exit code: 2 for what the user gave (a file, column or
/// option), 1 for anything else.
pub fn exit(failure: Failure) -> ExitCode {
    eprintln!("shoal-worker: {failure}");
    match failure {
        Failure::Train(TrainError::Quantize { .. } | TrainError::Checkpoint { .. } | TrainError::Dataset { .. })
        | Failure::Analysis(_)
        | Failure::Output { .. }
        | Failure::Usage { .. } => ExitCode::from(2),
        Failure::Train(_) => ExitCode::FAILURE,
    }
}

/// Writes `value` as pretty JSON to `path`, or to standard output when there is none.
pub fn write_json(value: &impl serde::Serialize, path: Option<&Path>) -> Result<(), Failure> {
    match path {
        Some(p) => shoal_worker::analysis::write_json(value, p, "--json"),
        None => print_json(value, "--json"),
    }
}

fn print_json(value: &impl serde::Serialize, field: &'static str) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure::usage(field, e.to_string()))?;
    println!("{text}");
    Ok(())
}
