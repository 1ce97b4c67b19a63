//! Integrated gradients (Sundararajan et al., 2017): feature i's attribution for input x against
//! a baseline b is (x_i − b_i) · ∫₀¹ ∂f/∂x_i (b + t(x − b)) dt, the gradient integrated along the
//! straight path from b to x. The attributions of a sample add up to f(x) − f(b) (completeness),
//! which is how the quadrature is checked: the integral is taken by the trapezoid rule on m equal
//! steps, and a sample whose attributions miss f(x) − f(b) by more than the tolerance has its
//! steps doubled (reusing every gradient already taken: the new points are the old midpoints)
//! until it passes or reaches the step limit.
//!
//! The gradients come from the caller's `gradient` closure, which runs the model's forward and
//! backward pass on a batch of rows and returns one scalar output per row and its gradient with
//! respect to the row. For a classifier that scalar is the logit (or log-probability) of the
//! class being explained, which the caller picks; for regression it is the prediction. All
//! interpolation points of many samples share one call, up to `batch_rows` rows.

use serde::Serialize;

use super::matrix::Matrix;
use crate::error::AnalysisError;

/// Most trapezoid steps per sample.
pub const MAX_STEPS: usize = 1 << 16;

/// How finely the path integral is taken, and how many rows one gradient call gets.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct IntegratedConfig {
    /// Trapezoid steps every sample starts with (`--explain-steps`).
    pub steps: usize,
    /// The most steps doubling may reach (`--explain-max-steps`).
    pub max_steps: usize,
    /// A sample passes when |Σ attributions − (f(x) − f(b))| ≤ tolerance (`--explain-tolerance`):
    /// absolute, as completeness is stated in the output's own units.
    pub tolerance: f64,
    /// Rows per gradient call (`--explain-batch-rows`).
    pub batch_rows: usize,
}

impl Default for IntegratedConfig {
    fn default() -> Self {
        Self { steps: 32, max_steps: 1024, tolerance: 1e-3, batch_rows: 4096 }
    }
}

impl IntegratedConfig {
    pub fn validate(&self) -> Result<(), AnalysisError> {
        if !(1..=MAX_STEPS).contains(&self.steps) {
            return Err(AnalysisError::invalid("--explain-steps", format!("must be 1 to {MAX_STEPS}")));
        }
        if !(self.steps..=MAX_STEPS).contains(&self.max_steps) {
            return Err(AnalysisError::invalid(
                "--explain-max-steps",
                format!("must be from --explain-steps ({}) to {MAX_STEPS}", self.steps),
            ));
        }
        if !(self.tolerance.is_finite() && self.tolerance > 0.0) {
            return Err(AnalysisError::invalid("--explain-tolerance", "must be a positive number"));
        }
        if self.batch_rows == 0 {
            return Err(AnalysisError::invalid("--explain-batch-rows", "must be at least 1"));
        }
        Ok(())
    }
}

/// One sample's attributions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Attribution {
    /// One per feature; they add up to `output − baseline_output` within `error`.
    pub attributions: Vec<f64>,
    /// f(x).
    pub output: f64,
    /// Σ attributions − (f(x) − f(b)): the quadrature's completeness error.
    pub error: f64,
    /// Trapezoid steps taken.
    pub steps: usize,
    /// Whether |error| is within the tolerance (false when the step limit came first, or when the
    /// model gave a non-finite output or gradient on the path).
    pub converged: bool,
}

/// Every sample's attributions against one baseline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IntegratedGradients {
    pub features: Vec<String>,
    pub baseline: Vec<f32>,
    /// f(b).
    pub baseline_output: f64,
    pub tolerance: f64,
    /// In the order of the rows.
    pub samples: Vec<Attribution>,
}

/// A point to take the gradient at: the baseline itself (`sample` None), or t along sample's path.
#[derive(Clone, Copy)]
struct Point {
    sample: Option<usize>,
    t: f64,
}

/// Where the gradients of a sample so far have been added up.
struct Path {
    /// ½ ∇f(x) + Σ ∇f at the interior points: the trapezoid sum without the baseline's end.
    sum: Vec<f64>,
    output: f64,
    steps: usize,
    /// A non-finite output or gradient was met.
    broken: bool,
}

