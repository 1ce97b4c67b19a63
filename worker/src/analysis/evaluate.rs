//! An artifact's metrics on a labelled CSV file, overall and per slice, with bootstrap intervals;
//! fairness rates per group with `groups`: `shoal evaluate` on the whole file, `[evaluate]` jobs
//! on one share per rank, merged on rank 0.

use std::path::PathBuf;

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shoal_analysis::Frame;
use shoal_analysis::cells::SlicedSums;
use shoal_analysis::evaluate::{Evaluation, Moments, Partial, Scored, evaluate_sums};
use shoal_analysis::fairness::{Fairness, fairness_of};
use shoal_analysis::slice::{Profile, Rule, SKETCH_POINTS, Slicing, columns_of};
use shoal_common::spec::EvaluateConfig;
use shoal_train::Collective;
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
    /// Ranks whose shares of the data were merged (1 for `shoal evaluate`).
    pub ranks: usize,
    pub evaluation: Evaluation,
    pub fairness: Option<Fairness>,
    /// With `--explain`.
    pub explanation: Option<Explanation>,
}

/// Option names for errors: the command's flags, or an `[evaluate]` job's fields.
pub struct Fields {
    pub data: &'static str,
    pub label_column: &'static str,
    pub slice_by: &'static str,
    pub groups: &'static str,
    pub positive_class: &'static str,
    pub resamples: &'static str,
    pub buckets: &'static str,
    pub output: &'static str,
    pub html: &'static str,
}

pub const FLAGS: Fields = Fields {
    data: "--data",
    label_column: "--label-column",
    slice_by: "--slice-by",
    groups: "--groups",
    positive_class: "--positive-class",
    resamples: "--resamples",
    buckets: "--buckets",
    output: "--json",
    html: "--html",
};

pub const SPEC: Fields = Fields {
    data: "evaluate.data",
    label_column: "evaluate.label_column",
    slice_by: "evaluate.slice_by",
    groups: "evaluate.groups",
    positive_class: "evaluate.positive_class",
    resamples: "evaluate.resamples",
    buckets: "evaluate.buckets",
    output: "evaluate.output",
    html: "evaluate.html",
};

impl EvaluateArgs {
    /// The command's options as the settings an `[evaluate]` job has.
    pub fn settings(&self) -> EvaluateConfig {
        EvaluateConfig {
            artifact: self.artifact.clone(),
            data: self.data.clone(),
            label_column: self.label_column.clone(),
            slice_by: self.slice_by.clone(),
            buckets: self.buckets,
            groups: self.groups.clone(),
            baseline: self.baseline.clone(),
            positive_class: self.positive_class.clone(),
            resamples: self.resamples,
            seed: self.seed,
            ignore: self.ignore.clone(),
            output: self.json.clone(),
            html: self.html.clone(),
        }
    }
}

/// Writes the JSON report to `output` and the HTML page to `html`, each where one is named.
pub fn write_report(report: &Report, settings: &EvaluateConfig, fields: &Fields) -> Result<(), Failure> {
    if let Some(path) = &settings.output {
        write_json(report, path, fields.output)?;
    }
    match &settings.html {
        Some(path) => write_html(&pages::evaluation(report), path, fields.html),
        None => Ok(()),
    }
}

/// Which share of the data this process evaluates, and how it reaches the others.
pub struct Shard<'a> {
    pub rank: usize,
    pub world: usize,
    /// The other ranks (`None` for the whole data in one process).
    pub peers: Option<&'a mut dyn Collective>,
}

impl Shard<'_> {
    pub fn whole() -> Self {
        Shard { rank: 0, world: 1, peers: None }
    }

    /// Every rank's `value`, in rank order (this process's own alone when there are no peers).
    fn gather<T: Serialize + DeserializeOwned>(&mut self, value: T) -> Result<Vec<T>, Failure> {
        let Some(peers) = self.peers.as_deref_mut() else { return Ok(vec![value]) };
        let bytes = serde_json::to_vec(&value).map_err(|e| Failure::usage("evaluate", e.to_string()))?;
        let all = peers.all_gather_bytes(&bytes).map_err(|e| Failure::Train(e.into()))?;
        let me = self.rank;
        let mut own = Some(value);
        let mut out = Vec::with_capacity(all.len());
        for (rank, b) in all.iter().enumerate() {
            let v = match own.take_if(|_| rank == me) {
                Some(v) => v,
                None => serde_json::from_slice(b)
                    .map_err(|e| Failure::usage("evaluate", format!("rank {rank} sent a bad summary: {e}")))?,
            };
            out.push(v);
        }
        Ok(out)
    }
}

