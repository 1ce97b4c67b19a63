//! `Pipeline`: the job's transforms fitted in order on the training split, each on the output of
//! the one before, and saved as JSON next to the checkpoint so that evaluation, prediction,
//! monitoring and search trials apply exactly what training saw.
//!
//! Each step is fitted on the f32 output of the previous step's `apply`, not on an f64
//! intermediate, so that applying the saved pipeline to the training rows reproduces, bit for
//! bit, the features the model was trained on.

use serde::{Deserialize, Serialize};

use super::spec::TransformSpec;
use super::transform::Fitted;
use crate::error::{AnalysisError, Result};

/// Where a job file lists its transforms; [`Pipeline::fit`] names the failing one
/// `dataset.transforms[i]`.
pub const TRANSFORMS_FIELD: &str = "dataset.transforms";

/// Fitted transforms applied in order. Serialized as
/// `{"inputs": d, "steps": [{"kind": "standardize", ...}, {"kind": "pca", ...}]}`, and checked
/// when read back (every step consistent, each one's inputs the previous one's outputs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Saved")]
pub struct Pipeline {
    inputs: usize,
    steps: Vec<Fitted>,
}

/// A pipeline as read, before it is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    inputs: usize,
    steps: Vec<Fitted>,
}

impl TryFrom<Saved> for Pipeline {
    type Error = AnalysisError;

    fn try_from(saved: Saved) -> Result<Pipeline> {
        let mut width = saved.inputs;
        if width == 0 {
            return Err(AnalysisError::invalid("pipeline.inputs", "must be at least 1"));
        }
        for (i, step) in saved.steps.iter().enumerate() {
            let field = format!("pipeline.steps[{i}]");
            step.check(&field)?;
            if step.inputs() != width {
                return Err(AnalysisError::invalid(
                    field,
                    format!("takes {} inputs, but {width} columns reach it", step.inputs()),
                ));
            }
            width = step.outputs();
        }
        Ok(Pipeline { inputs: saved.inputs, steps: saved.steps })
    }
}

impl Pipeline {
    /// The pipeline that passes `d` columns through unchanged.
    pub fn identity(d: usize) -> Pipeline {
        Pipeline { inputs: d, steps: Vec::new() }
    }

    /// Checks every spec; `field` names the list (`dataset.transforms` gives
    /// `dataset.transforms[1].components: must be at least 1`).
    pub fn validate(specs: &[TransformSpec], field: &str) -> Result<()> {
        specs.iter().enumerate().try_for_each(|(i, s)| s.validate(&format!("{field}[{i}]")))
    }

    /// Fits `specs` in order on the `rows × d` training features `x`, each on the previous one's
    /// output; `labels` and `classes` as for [`Fitted::fit`] (LDA needs them). Only the training
    /// split may be passed: that is the caller's part. Errors in a spec name it
    /// `dataset.transforms[i]` ([`TRANSFORMS_FIELD`]).
    pub fn fit(
        specs: &[TransformSpec],
        x: &[f32],
        rows: usize,
        d: usize,
        labels: Option<&[u32]>,
        classes: usize,
    ) -> Result<Pipeline> {
        Pipeline::validate(specs, TRANSFORMS_FIELD)?;
        let mut steps = Vec::with_capacity(specs.len());
        let mut current: Option<Vec<f32>> = None;
        let mut width = d;
        for (i, spec) in specs.iter().enumerate() {
            let field = format!("{TRANSFORMS_FIELD}[{i}]");
            let input = current.as_deref().unwrap_or(x);
            let step = Fitted::fit_named(&field, spec, input, rows, width, labels, classes)?;
            // The last step's output is never needed here.
            if i + 1 < specs.len() {
                current = Some(step.apply(input, rows));
            }
            width = step.outputs();
            steps.push(step);
        }
        Ok(Pipeline { inputs: d, steps })
    }

    /// The fitted steps, in order.
    pub fn steps(&self) -> &[Fitted] {
        &self.steps
    }

    /// Whether the pipeline has no steps (and passes its inputs through).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The number of input columns.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// The number of output columns: the model's input width.
    pub fn outputs(&self) -> usize {
        self.steps.last().map_or(self.inputs, Fitted::outputs)
    }

    /// Transforms `rows × inputs()` features into `rows × outputs()` ones, step by step.
    ///
    /// # Panics
    /// If `x.len() != rows * self.inputs()`.
    pub fn apply(&self, x: &[f32], rows: usize) -> Vec<f32> {
        assert_eq!(x.len(), rows * self.inputs, "{rows} rows of {} features expected by the pipeline", self.inputs);
        let mut steps = self.steps.iter();
        let Some(first) = steps.next() else { return x.to_vec() };
        steps.fold(first.apply(x, rows), |v, s| s.apply(&v, rows))
    }

