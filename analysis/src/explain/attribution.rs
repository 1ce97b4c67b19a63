//! Summaries of per-sample attributions: per feature, the mean absolute attribution (how much the
//! feature moves the output, either way) and the mean signed one (which way on average), over all
//! samples and per slice of them.

use serde::Serialize;

use super::integrated::{Attribution, IntegratedGradients};
use crate::error::{AnalysisError, Result};
use crate::slice::Slicing;

/// One feature's attributions over a set of samples.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FeatureAttribution {
    pub feature: String,
    /// Mean |attribution|.
    pub mean_abs: f64,
    /// Mean attribution.
    pub mean: f64,
}

/// The samples of one slice.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SliceAttribution {
    pub slice: String,
    /// Samples summarized.
    pub rows: usize,
    /// In the order of [`summarize`]'s features, so that slices line up feature by feature.
    pub features: Vec<FeatureAttribution>,
}

/// Every slice of one slicing.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SliceAttributions {
    pub by: String,
    pub slices: Vec<SliceAttribution>,
}

/// Per feature means over `samples` (only those with every attribution finite), in feature order;
/// None when no sample counts.
fn means<'a>(
    features: &[String],
    samples: impl Iterator<Item = &'a Attribution>,
) -> Option<(usize, Vec<FeatureAttribution>)> {
    let mut abs = vec![0.0; features.len()];
    let mut signed = vec![0.0; features.len()];
    let mut n = 0usize;
    for a in samples.filter(|a| a.attributions.iter().all(|v| v.is_finite())) {
        n += 1;
        for ((s, m), &v) in abs.iter_mut().zip(&mut signed).zip(&a.attributions) {
            *s += v.abs();
            *m += v;
        }
    }
    (n > 0).then(|| {
        let out = features
            .iter()
            .zip(abs.iter().zip(&signed))
            .map(|(f, (s, m))| FeatureAttribution { feature: f.clone(), mean_abs: s / n as f64, mean: m / n as f64 })
            .collect();
        (n, out)
    })
}

/// The features' mean absolute and mean signed attributions over all samples whose attributions
/// are finite, largest mean |attribution| first. Empty when no sample's attributions are finite.
pub fn summarize(ig: &IntegratedGradients) -> Vec<FeatureAttribution> {
    let Some((_, mut out)) = means(&ig.features, ig.samples.iter()) else { return Vec::new() };
    // Stable: features of equal weight keep their column order.
    out.sort_by(|a, b| b.mean_abs.total_cmp(&a.mean_abs));
    out
}

/// [`summarize`] per slice of `slicing`, whose codes are the samples' (one per sample, in order;
/// for sampled rows, select the codes of those rows). Slices without a sample are left out.
/// Errors name `--slice-by`: a slicing of another number of rows.
pub fn summarize_slices(ig: &IntegratedGradients, slicing: &Slicing) -> Result<SliceAttributions> {
    if slicing.codes.len() != ig.samples.len() {
        return Err(AnalysisError::invalid(
            "--slice-by",
            format!("`{}` has {} rows, the explained samples {}", slicing.name, slicing.codes.len(), ig.samples.len()),
        ));
    }
    let order: Vec<usize> =
        summarize(ig).iter().filter_map(|f| ig.features.iter().position(|name| *name == f.feature)).collect();
    let mut slices = Vec::new();
    for (code, label) in slicing.labels.iter().enumerate() {
        let members = ig.samples.iter().zip(&slicing.codes).filter(|(_, c)| **c as usize == code).map(|(a, _)| a);
        if let Some((rows, features)) = means(&ig.features, members) {
            let features = order.iter().map(|&j| features[j].clone()).collect();
            slices.push(SliceAttribution { slice: label.clone(), rows, features });
        }
    }
    Ok(SliceAttributions { by: slicing.name.clone(), slices })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(attributions: Vec<f64>) -> Attribution {
        Attribution { attributions, output: 0.0, error: 0.0, steps: 32, converged: true }
    }

    fn explained() -> IntegratedGradients {
        IntegratedGradients {
            features: vec!["a".into(), "b".into()],
            baseline: vec![0.0, 0.0],
            baseline_output: 0.0,
            tolerance: 1e-3,
            samples: vec![
                sample(vec![1.0, -4.0]),
                sample(vec![-3.0, 2.0]),
                sample(vec![2.0, 0.0]),
                sample(vec![f64::NAN, 1.0]),
            ],
        }
    }

    #[test]
    fn means_per_feature_and_per_slice() {
        let ig = explained();
        // The NaN sample is left out. a: |1| + |-3| + |2| = 6 over 3 = 2, signed 0; b: 6/3 = 2 and
        // -2/3. Equal weight keeps a first.
        let all = summarize(&ig);
        assert_eq!(
            all.iter().map(|f| (f.feature.as_str(), f.mean_abs, f.mean)).collect::<Vec<_>>(),
            vec![("a", 2.0, 0.0), ("b", 2.0, -2.0 / 3.0)]
        );
        // Slices x = samples 0, 2 (and the NaN one), y = sample 1, z empty.
        let slicing = Slicing::new("g", vec!["x".into(), "y".into(), "z".into()], vec![0, 1, 0, 0]);
        let by = summarize_slices(&ig, &slicing).expect("slices");
        assert_eq!(by.by, "g");
        assert_eq!(by.slices.len(), 2);
        let x = &by.slices[0];
        assert_eq!((x.slice.as_str(), x.rows), ("x", 2));
        assert_eq!((x.features[0].mean_abs, x.features[0].mean), (1.5, 1.5));
        assert_eq!((x.features[1].mean_abs, x.features[1].mean), (2.0, -2.0));
        assert_eq!((by.slices[1].rows, by.slices[1].features[1].mean), (1, 2.0));
        let short = Slicing { codes: vec![0], ..slicing };
        let err = summarize_slices(&ig, &short).expect_err("short");
        assert!(err.to_string().starts_with("--slice-by: `g` has 1 rows"), "{err}");
    }
}
