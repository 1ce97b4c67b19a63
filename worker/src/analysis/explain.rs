//! `evaluate --explain`: what drives the model, read in the data's own columns (the model is run
//! on raw rows prepared as its job prepared them, and gradients are carried back through that
//! preparation). On a seeded sample of the rows: permutation importance of each feature for the
//! headline metric, integrated gradients of each sample's predicted class (its logit) or of the
//! regression output, summarized per feature and per slice, sensitivity curves for the most
//! important features, and for regression the residuals against each feature.

use serde::Serialize;
use shoal_analysis::explain::{
    Attribution, Curve, FeatureAttribution, IntegratedConfig, IntegratedGradients, Matrix, PermutationImportance,
    ResidualAnalysis, SensitivityConfig, SliceAttributions, integrated_gradients, permutation_importance, residuals,
    sample_rows, sensitivity, summarize, summarize_slices,
};
use shoal_analysis::slice::Slicing;
use shoal_train::compress::{Artifact, softmax_rows};
use shoal_train::data::Preparation;

use super::Failure;
use super::table::{Table, Truth, outputs};

/// Options of `evaluate --explain`.
#[derive(clap::Args, Clone, Debug)]
pub struct ExplainArgs {
    /// Explain the model: permutation importance, integrated gradients, sensitivity curves and,
    /// for regression, residuals.
    #[arg(long)]
    pub explain: bool,
    /// Rows that permutation importance, sensitivity and residuals are computed on (a seeded
    /// sample of the data).
    #[arg(long, default_value_t = 2000)]
    pub explain_rows: usize,
    /// Shuffles per feature for permutation importance.
    #[arg(long, default_value_t = 5)]
    pub explain_repeats: usize,
    /// Samples attributed by integrated gradients (each listed in the report).
    #[arg(long, default_value_t = 100)]
    pub explain_samples: usize,
    /// The integrated-gradients baseline: `mean` (the explained rows' column means) or `zero`.
    #[arg(long, default_value = "mean")]
    pub explain_baseline: String,
    /// The largest |Σ attributions − (f(x) − f(baseline))| allowed; steps double per sample
    /// (up to 1024) until it holds.
    #[arg(long, default_value_t = 1e-3)]
    pub explain_tolerance: f64,
    /// Grid points per sensitivity curve.
    #[arg(long, default_value_t = 20)]
    pub explain_points: usize,
    /// Sensitivity curves for this many of the most important features.
    #[arg(long, default_value_t = 6)]
    pub explain_features: usize,
}

/// Integrated gradients of the explained samples.
#[derive(Serialize)]
pub struct Attributions {
    /// `logit of the predicted class` or `output`.
    pub target: &'static str,
    pub baseline: String,
    pub tolerance: f64,
    /// The largest completeness error |Σ attributions − (f(x) − f(baseline))| over samples.
    pub max_error: f64,
    /// Samples whose error stayed above the tolerance at the most steps.
    pub unconverged: usize,
    pub features: Vec<FeatureAttribution>,
    pub slices: Vec<SliceAttributions>,
    pub samples: Vec<Sample>,
}

/// One sample's attributions.
#[derive(Serialize)]
pub struct Sample {
    /// The row in the data file (0-based, not counting the header).
    pub row: usize,
    /// The class whose logit is attributed (classification).
    pub class: Option<String>,
    pub output: f64,
    pub baseline_output: f64,
    pub error: f64,
    pub steps: usize,
    pub attributions: Vec<f64>,
}

/// Sensitivity curves and what they show.
#[derive(Serialize)]
pub struct Sensitivity {
    /// `probability of class C` or `output`.
    pub target: String,
    pub curves: Vec<Curve>,
}

/// What `--explain` adds to the report.
#[derive(Serialize)]
pub struct Explanation {
    /// Rows the importance, sensitivity and residuals were computed on.
    pub rows: usize,
    pub importance: PermutationImportance,
    pub integrated_gradients: Attributions,
    pub sensitivity: Sensitivity,
    /// Regression only.
    pub residuals: Option<ResidualAnalysis>,
}