    /// Carries gradients with respect to the outputs (`rows × outputs()`) back to the inputs
    /// (`rows × inputs()`), step by step from the last: explanations of a model that reads the
    /// pipeline's outputs are then read in the data's own columns.
    ///
    /// # Panics
    /// If `grad.len() != rows * self.outputs()`.
    pub fn pull_back(&self, grad: &[f32], rows: usize) -> Vec<f32> {
        assert_eq!(grad.len(), rows * self.outputs(), "{rows} rows of {} gradients expected", self.outputs());
        self.steps.iter().rev().fold(grad.to_vec(), |g, s| s.pull_back(&g, rows))
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    /// 200 rows of 6 columns on different scales, the last two nearly copies of the first two;
    /// labels by the sign of the first column.
    fn data() -> (Vec<f32>, Vec<u32>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        let mut x = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..200 {
            let a: f32 = rng.random_range(-1.0..1.0);
            let b: f32 = rng.random_range(-100.0..100.0);
            let row = [a, b, rng.random_range(0.0..5.0), rng.random(), a + rng.random_range(-0.01..0.01), b * 0.5];
            x.extend(row);
            labels.push(u32::from(a > 0.0));
        }
        (x, labels)
    }

    #[test]
    fn a_saved_pipeline_applies_what_was_fitted() {
        // Reference: the fitted pipeline itself; the JSON round trip must reproduce its outputs
        // bit for bit, and applying step by step must give the pipeline's output.
        let (x, labels) = data();
        let specs: Vec<TransformSpec> = serde_json::from_str(
            r#"[{"kind": "standardize"}, {"kind": "pca", "components": 4}, {"kind": "whiten"}, {"kind": "lda"}]"#,
        )
        .expect("specs");
        let p = Pipeline::fit(&specs, &x, 200, 6, Some(&labels), 2).expect("fit");
        assert_eq!((p.inputs(), p.outputs(), p.steps().len()), (6, 1, 4));
        assert_eq!(p.steps().iter().map(Fitted::outputs).collect::<Vec<_>>(), [6, 4, 4, 1]);
        let json = serde_json::to_string(&p).expect("save");
        assert!(json.starts_with(r#"{"inputs":6,"steps":[{"kind":"standardize","mean":["#), "{}", &json[..80]);
        let back: Pipeline = serde_json::from_str(&json).expect("load");
        assert_eq!(back, p);
        let (a, b) = (p.apply(&x, 200), back.apply(&x, 200));
        assert!(a.len() == 200 && a.iter().zip(&b).all(|(a, b)| a.to_bits() == b.to_bits()));
        let by_step = p.steps().iter().fold(x.clone(), |v, s| s.apply(&v, 200));
        assert_eq!(a, by_step);
        // The discriminant of labels set by the first column's sign separates the classes.
        let mean = |c: u32| {
            let v: Vec<f32> = a.iter().zip(&labels).filter(|&(_, &l)| l == c).map(|(&v, _)| v).collect();
            v.iter().sum::<f32>() / v.len() as f32
        };
        assert!((mean(1) - mean(0)).abs() > 2.0);
        // Reference for pulling gradients back: the pipeline is affine, so for any direction v
        // and output weights g, g · (f(x + v) − f(x)) = pull_back(g) · v up to rounding.
        let (rows, k) = (3, p.outputs());
        let v: Vec<f32> = (0..rows * 6).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.01).collect();
        let g: Vec<f32> = (0..rows * k).map(|i| 1.0 + i as f32).collect();
        let moved: Vec<f32> = x[..rows * 6].iter().zip(&v).map(|(a, b)| a + b).collect();
        let (fx, fxv) = (p.apply(&x[..rows * 6], rows), p.apply(&moved, rows));
        let forward: f64 =
            g.iter().zip(fxv.iter().zip(&fx)).map(|(&g, (&a, &b))| f64::from(g) * f64::from(a - b)).sum();
        let back = p.pull_back(&g, rows);
        assert_eq!(back.len(), rows * 6);
        let backward: f64 = back.iter().zip(&v).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
        assert!(backward.abs() > 0.01 && (forward - backward).abs() < 1e-4 * backward.abs(), "{forward} vs {backward}");
        let identity = Pipeline::fit(&[], &x, 200, 6, None, 0).expect("no steps");
        assert!(identity.is_empty() && identity.apply(&x, 200) == x && identity == Pipeline::identity(6));
    }

    #[test]
    fn bad_specs_and_saved_files_are_refused() {
        let (x, _) = data();
        let specs = [TransformSpec::Standardize {}, TransformSpec::Pca { components: Some(0), variance: None }];
        let err = Pipeline::fit(&specs, &x, 200, 6, None, 0).expect_err("zero components");
        assert_eq!(err.to_string(), "dataset.transforms[1].components: must be at least 1");
        // PCA to 3 columns, then PCA asking for 4 of them.
        let specs = [3, 4].map(|k| TransformSpec::Pca { components: Some(k), variance: None });
        let err = Pipeline::fit(&specs, &x, 200, 6, None, 0).expect_err("too many");
        assert_eq!(err.to_string(), "dataset.transforms[1].components: asks for 4 components of 3 input columns");
        let err = Pipeline::fit(&[TransformSpec::Lda { components: None }], &x, 200, 6, None, 0).expect_err("labels");
        assert!(err.to_string().starts_with("dataset.transforms[0]: lda needs the training labels"), "{err}");

        let two = r#"{"kind": "standardize", "mean": [0, 0], "scale": [1, 2]}"#;
        let ok: Pipeline = serde_json::from_str(&format!(r#"{{"inputs": 2, "steps": [{two}]}}"#)).expect("load");
        assert_eq!(ok.apply(&[1.0, 1.0], 1), [1.0, 0.5]);
        for (json, why) in [
            (format!(r#"{{"inputs": 3, "steps": [{two}]}}"#), "pipeline.steps[0]: takes 2 inputs, but 3 columns"),
            (r#"{"inputs": 1, "steps": [{"kind": "standardize", "mean": [0], "scale": [0]}]}"#.into(), "zero scale"),
            (
                r#"{"inputs": 2, "steps": [{"kind": "pca", "mean": [0, 0], "basis": [1, 0, 0],
                    "explained_variance": [1], "explained_ratio": [1], "cumulative_ratio": [1],
                    "total_variance": 1}]}"#
                    .into(),
                "a basis of 3 values for 1 outputs of 2 inputs",
            ),
        ] {
            let err = serde_json::from_str::<Pipeline>(&json).expect_err(why);
            assert!(err.to_string().contains(why), "{err}");
        }
    }
}
