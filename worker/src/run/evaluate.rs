//! `[evaluate]` jobs: nothing trains. Each rank reads its equal share of the data file's rows,
//! scores them with the artifact and sends its sums to the others (`analysis::evaluate_shard`);
//! rank 0 merges them into the report of the whole file, writes it (JSON, and HTML when asked)
//! and ends the job with the headline metrics as its result.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use shoal_common::JobId;
use shoal_common::proto::{JobFinished, JobResult, Outcome};
use shoal_common::spec::{EvaluateConfig, TrainConfig};
use shoal_train::{Host, Report};

use super::error::RunError;
use super::group::Joined;
use super::report::ReportHost;
use crate::analysis::{EvaluationReport, SPEC, Shard, evaluate_shard, summarize_evaluation, write_report};

/// Runs this rank's part of the evaluation job.
pub fn run(
    cfg: &TrainConfig,
    job_id: &str,
    attempt: u32,
    (rank, world): (usize, usize),
    job_dir: &Path,
    joined: &mut Joined,
    host: &mut ReportHost<'_>,
) -> JobFinished {
    let failed =
        |source| super::failed(attempt, &RunError::Evaluation { job: JobId::new(job_id), source: Box::new(source) });
    let Some(settings) = &cfg.evaluate else {
        return failed(crate::analysis::Failure::usage("evaluate", "the job has no [evaluate] section"));
    };
    let started = Instant::now();
    host.report(Report::Started {
        total_steps: 0,
        steps_per_epoch: 0,
        params: 0,
        model: format!(
            "evaluation of {} on share {} of {world} of {}",
            settings.artifact.display(),
            rank + 1,
            settings.data.display()
        ),
        resumed_at: None,
    });
    let peers = match joined {
        Joined::AllReduce(c) => Some(c.as_mut() as &mut dyn shoal_train::Collective),
        _ => None,
    };
    let report = match evaluate_shard(settings, &SPEC, Shard { rank, world, peers }, None) {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let base = JobFinished { job_id: job_id.into(), attempt, outcome: Outcome::Succeeded as i32, ..Default::default() };
    let Some(report) = report else { return base };
    let settings = EvaluateConfig {
        output: Some(settings.output.clone().unwrap_or_else(|| job_dir.join(EvaluateConfig::DEFAULT_OUTPUT))),
        ..settings.clone()
    };
    let output = settings.output.clone().unwrap_or_default();
    if let Some(dir) = output.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = write_report(&report, &settings, &SPEC) {
        return failed(e);
    }
    for line in summarize_evaluation(&report) {
        host.info(line);
    }
    host.info(format!("evaluation report written to {}", output.display()));
    JobFinished { result: Some(result_of(&report, &output, started.elapsed().as_secs_f64())), ..base }
}

/// The job's result: the headline metrics (accuracy and loss in their usual fields) and the
/// report's path.
fn result_of(report: &EvaluationReport, output: &Path, elapsed_s: f64) -> JobResult {
    let e = &report.evaluation;
    let mut extra: HashMap<String, f64> = HashMap::new();
    for (name, ci) in &e.metrics {
        if ci.value.is_finite() {
            extra.insert(name.clone(), ci.value);
            extra.insert(format!("{name}_low"), ci.low);
            extra.insert(format!("{name}_high"), ci.high);
        }
    }
    extra.insert("rows".into(), e.rows as f64);
    extra.insert("ranks".into(), report.ranks as f64);
    let differing = e.slices.iter().flat_map(|s| &s.slices).filter(|s| !s.differs.is_empty()).count();
    extra.insert("slices_differing".into(), differing as f64);
    extra.retain(|_, v| v.is_finite());
    JobResult {
        validation_accuracy: e.metrics.get("accuracy").map(|ci| ci.value),
        validation_loss: e.metrics.get("loss").map_or(f64::NAN, |ci| ci.value),
        elapsed_s,
        checkpoint: output.display().to_string(),
        extra,
        ..Default::default()
    }
}