/// Integrated gradients of every row of `data` against `baseline` (one row of `data.features()`
/// values: all zeros, the [`column_means`](Matrix::column_means), a reference row), with gradients
/// from `gradient(rows, n) → (n outputs, n × features gradients)`.
///
/// Each sample costs `steps` gradient rows, plus as many again at every doubling; the baseline
/// costs one row in all. Errors: a bad `config` or baseline, a closure answering with the wrong
/// number of values (named `gradient`), and whatever `gradient` returns.
pub fn integrated_gradients<E: From<AnalysisError>>(
    data: &Matrix,
    baseline: &[f32],
    mut gradient: impl FnMut(&[f32], usize) -> Result<(Vec<f32>, Vec<f32>), E>,
    config: &IntegratedConfig,
) -> Result<IntegratedGradients, E> {
    config.validate()?;
    let features = data.features();
    if baseline.len() != features || baseline.iter().any(|v| !v.is_finite()) {
        return Err(AnalysisError::invalid(
            "--explain-baseline",
            format!("must be {features} finite values, one per feature; it has {}", baseline.len()),
        )
        .into());
    }
    let rows = data.rows();
    let mut paths: Vec<Path> = (0..rows)
        .map(|_| Path { sum: vec![0.0; features], output: f64::NAN, steps: config.steps, broken: false })
        .collect();
    let mut base = Path { sum: vec![0.0; features], output: f64::NAN, steps: 0, broken: false };
    // The first round takes t = k/m for k = 1..=m (k = m is x itself, giving f(x)), and the
    // baseline once for all samples.
    let mut points = vec![Point { sample: None, t: 0.0 }];
    for s in 0..rows {
        let m = config.steps;
        points.extend((1..=m).map(|k| Point { sample: Some(s), t: k as f64 / m as f64 }));
    }
    let mut samples: Vec<Option<Attribution>> = vec![None; rows];
    let mut open: Vec<usize> = (0..rows).collect();
    let mut buf = Vec::with_capacity(config.batch_rows.min(points.len()) * features);
    loop {
        for batch in points.chunks(config.batch_rows) {
            buf.clear();
            for p in batch {
                match p.sample {
                    None => buf.extend_from_slice(baseline),
                    Some(s) => buf.extend(along(baseline, data.row(s), p.t)),
                }
            }
            let n = batch.len();
            let (outputs, grads) = gradient(&buf, n)?;
            if outputs.len() != n || grads.len() != n * features {
                return Err(AnalysisError::invalid(
                    "gradient",
                    format!(
                        "answered {} outputs and {} gradient values for {n} rows of {features} features",
                        outputs.len(),
                        grads.len()
                    ),
                )
                .into());
            }
            for ((p, &out), g) in batch.iter().zip(&outputs).zip(grads.chunks_exact(features)) {
                let path = match p.sample {
                    None => &mut base,
                    Some(s) => &mut paths[s],
                };
                // The end at x counts half in the trapezoid sum; the baseline's half is added
                // when the attributions are read, as every sample shares it.
                let end = p.t == 1.0 || p.sample.is_none();
                let weight = if end { 0.5 } else { 1.0 };
                if end {
                    path.output = f64::from(out);
                }
                path.broken |= !out.is_finite();
                for (a, &d) in path.sum.iter_mut().zip(g) {
                    path.broken |= !d.is_finite();
                    *a += weight * f64::from(d);
                }
            }
        }
        points.clear();
        let mut still_open = Vec::new();
        for &s in &open {
            let path = &mut paths[s];
            let x = data.row(s);
            let attributions: Vec<f64> = (0..features)
                .map(|i| (f64::from(x[i]) - f64::from(baseline[i])) * (path.sum[i] + base.sum[i]) / path.steps as f64)
                .collect();
            let change = path.output - base.output;
            let error = attributions.iter().sum::<f64>() - change;
            let broken = path.broken || base.broken;
            let converged = !broken && error.abs() <= config.tolerance;
            if converged || broken || 2 * path.steps > config.max_steps {
                samples[s] =
                    Some(Attribution { attributions, output: path.output, error, steps: path.steps, converged });
                continue;
            }
            // Doubling: the m new points are the midpoints (2k + 1) / 2m of the old steps.
            let m = path.steps;
            points.extend((0..m).map(|k| Point { sample: Some(s), t: (2 * k + 1) as f64 / (2 * m) as f64 }));
            path.steps = 2 * m;
            still_open.push(s);
        }
        open = still_open;
        if open.is_empty() {
            break;
        }
    }
    Ok(IntegratedGradients {
        features: data.names().to_vec(),
        baseline: baseline.to_vec(),
        baseline_output: base.output,
        tolerance: config.tolerance,
        // Every sample is closed once `open` is empty.
        samples: samples.into_iter().flatten().collect(),
    })
}

