//! `shoal-worker compare`: one row per artifact on the same validation data (the first
//! artifact's job's validation split): accuracy and its drop against the first, file size,
//! parameters, sparsity, and on one thread the median latency at batch 1 and the throughput at
//! batch 256. Printed as a table and, with `--json`, written as JSON.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;
use shoal_train::TrainError;
use shoal_train::compress::Artifact;
use shoal_train::data::{self, Dataset, TargetData};

use super::{failed, usage};

/// Arguments of `compare`.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// Artifacts to compare; the first is the baseline of the accuracy drop.
    #[arg(required = true)]
    pub artifacts: Vec<PathBuf>,
    /// Also write the rows as a JSON array to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Seconds of timed calls per batch size and artifact.
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
}

/// One artifact's row.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub artifact: String,
    pub format: &'static str,
    pub accuracy: f64,
    pub accuracy_drop: f64,
    pub bytes: u64,
    pub params: usize,
    pub sparsity: f64,
    pub latency_ms_b1: f64,
    pub samples_per_s_b256: f64,
}

pub fn compare(args: CompareArgs) -> ExitCode {
    if !(args.seconds > 0.0 && args.seconds <= 600.0) {
        return usage(format!("--seconds: must be in (0, 600], got {}", args.seconds));
    }
    let rows = match rows(&args.artifacts, args.seconds) {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    println!(
        "{:<40} {:>6} {:>8} {:>7} {:>10} {:>9} {:>8} {:>10} {:>12}",
        "artifact", "format", "accuracy", "drop", "bytes", "params", "sparsity", "b1 ms", "b256 rows/s"
    );
    for r in &rows {
        println!(
            "{:<40} {:>6} {:>8.4} {:>7.4} {:>10} {:>9} {:>8.3} {:>10.4} {:>12.0}",
            r.artifact,
            r.format,
            r.accuracy,
            r.accuracy_drop + 0.0,
            r.bytes,
            r.params,
            r.sparsity,
            r.latency_ms_b1,
            r.samples_per_s_b256
        );
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&rows).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            return usage(format!("--json: cannot write {}: {e}", path.display()));
        }
    }
    ExitCode::SUCCESS
}

fn rows(paths: &[PathBuf], seconds: f64) -> Result<Vec<Row>, TrainError> {
    let job = Artifact::job_of(&paths[0])?;
    // The first artifact's saved transforms prepare the data; the others must have the same.
    let splits = data::load_continuing(&job.dataset, Some(&paths[0]))?;
    let validation = splits.validation.ok_or_else(|| {
        TrainError::dataset("dataset.validation_split", "the first artifact's job has no validation data to compare on")
    })?;
    let mut out: Vec<Row> = Vec::with_capacity(paths.len());
    for path in paths {
        let artifact = Artifact::open(path, validation.features, validation.image)?;
        if artifact.transforms != splits.transforms {
            return Err(TrainError::checkpoint(
                path,
                "its saved transforms are not the first artifact's: compare artifacts of one model's features",
            ));
        }
        let accuracy = accuracy(&artifact, &validation)?;
        let (_, latency_ms_b1) = measure(&artifact, &validation, 1, seconds)?;
        let (samples_per_s_b256, _) = measure(&artifact, &validation, 256, seconds)?;
        out.push(Row {
            artifact: path.display().to_string(),
            format: artifact.format.name(),
            accuracy,
            accuracy_drop: out.first().map_or(accuracy, |f| f.accuracy) - accuracy,
            bytes: artifact.bytes,
            params: artifact.params,
            sparsity: artifact.sparsity(),
            latency_ms_b1,
            samples_per_s_b256,
        });
    }
    Ok(out)
}

/// Share of rows classified as labelled (NaN for regression).
pub(crate) fn accuracy(artifact: &Artifact, data: &Dataset) -> Result<f64, TrainError> {
    let TargetData::Classes { labels, .. } = &data.targets else { return Ok(f64::NAN) };
    let mut correct = 0;
    for start in (0..data.rows).step_by(256) {
        let rows = 256.min(data.rows - start);
        let x = &data.x[start * data.features..(start + rows) * data.features];
        let predicted = artifact.classify(x, rows)?;
        correct += predicted.iter().zip(&labels[start..]).filter(|(p, l)| p == l).count();
    }
    Ok(correct as f64 / data.rows.max(1) as f64)
}

/// Samples per second and the median milliseconds per call of `batch` rows of `data` (repeated
/// when it has fewer), after 20 warm-up calls, over `seconds` of calls.
pub(crate) fn measure(
    artifact: &Artifact,
    data: &Dataset,
    batch: usize,
    seconds: f64,
) -> Result<(f64, f64), TrainError> {
    let x: Vec<f32> = data.x.iter().copied().cycle().take(batch * data.features).collect();
    for _ in 0..20 {
        artifact.forward(&x, batch)?;
    }
    let mut times = Vec::new();
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    while Instant::now() < end || times.len() < 5 {
        let t = Instant::now();
        std::hint::black_box(artifact.forward(std::hint::black_box(&x), batch)?);
        times.push(t.elapsed());
    }
    times.sort_unstable();
    let median = times[times.len() / 2].as_secs_f64();
    Ok((batch as f64 / median, 1e3 * median))
}
