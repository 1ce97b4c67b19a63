//! `shoal-worker evaluate`: an artifact's metrics on a labelled CSV file, overall and per slice,
//! with bootstrap intervals; fairness rates per group with `--groups`. Writes JSON (standard
//! output or `--json`) and prints a short summary on standard error.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;
use shoal_analysis::evaluate::{Evaluation, Scored, evaluate as evaluate_scored};
use shoal_analysis::fairness::{Fairness, fairness};
use shoal_analysis::slice::Slicing;
use shoal_train::compress::{Artifact, softmax_rows};
use shoal_train::data::Preparation;

use super::explain::{ExplainArgs, Explained, Explanation};
use super::pages;
use super::table::{Table, Truth, job_label, outputs};
use super::{Failure, write_html, write_json};

/// Arguments of `evaluate`.
#[derive(clap::Args, Debug)]
pub struct EvaluateArgs {
    /// The artifact: a checkpoint step directory, a pruned checkpoint or an int8 artifact.
    pub artifact: PathBuf,
    /// A CSV file with a header: the model's feature columns, the label and any other columns
    /// to slice or group by.
    #[arg(long)]
    pub data: PathBuf,
    /// The label column (default: the one the job trained on).
    #[arg(long)]
    pub label_column: Option<String>,
    /// Slice the metrics by a column (its values, or quantile buckets for numbers) or a cross of
    /// two (`a*b`); repeat for more.
    #[arg(long = "slice-by")]
    pub slice_by: Vec<String>,
    /// Quantile buckets for numeric slice and group columns with many values.
    #[arg(long, default_value_t = 4)]
    pub buckets: usize,
    /// Fairness rates per group of this column, at thresholds 0.1 to 0.9.
    #[arg(long)]
    pub groups: Option<String>,
    /// The group the others are compared with (default: the largest).
    #[arg(long)]
    pub baseline: Option<String>,
    /// The class whose probability is thresholded for fairness rates (default: the second of two).
    #[arg(long)]
    pub positive_class: Option<String>,
    /// Bootstrap resamples for the 95% intervals.
    #[arg(long, default_value_t = 1000)]
    pub resamples: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Columns that are not features, for models trained without column names.
    #[arg(long)]
    pub ignore: Vec<String>,
    /// Where the JSON report goes (default: standard output).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also write the report as one self-contained HTML page with charts.
    #[arg(long)]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub explain: ExplainArgs,
}

/// What `evaluate` writes.
#[derive(Serialize)]
pub struct Report {
    pub artifact: String,
    pub format: &'static str,
    pub data: String,
    pub label_column: String,
    pub features: Vec<String>,
    pub evaluation: Evaluation,
    pub fairness: Option<Fairness>,
    /// With `--explain`.
    pub explanation: Option<Explanation>,
}

pub fn evaluate(args: EvaluateArgs) -> ExitCode {
    match run(&args) {
        Ok(report) => {
            summarize(&report);
            let written = write_json(&report, args.json.as_deref()).and_then(|()| match &args.html {
                Some(path) => write_html(&pages::evaluation(&report), path),
                None => Ok(()),
            });
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => e.exit(),
            }
        }
        Err(e) => e.exit(),
    }
}