/// The point b + t(x − b), in `f64` before rounding to the model's `f32`; x itself at t = 1.
fn along<'a>(b: &'a [f32], x: &'a [f32], t: f64) -> impl Iterator<Item = f32> + 'a {
    b.iter().zip(x).map(
        move |(&b, &x)| {
            if t == 1.0 { x } else { (f64::from(b) + t * (f64::from(x) - f64::from(b))) as f32 }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|j| format!("f{j}")).collect()
    }

    /// A 3-input, 4-unit tanh network f(x) = Σ_h v_h tanh(Σ_i W_hi x_i + c_h) + d, with its
    /// gradient by the chain rule: ∂f/∂x_i = Σ_h v_h (1 − tanh²(a_h)) W_hi; `sharp` scales W and c.
    /// What a gradient closure answers: outputs and gradients.
    type Answer = Result<(Vec<f32>, Vec<f32>), AnalysisError>;

    fn network(sharp: f64) -> impl FnMut(&[f32], usize) -> Answer {
        let w = [[0.8, -0.5, 0.3], [-0.2, 0.9, 0.4], [0.5, 0.5, -0.7], [1.1, -0.3, 0.2]];
        let c = [0.1, -0.2, 0.05, 0.3];
        let v = [1.5, -0.8, 0.6, 1.0];
        move |x: &[f32], n: usize| {
            let mut out = Vec::with_capacity(n);
            let mut grad = Vec::with_capacity(3 * n);
            for row in x.chunks_exact(3) {
                let mut f = 0.25;
                let mut g = [0.0f64; 3];
                for h in 0..4 {
                    let a: f64 = sharp * (c[h] + (0..3).map(|i| w[h][i] * f64::from(row[i])).sum::<f64>());
                    let th = a.tanh();
                    f += v[h] * th;
                    for i in 0..3 {
                        g[i] += v[h] * (1.0 - th * th) * sharp * w[h][i];
                    }
                }
                out.push(f as f32);
                grad.extend(g.map(|d| d as f32));
            }
            Ok((out, grad))
        }
    }

    fn rows() -> Vec<f32> {
        vec![1.0, -0.5, 2.0, -1.2, 0.3, 0.7, 0.4, 1.6, -0.9, 2.5, 2.0, -1.5, 0.0, 0.0, 0.0]
    }

    #[test]
    fn attributions_add_up_to_the_change_in_output() {
        let (x, n) = (rows(), names(3));
        let m = Matrix::new(&x, 5, &n).expect("matrix");
        let config = IntegratedConfig { batch_rows: 50, ..IntegratedConfig::default() };
        let ig = integrated_gradients(&m, &[0.0; 3], network(1.0), &config).expect("attributions");
        let (mut f, _) = network(1.0)(&x, 5).expect("outputs");
        let (fb, _) = network(1.0)(&[0.0; 3], 1).expect("baseline");
        assert_eq!(ig.baseline_output, f64::from(fb[0]));
        for (s, a) in ig.samples.iter().enumerate() {
            let change = f64::from(f[s]) - ig.baseline_output;
            let sum: f64 = a.attributions.iter().sum();
            assert!(a.converged && (sum - change).abs() <= 1e-3, "sample {s}: {a:?}, change {change}");
            assert!((a.error - (sum - change)).abs() < 1e-12);
            assert_eq!(a.output, f64::from(f[s]));
        }
        // The last row is the baseline itself: nothing to attribute.
        assert!(ig.samples[4].attributions.iter().all(|&a| a == 0.0));
        f.clear();

        // A mean baseline and a sharp network (weights × 30: its tanh units switch within a
        // short stretch of the path) need doubling: to 128 steps for 1e-3, to 256 or more for
        // some samples at a tolerance of 1e-4.
        let means = m.column_means();
        let tight = IntegratedConfig { tolerance: 1e-4, ..config };
        let ig = integrated_gradients(&m, &means, network(30.0), &tight).expect("sharp");
        assert!(ig.samples.iter().any(|a| a.steps >= 256), "{:?}", ig.samples);
        for a in &ig.samples {
            let change = a.output - ig.baseline_output;
            assert!(a.converged && a.error.abs() <= 1e-3 && change.abs() < 10.0, "{a:?}");
            assert!(a.steps.is_power_of_two() && a.steps <= 1024);
        }
        // Without room to double, the sharp network's samples stop unconverged at 32 steps.
        let fixed = IntegratedConfig { max_steps: 32, ..tight };
        let ig = integrated_gradients(&m, &means, network(30.0), &fixed).expect("fixed");
        assert!(ig.samples.iter().any(|a| !a.converged) && ig.samples.iter().all(|a| a.steps == 32));
    }

    #[test]
    fn a_linear_model_is_attributed_exactly() {
        // f(x) = w · x + 3 has gradient w everywhere, so attribution_i = w_i (x_i − b_i) for any
        // number of steps.
        let w = [0.5f32, -2.0, 1.25];
        let linear = |x: &[f32], n: usize| -> Answer {
            let out = x.chunks_exact(3).map(|r| r.iter().zip(&w).map(|(a, b)| a * b).sum::<f32>() + 3.0).collect();
            Ok((out, w.repeat(n)))
        };
        let (x, n) = (rows(), names(3));
        let m = Matrix::new(&x, 5, &n).expect("matrix");
        let b = [0.5f32, 1.0, -1.0];
        let mut calls = 0;
        let counted = |x: &[f32], n: usize| {
            calls += 1;
            linear(x, n)
        };
        let config = IntegratedConfig { batch_rows: 64, ..IntegratedConfig::default() };
        let ig = integrated_gradients(&m, &b, counted, &config).expect("linear");
        // 5 samples × 32 steps + the baseline = 161 rows: three calls of at most 64.
        assert_eq!(calls, 3);
        for (s, a) in ig.samples.iter().enumerate() {
            assert_eq!(a.steps, 32);
            for i in 0..3 {
                let want = f64::from(w[i]) * (f64::from(m.row(s)[i]) - f64::from(b[i]));
                assert!((a.attributions[i] - want).abs() <= 1e-9 * want.abs().max(1e-300), "{s} {i}: {a:?}");
            }
        }
    }

    #[test]
    fn bad_options_and_answers_are_refused() {
        let (x, n) = (rows(), names(3));
        let m = Matrix::new(&x, 5, &n).expect("matrix");
        let run = |config: IntegratedConfig, b: &[f32]| integrated_gradients(&m, b, network(1.0), &config);
        let base = IntegratedConfig::default();
        let err = run(IntegratedConfig { steps: 0, ..base }, &[0.0; 3]).expect_err("0 steps");
        assert!(err.to_string().starts_with("--explain-steps"), "{err}");
        let err = run(IntegratedConfig { max_steps: 16, ..base }, &[0.0; 3]).expect_err("max below steps");
        assert!(err.to_string().starts_with("--explain-max-steps"), "{err}");
        let err = run(IntegratedConfig { tolerance: 0.0, ..base }, &[0.0; 3]).expect_err("tolerance");
        assert!(err.to_string().starts_with("--explain-tolerance"), "{err}");
        let err = run(base, &[0.0; 2]).expect_err("short baseline");
        assert!(err.to_string().starts_with("--explain-baseline: must be 3 finite values"), "{err}");
        let short = |_: &[f32], n: usize| Ok::<_, AnalysisError>((vec![0.0; n], vec![0.0; n]));
        let err = integrated_gradients(&m, &[0.0; 3], short, &base).expect_err("short gradient");
        assert!(err.to_string().starts_with("gradient: answered"), "{err}");
        // A model that overflows on the path is reported, not refined to the step limit.
        let nan = |_: &[f32], n: usize| Ok::<_, AnalysisError>((vec![f32::NAN; n], vec![0.0; 3 * n]));
        let ig = integrated_gradients(&m, &[0.0; 3], nan, &base).expect("NaN outputs");
        assert!(ig.samples.iter().all(|a| !a.converged && a.steps == 32));
    }
}