/// The model and how its rows are prepared.
pub struct Explained<'a> {
    pub artifact: &'a mut Artifact,
    pub prep: &'a Preparation,
    pub table: &'a Table,
    pub classes: &'a [String],
    /// The class whose probability the sensitivity curves show (classification).
    pub positive: usize,
    pub slicings: &'a [Slicing],
    pub seed: u64,
}

impl Explained<'_> {
    /// Raw rows prepared and run through the model.
    fn forward(&self, raw: &[f32], rows: usize) -> Result<Vec<f32>, Failure> {
        let x = self.table.prepared(self.prep, raw)?;
        outputs(self.artifact, &x, rows)
    }

    pub fn explain(&mut self, args: &ExplainArgs) -> Result<Explanation, Failure> {
        let names = &self.table.features;
        let sample = sample_rows(self.table.rows, args.explain_rows, self.seed)?;
        let raw = select(&self.table.raw, names.len(), &sample);
        let data = Matrix::new(&raw, sample.len(), names)?;
        let truth = self.table.truth.clone().ok_or_else(|| Failure::usage("--explain", "explanations need labels"))?;
        let k = self.artifact.outputs;
        let importance = match &truth {
            Truth::Classes(labels) => {
                let labels: Vec<u32> = sample.iter().map(|&r| labels[r]).collect();
                permutation_importance(
                    &data,
                    |x| {
                        let out = self.forward(x, labels.len())?;
                        let right = out.chunks_exact(k).zip(&labels).filter(|(o, l)| argmax(o) == **l as usize).count();
                        Ok::<_, Failure>(right as f64 / labels.len().max(1) as f64)
                    },
                    true,
                    args.explain_repeats,
                    self.seed,
                )?
            }
            Truth::Values(targets) => {
                let targets: Vec<f64> = sample.iter().map(|&r| targets[r]).collect();
                permutation_importance(
                    &data,
                    |x| {
                        let out = self.forward(x, targets.len())?;
                        let sq: f64 = out.iter().zip(&targets).map(|(&p, y)| (f64::from(p) - y).powi(2)).sum();
                        Ok::<_, Failure>((sq / targets.len().max(1) as f64).sqrt())
                    },
                    false,
                    args.explain_repeats,
                    self.seed,
                )?
            }
        };
        let integrated_gradients = self.attribute(args, &data)?;
        let top: Vec<usize> = importance
            .importances
            .iter()
            .take(args.explain_features.max(1))
            .filter_map(|i| names.iter().position(|n| *n == i.feature))
            .collect();
        let config = SensitivityConfig { points: args.explain_points, ..SensitivityConfig::default() };
        let (target, curves) = match &truth {
            Truth::Classes(_) => {
                let c = self.positive;
                let curves = sensitivity(
                    &data,
                    &top,
                    |x, n| {
                        let mut out = self.forward(x, n)?;
                        softmax_rows(&mut out, k);
                        Ok::<_, Failure>(out.chunks_exact(k).map(|p| f64::from(p[c])).collect())
                    },
                    &config,
                )?;
                (format!("probability of class {}", self.classes[c]), curves)
            }
            Truth::Values(_) => {
                let curves = sensitivity(
                    &data,
                    &top,
                    |x, n| Ok::<_, Failure>(self.forward(x, n)?.iter().map(|&v| f64::from(v)).collect()),
                    &config,
                )?;
                ("output".to_owned(), curves)
            }
        };
        let residuals = match &truth {
            Truth::Values(targets) => {
                let targets: Vec<f64> = sample.iter().map(|&r| targets[r]).collect();
                let predictions: Vec<f64> = self.forward(&raw, sample.len())?.iter().map(|&v| f64::from(v)).collect();
                Some(residuals(&data, &targets, &predictions, 10)?)
            }
            Truth::Classes(_) => None,
        };
        Ok(Explanation {
            rows: sample.len(),
            importance,
            integrated_gradients,
            sensitivity: Sensitivity { target, curves },
            residuals,
        })
    }

    /// Integrated gradients of a sample of the rows: one run per predicted class (the target
    /// of a path must stay one output), merged back in row order.
    fn attribute(&mut self, args: &ExplainArgs, data: &Matrix) -> Result<Attributions, Failure> {
        let names = &self.table.features;
        let f = names.len();
        let rows = sample_rows(self.table.rows, args.explain_samples, self.seed.wrapping_add(1))?;
        let raw = select(&self.table.raw, f, &rows);
        let baseline = match args.explain_baseline.as_str() {
            "mean" => data.column_means(),
            "zero" => vec![0.0; f],
            other => {
                return Err(Failure::usage("--explain-baseline", format!("is `mean` or `zero`, not `{other}`")));
            }
        };
        let config = IntegratedConfig { tolerance: args.explain_tolerance, ..IntegratedConfig::default() };
        let k = self.artifact.outputs;
        let regression = self.prep.regression;
        let targets: Vec<usize> = if regression {
            vec![0; rows.len()]
        } else {
            self.forward(&raw, rows.len())?.chunks_exact(k).map(argmax).collect()
        };
        let mut merged: Vec<Option<(Attribution, f64)>> = (0..rows.len()).map(|_| None).collect();
        for class in 0..k {
            let members: Vec<usize> = (0..rows.len()).filter(|&i| targets[i] == class).collect();
            if members.is_empty() {
                continue;
            }
            let x = select(&raw, f, &members);
            let subset = Matrix::new(&x, members.len(), names)?;
            let (prep, table) = (self.prep, self.table);
            let artifact = &mut *self.artifact;
            let ig: IntegratedGradients = integrated_gradients(
                &subset,
                &baseline,
                |x, n| {
                    let prepared = table.prepared(prep, x)?;
                    let mut weights = vec![0f32; n * k];
                    weights.iter_mut().skip(class).step_by(k).for_each(|w| *w = 1.0);
                    let (out, mut dx) = artifact.gradient(&prepared, n, &weights)?;
                    prep.pull_back(&mut dx);
                    Ok::<_, Failure>((out.iter().skip(class).step_by(k).copied().collect(), dx))
                },
                &config,
            )?;
            for (a, &i) in ig.samples.into_iter().zip(&members) {
                merged[i] = Some((a, ig.baseline_output));
            }
        }
        let (samples, base_outputs): (Vec<Attribution>, Vec<f64>) = merged.into_iter().flatten().unzip();
        let all = IntegratedGradients {
            features: names.clone(),
            baseline: baseline.clone(),
            baseline_output: f64::NAN,
            tolerance: config.tolerance,
            samples,
        };
        let mut slices = Vec::with_capacity(self.slicings.len());
        for s in self.slicings {
            let picked = Slicing { codes: rows.iter().map(|&r| s.codes[r]).collect(), ..s.clone() };
            slices.push(summarize_slices(&all, &picked)?);
        }
        let samples = all
            .samples
            .iter()
            .zip(&base_outputs)
            .enumerate()
            .map(|(i, (a, &b))| Sample {
                row: rows[i],
                class: (!regression).then(|| self.classes[targets[i]].clone()),
                output: a.output,
                baseline_output: b,
                error: a.error,
                steps: a.steps,
                attributions: a.attributions.clone(),
            })
            .collect();
        Ok(Attributions {
            target: if regression { "output" } else { "logit of the predicted class" },
            baseline: args.explain_baseline.clone(),
            tolerance: config.tolerance,
            max_error: all.samples.iter().map(|a| a.error.abs()).fold(0.0, f64::max),
            unconverged: all.samples.iter().filter(|a| !a.converged).count(),
            features: summarize(&all),
            slices,
            samples,
        })
    }
}

/// The rows `rows` of a row-major matrix `width` wide.
fn select(x: &[f32], width: usize, rows: &[usize]) -> Vec<f32> {
    rows.iter().flat_map(|&r| x[r * width..(r + 1) * width].iter().copied()).collect()
}

fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
}