/// What every rank knows of the data before slicing it: each slice column's profile, the
/// regression moments and the rows.
#[derive(Serialize, Deserialize)]
struct Survey {
    profiles: Vec<Profile>,
    moments: Moments,
}

/// What every rank adds up.
#[derive(Serialize, Deserialize)]
struct Sums {
    partial: Partial,
    fairness: Option<SlicedSums>,
}

/// Evaluates this rank's share of the data and merges every rank's sums: rank 0 returns the
/// report of all the data, the others `None`. `explain` needs the whole data in one process.
pub fn evaluate_shard(
    settings: &EvaluateConfig,
    fields: &Fields,
    mut shard: Shard<'_>,
    explain: Option<&ExplainArgs>,
) -> Result<Option<Report>, Failure> {
    if !(1..=EvaluateConfig::MAX_RESAMPLES).contains(&settings.resamples) {
        return Err(Failure::usage(
            fields.resamples,
            format!("must be in [1, {}], got {}", EvaluateConfig::MAX_RESAMPLES, settings.resamples),
        ));
    }
    if !(2..=100).contains(&settings.buckets) {
        return Err(Failure::usage(fields.buckets, format!("must be in [2, 100], got {}", settings.buckets)));
    }
    let path = &settings.artifact;
    let job = Artifact::job_of(path)?;
    let prep = Preparation::of_artifact(path, &job)?;
    let label = settings.label_column.clone().or_else(|| job_label(&job)).ok_or_else(|| {
        Failure::usage(
            fields.label_column,
            "evaluation needs labels: name the label column (the job's data has no names)",
        )
    })?;
    // Every column a slice or the groups read, in one order on every rank.
    let mut columns: Vec<String> = Vec::new();
    for spec in &settings.slice_by {
        columns.extend(columns_of(spec, fields.slice_by)?.into_iter().map(str::to_owned));
    }
    if let Some(g) = &settings.groups {
        columns.extend(columns_of(g, fields.groups)?.into_iter().map(str::to_owned));
    }
    columns.sort();
    columns.dedup();
    let mut ignore = settings.ignore.clone();
    ignore.extend(columns.iter().cloned());
    let frame = match shard.world {
        1 => Frame::read_csv(&settings.data, fields.data)?,
        w => Frame::read_csv_shard(&settings.data, fields.data, shard.rank, w)?,
    };
    let table = Table::of(frame, fields.data, &prep, Some(&label), &ignore)?;
    let mut artifact = Artifact::open(path, prep.outputs(table.features.len()), None)?;
    let x = table.prepared(&prep, &table.raw)?;
    let mut out = outputs(&artifact, &x, table.rows)?;
    let truth = table.truth.clone().ok_or_else(|| Failure::usage(fields.label_column, "evaluation needs labels"))?;
    let classes: Vec<String> =
        prep.classes.clone().unwrap_or_else(|| (0..artifact.outputs).map(|c| c.to_string()).collect());
    let scored = match truth {
        Truth::Classes(labels) => {
            softmax_rows(&mut out, artifact.outputs);
            Scored::Classes { classes: classes.clone(), labels, probs: out }
        }
        Truth::Values(targets) => {
            if settings.groups.is_some() {
                return Err(Failure::usage(
                    fields.groups,
                    "fairness rates need a classification model; this one is a regression",
                ));
            }
            if artifact.outputs != 1 {
                return Err(Failure::usage(
                    fields.data,
                    format!("the model has {} outputs; evaluation handles one target", artifact.outputs),
                ));
            }
            Scored::Values { targets, predictions: out.iter().map(|&v| f64::from(v)).collect() }
        }
    };
    // The slices must mean the same rows on every rank: their rules come from every rank's view.
    let field_of = |c: &str| if settings.groups.as_deref() == Some(c) { fields.groups } else { fields.slice_by };
    let profiles = columns
        .iter()
        .map(|c| Ok(Profile::of(table.frame.column(c, field_of(c))?, SKETCH_POINTS)))
        .collect::<Result<Vec<_>, Failure>>()?;
    let surveys = shard.gather(Survey { profiles, moments: Moments::of(&scored) })?;
    let mut moments = Moments::default();
    let mut rules = BTreeMap::new();
    for (i, column) in columns.iter().enumerate() {
        let seen: Vec<Profile> = surveys.iter().map(|s| s.profiles[i].clone()).collect();
        rules.insert(column.clone(), Rule::merge(column, &seen, settings.buckets)?);
    }
    for s in &surveys {
        moments.merge(&s.moments);
    }
    let slicings = settings
        .slice_by
        .iter()
        .map(|s| Slicing::with_rules(&table.frame, s, &rules, fields.slice_by))
        .collect::<Result<Vec<_>, _>>()?;
    let fairness_sums = match (&settings.groups, &scored) {
        (Some(g), Scored::Classes { labels, probs, .. }) => {
            let groups = Slicing::with_rules(&table.frame, g, &rules, fields.groups)?;
            let positive = positive_class(&classes, settings.positive_class.as_deref(), fields.positive_class)?;
            let k = classes.len();
            let is_pos: Vec<bool> = labels.iter().map(|&l| l as usize == positive).collect();
            let score: Vec<f64> = probs.chunks_exact(k).map(|p| f64::from(p[positive])).collect();
            Some(shoal_analysis::fairness::fairness_sums(&groups, &is_pos, &score))
        }
        _ => None,
    };
    let explanation = match explain {
        Some(args) if shard.world == 1 => {
            let positive = match (&scored, settings.positive_class.as_deref()) {
                (Scored::Values { .. }, _) => 0,
                (_, Some(named)) => positive_class(&classes, Some(named), fields.positive_class)?,
                (Scored::Classes { labels, .. }, None) => {
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
                seed: settings.seed,
            };
            Some(explained.explain(args)?)
        }
        Some(_) => return Err(Failure::usage("--explain", "explanations need the whole data in one process")),
        None => None,
    };
    let partial = Partial::of(&scored, &slicings, &moments)?;
    let all = shard.gather(Sums { partial, fairness: fairness_sums })?;
    if shard.rank != 0 {
        return Ok(None);
    }
    let mut all = all.into_iter();
    let Some(first) = all.next() else { return Ok(None) };
    let (mut partial, mut fair) = (first.partial, first.fairness);
    for s in all {
        partial.merge(s.partial)?;
        if let (Some(mine), Some(theirs)) = (fair.as_mut(), s.fairness) {
            mine.merge(theirs)?;
        }
    }
    let evaluation = evaluate_sums(&partial, settings.resamples, settings.seed)?;
    let fairness = match &fair {
        Some(sums) => {
            let positive = positive_class(&classes, settings.positive_class.as_deref(), fields.positive_class)?;
            Some(fairness_of(
                sums,
                &classes[positive],
                settings.baseline.as_deref(),
                settings.resamples,
                settings.seed,
            )?)
        }
        None => None,
    };
    Ok(Some(Report {
        artifact: artifact.path.display().to_string(),
        format: artifact.format.name(),
        data: settings.data.display().to_string(),
        label_column: label,
        features: table.features,
        ranks: shard.world,
        evaluation,
        fairness,
        explanation,
    }))
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
fn positive_class(classes: &[String], named: Option<&str>, field: &'static str) -> Result<usize, Failure> {
    match named {
        Some(name) => classes.iter().position(|c| c == name).ok_or_else(|| {
            Failure::usage(field, format!("`{name}` is not a class of the model (its classes: {})", classes.join(", ")))
        }),
        None if classes.len() == 2 => Ok(1),
        None => Err(Failure::usage(field, format!("the model has {} classes: name the positive one", classes.len()))),
    }
}

/// A few lines on what was found: the headline metrics and the slices and groups that differ.
pub fn summarize(report: &Report) -> Vec<String> {
    let e = &report.evaluation;
    let mut lines = vec![format!("{} rows, {}", e.rows, headline(report))];
    for set in &e.slices {
        for s in set.slices.iter().filter(|s| !s.differs.is_empty()) {
            lines.push(format!("slice {} = {} ({} rows) differs in {}", set.by, s.value, s.rows, s.differs.join(", ")));
        }
    }
    if let Some(f) = &report.fairness {
        for g in f.groups.iter().filter(|g| !g.differs.is_empty()) {
            lines.push(format!(
                "group {} = {} differs from {} in {} rates",
                f.column,
                g.group,
                f.baseline,
                g.differs.len()
            ));
        }
    }
    lines
}

/// The task's headline metrics with their intervals.
fn headline(report: &Report) -> String {
    let e = &report.evaluation;
    let keys: &[&str] = if e.task == "classification" { &["accuracy", "loss", "ece"] } else { &["mae", "rmse", "r2"] };
    keys.iter()
        .filter_map(|k| e.metrics.get(*k).map(|v| format!("{k} {:.4} [{:.4}, {:.4}]", v.value, v.low, v.high)))
        .collect::<Vec<_>>()
        .join(", ")
}