fn run(args: &EvaluateArgs) -> Result<Report, Failure> {
    if !(1..=100_000).contains(&args.resamples) {
        return Err(Failure::usage("--resamples", format!("must be in [1, 100000], got {}", args.resamples)));
    }
    if !(2..=100).contains(&args.buckets) {
        return Err(Failure::usage("--buckets", format!("must be in [2, 100], got {}", args.buckets)));
    }
    let job = Artifact::job_of(&args.artifact)?;
    let prep = Preparation::of_artifact(&args.artifact, &job)?;
    let label = args.label_column.clone().or_else(|| job_label(&job)).ok_or_else(|| {
        Failure::usage("--label-column", "evaluation needs labels: name the label column (the job's data has no names)")
    })?;
    let mut ignore = args.ignore.clone();
    ignore.extend(args.slice_by.iter().flat_map(|s| s.split('*').map(|c| c.trim().to_owned())));
    ignore.extend(args.groups.clone());
    let table = Table::read(&args.data, "--data", &prep, Some(&label), &ignore)?;
    let slicings = args
        .slice_by
        .iter()
        .map(|s| Slicing::of(&table.frame, s, args.buckets, "--slice-by"))
        .collect::<Result<Vec<_>, _>>()?;
    let groups = args.groups.as_deref().map(|g| Slicing::of(&table.frame, g, args.buckets, "--groups")).transpose()?;
    let mut artifact = Artifact::open(&args.artifact, prep.outputs(table.features.len()), None)?;
    let x = table.prepared(&prep, &table.raw)?;
    let mut out = outputs(&artifact, &x, table.rows)?;
    let truth = table.truth.clone().ok_or_else(|| Failure::usage("--label-column", "evaluation needs labels"))?;
    let classes: Vec<String> =
        prep.classes.clone().unwrap_or_else(|| (0..artifact.outputs).map(|c| c.to_string()).collect());
    let explanation = if args.explain.explain {
        let positive = match (&truth, args.positive_class.as_deref()) {
            (Truth::Values(_), _) => 0,
            (_, Some(_)) => positive_class(&classes, args.positive_class.as_deref())?,
            (Truth::Classes(labels), None) => {
                if classes.len() == 2 {
                    1
                } else {
                    most_common(labels, classes.len())
                }
            }
        };
        let mut explained = Explained {
            artifact: &mut artifact,
            prep: &prep,
            table: &table,
            classes: &classes,
            positive,
            slicings: &slicings,
            seed: args.seed,
        };
        Some(explained.explain(&args.explain)?)
    } else {
        None
    };
    let (scored, fair) = match truth {
        Truth::Classes(labels) => {
            let k = artifact.outputs;
            softmax_rows(&mut out, k);
            let fair = match &groups {
                None => None,
                Some(g) => {
                    let positive = positive_class(&classes, args.positive_class.as_deref())?;
                    let is_pos: Vec<bool> = labels.iter().map(|&l| l as usize == positive).collect();
                    let score: Vec<f64> = out.chunks_exact(k).map(|p| f64::from(p[positive])).collect();
                    let f = fairness(
                        g,
                        &is_pos,
                        &score,
                        &classes[positive],
                        args.baseline.as_deref(),
                        args.resamples,
                        args.seed,
                    )?;
                    Some(f)
                }
            };
            (Scored::Classes { classes, labels, probs: out }, fair)
        }
        Truth::Values(targets) => {
            if groups.is_some() {
                return Err(Failure::usage(
                    "--groups",
                    "fairness rates need a classification model; this one is a regression",
                ));
            }
            if artifact.outputs != 1 {
                return Err(Failure::usage(
                    "--data",
                    format!("the model has {} outputs; evaluation handles one target", artifact.outputs),
                ));
            }
            let predictions = out.iter().map(|&v| f64::from(v)).collect();
            (Scored::Values { targets, predictions }, None)
        }
    };
    let evaluation = evaluate_scored(&scored, &slicings, args.resamples, args.seed)?;
    Ok(Report {
        artifact: artifact.path.display().to_string(),
        format: artifact.format.name(),
        data: args.data.display().to_string(),
        label_column: label,
        features: table.features,
        evaluation,
        fairness: fair,
        explanation,
    })
}

/// The most common of `k` classes among `labels`.
fn most_common(labels: &[u32], k: usize) -> usize {
    let mut counts = vec![0usize; k];
    for &l in labels {
        if let Some(c) = counts.get_mut(l as usize) {
            *c += 1;
        }
    }
    counts.iter().enumerate().max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i))).map_or(0, |(i, _)| i)
}

/// The index of the positive class.
fn positive_class(classes: &[String], named: Option<&str>) -> Result<usize, Failure> {
    match named {
        Some(name) => classes.iter().position(|c| c == name).ok_or_else(|| {
            Failure::usage(
                "--positive-class",
                format!("`{name}` is not a class of the model (its classes: {})", classes.join(", ")),
            )
        }),
        None if classes.len() == 2 => Ok(1),
        None => Err(Failure::usage(
            "--positive-class",
            format!("the model has {} classes: name the positive one", classes.len()),
        )),
    }
}

/// A few lines on standard error: the headline metrics and the slices that differ.
fn summarize(report: &Report) {
    let e = &report.evaluation;
    let headline = |m: &std::collections::BTreeMap<String, shoal_analysis::bootstrap::Interval>| {
        let keys: &[&str] =
            if e.task == "classification" { &["accuracy", "loss", "ece"] } else { &["mae", "rmse", "r2"] };
        keys.iter()
            .filter_map(|k| m.get(*k).map(|v| format!("{k} {:.4} [{:.4}, {:.4}]", v.value, v.low, v.high)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    eprintln!("shoal-worker: {} rows, {}", e.rows, headline(&e.metrics));
    for set in &e.slices {
        for s in set.slices.iter().filter(|s| !s.differs.is_empty()) {
            eprintln!("  slice {} = {} ({} rows) differs in {}", set.by, s.value, s.rows, s.differs.join(", "));
        }
    }
    if let Some(f) = &report.fairness {
        for g in f.groups.iter().filter(|g| !g.differs.is_empty()) {
            eprintln!("  group {} = {} differs from {} in {} rates", f.column, g.group, f.baseline, g.differs.len());
        }
    }
}
