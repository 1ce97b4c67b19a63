//! `Fitted`: a transform fitted on the training split (standardize, PCA, whitening or LDA), as
//! saved next to a checkpoint and applied unchanged to every later batch of features.
//!
//! Fitting works in f64 on f32 features; applying maps f32 rows to f32 rows. A fitted transform
//! holds only what applying needs plus the explained variance for reports: means, scales, and a
//! projection basis.

use serde::{Deserialize, Serialize};

use super::lda::discriminant;
use super::linalg::{check_matrix, covariance, scale_of};
use super::pca::principal;
use super::spec::TransformSpec;
use crate::error::{AnalysisError, Result};

/// A fitted transform.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fitted {
    /// Output j = (x_j − mean_j) / scale_j.
    Standardize {
        mean: Vec<f64>,
        /// The training standard deviation (divisor n − 1), or 1 for a column constant in
        /// training (see [`scale_of`](super::linalg::scale_of)): such a column says nothing the
        /// model could learn, and dividing by zero would turn every later value that differs from
        /// the constant into ±∞; centred, it stays 0 on data like the training data and finite on
        /// any other.
        scale: Vec<f64>,
    },
    Pca(Projection),
    Whiten(Projection),
    Lda(Projection),
}

/// A linear projection after centring: output k = basis_k · (x − mean).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    /// The training mean of the inputs.
    pub mean: Vec<f64>,
    /// `outputs × inputs`, row-major. PCA: the unit eigenvectors of the training covariance, in
    /// descending eigenvalue order, largest-magnitude entry positive. Whitening: those divided
    /// by the square root of their eigenvalue. LDA: the discriminant directions, scaled to unit
    /// pooled within-class variance.
    pub basis: Vec<f64>,
    /// Per output: the training variance along it (the covariance's eigenvalue; for LDA the
    /// ratio of between-class to within-class variance along the discriminant).
    pub explained_variance: Vec<f64>,
    /// Per output: `explained_variance` over `total_variance`.
    pub explained_ratio: Vec<f64>,
    /// Running sums of `explained_ratio`.
    pub cumulative_ratio: Vec<f64>,
    /// The sum over every component, kept or not (the trace of the covariance; for LDA the sum
    /// of all discriminant ratios).
    pub total_variance: f64,
}

impl Fitted {
    /// Fits `spec` on the `rows × d` training features `x` (row-major, finite). LDA needs the
    /// training `labels` (one per row, each below `classes`); the others ignore them. Errors name
    /// the transform `transform`; [`Fitted::fit_named`] takes the name from the caller.
    pub fn fit(
        spec: &TransformSpec,
        x: &[f32],
        rows: usize,
        d: usize,
        labels: Option<&[u32]>,
        classes: usize,
    ) -> Result<Fitted> {
        Fitted::fit_named("transform", spec, x, rows, d, labels, classes)
    }

    /// [`Fitted::fit`] with errors naming the transform `field` (e.g. `dataset.transforms[1]`).
    pub fn fit_named(
        field: &str,
        spec: &TransformSpec,
        x: &[f32],
        rows: usize,
        d: usize,
        labels: Option<&[u32]>,
        classes: usize,
    ) -> Result<Fitted> {
        spec.validate(field)?;
        check_matrix(x, rows, d, 2)?;
        match *spec {
            TransformSpec::Standardize {} => {
                let m = covariance(x, rows, d)?;
                let scale = (0..d).map(|j| scale_of(m.covariance[j * d + j], m.mean[j])).collect();
                Ok(Fitted::Standardize { mean: m.mean, scale })
            }
            TransformSpec::Pca { components, variance } => {
                Ok(Fitted::Pca(principal(field, x, rows, d, components, variance, false)?))
            }
            TransformSpec::Whiten { components, variance } => {
                Ok(Fitted::Whiten(principal(field, x, rows, d, components, variance, true)?))
            }
            TransformSpec::Lda { components } => {
                let labels = labels.ok_or_else(|| {
                    AnalysisError::invalid(field, "lda needs the training labels, so a classification task")
                })?;
                Ok(Fitted::Lda(discriminant(field, x, rows, d, labels, classes, components)?))
            }
        }
    }

    /// The transform's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Fitted::Standardize { .. } => "standardize",
            Fitted::Pca(_) => "pca",
            Fitted::Whiten(_) => "whiten",
            Fitted::Lda(_) => "lda",
        }
    }

    /// The projection and its explained variance, for every kind but standardize.
    pub fn projection(&self) -> Option<&Projection> {
        match self {
            Fitted::Standardize { .. } => None,
            Fitted::Pca(p) | Fitted::Whiten(p) | Fitted::Lda(p) => Some(p),
        }
    }

    /// The number of input columns.
    pub fn inputs(&self) -> usize {
        match self {
            Fitted::Standardize { mean, .. } => mean.len(),
            Fitted::Pca(p) | Fitted::Whiten(p) | Fitted::Lda(p) => p.mean.len(),
        }
    }

    /// The number of output columns.
    pub fn outputs(&self) -> usize {
        match self {
            Fitted::Standardize { mean, .. } => mean.len(),
            Fitted::Pca(p) | Fitted::Whiten(p) | Fitted::Lda(p) => p.explained_variance.len(),
        }
    }

    /// Transforms the `rows × inputs()` features `x` into `rows × outputs()` ones. Non-finite
    /// inputs give non-finite outputs in their rows.
    ///
    /// # Panics
    /// If `x.len() != rows * self.inputs()`.
    pub fn apply(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let d = self.inputs();
        assert_eq!(x.len(), rows * d, "{} rows of {d} features expected by the fitted {}", rows, self.kind());
        match self {
            Fitted::Standardize { mean, scale } => x
                .chunks_exact(d)
                .flat_map(|row| row.iter().zip(mean).zip(scale).map(|((&v, m), s)| ((f64::from(v) - m) / s) as f32))
                .collect(),
            Fitted::Pca(p) | Fitted::Whiten(p) | Fitted::Lda(p) => {
                let mut out = Vec::with_capacity(rows * self.outputs());
                let mut centred = vec![0.0; d];
                for row in x.chunks_exact(d) {
                    centred.iter_mut().zip(row).zip(&p.mean).for_each(|((c, &v), m)| *c = f64::from(v) - m);
                    out.extend(
                        p.basis.chunks_exact(d).map(|b| b.iter().zip(&centred).map(|(b, c)| b * c).sum::<f64>() as f32),
                    );
                }
                out
            }
        }
    }

    /// Carries `grad`, the gradients of some function with respect to this transform's outputs
    /// (`rows × outputs()`), back to its inputs (`rows × inputs()`): the chain rule through
    /// [`Fitted::apply`], whose Jacobian is the same for every row (it is affine).
    ///
    /// # Panics
    /// If `grad.len() != rows * self.outputs()`.
    pub fn pull_back(&self, grad: &[f32], rows: usize) -> Vec<f32> {
        let (d, k) = (self.inputs(), self.outputs());
        assert_eq!(grad.len(), rows * k, "{rows} rows of {k} gradients expected by the fitted {}", self.kind());
        match self {
            Fitted::Standardize { scale, .. } => grad
                .chunks_exact(d)
                .flat_map(|g| g.iter().zip(scale).map(|(&g, s)| (f64::from(g) / s) as f32))
                .collect(),
            Fitted::Pca(p) | Fitted::Whiten(p) | Fitted::Lda(p) => {
                let mut out = Vec::with_capacity(rows * d);
                let mut acc = vec![0.0; d];
                for g in grad.chunks_exact(k) {
                    acc.fill(0.0);
                    for (b, &gk) in p.basis.chunks_exact(d).zip(g) {
                        acc.iter_mut().zip(b).for_each(|(a, b)| *a += b * f64::from(gk));
                    }
                    out.extend(acc.iter().map(|&a| a as f32));
                }
                out
            }
        }
    }

    /// Checks that a deserialized transform is consistent (lengths agree, values finite, scales
    /// nonzero), so that applying it cannot fail.
    pub fn check(&self, field: &str) -> Result<()> {
        let bad = |reason: String| Err(AnalysisError::invalid(field, reason));
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        match self {
            Fitted::Standardize { mean, scale } => {
                if mean.is_empty() || scale.len() != mean.len() {
                    return bad(format!("standardize has {} means and {} scales", mean.len(), scale.len()));
                }
                if !finite(mean) || !finite(scale) || scale.contains(&0.0) {
                    return bad("standardize has a non-finite mean or scale, or a zero scale".into());
                }
            }
            Fitted::Pca(p) | Fitted::Whiten(p) | Fitted::Lda(p) => {
                let (d, k) = (p.mean.len(), p.explained_variance.len());
                if d == 0 || k == 0 || p.basis.len() != k * d {
                    return bad(format!(
                        "{} has a basis of {} values for {k} outputs of {d} inputs",
                        self.kind(),
                        p.basis.len()
                    ));
                }
                if p.explained_ratio.len() != k || p.cumulative_ratio.len() != k {
                    return bad(format!("{} has {k} variances but not as many ratios", self.kind()));
                }
                if !finite(&p.mean) || !finite(&p.basis) {
                    return bad(format!("{} has a non-finite mean or basis entry", self.kind()));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reduce::testing::{gaussian, naive_covariance};

    #[test]
    fn standardize_gives_unit_variance_and_leaves_a_constant_centred() {
        // Reference: the covariance of the outputs by definition; a constant column keeps scale 1
        // (see `Fitted::Standardize`), so a later value one above the constant comes out as 1.
        let rows = 300;
        let x: Vec<f32> =
            gaussian(rows, 2, &[3.0, 1.0, 0.0, 0.5], 8).chunks(2).flat_map(|r| [r[0], r[1], 7.0, 0.1]).collect();
        let s = Fitted::fit(&TransformSpec::Standardize {}, &x, rows, 4, None, 0).expect("standardize");
        let Fitted::Standardize { scale, .. } = &s else { panic!("standardize") };
        assert_eq!(scale[2..], [1.0, 1.0]);
        let c = naive_covariance(&s.apply(&x, rows), rows, 4);
        assert!((c[0] - 1.0).abs() < 1e-5 && (c[5] - 1.0).abs() < 1e-5 && c[10] == 0.0 && c[15] == 0.0, "{c:?}");
        assert_eq!(s.apply(&[0.0, 0.0, 8.0, 0.1], 1)[2..], [1.0, 0.0]);
        assert!(s.check("t").is_ok());
        let err = Fitted::fit(&TransformSpec::Standardize {}, &x[..4], 1, 4, None, 0).expect_err("one row");
        assert_eq!(err.to_string(), "data: has 1 rows; at least 2 are needed");
    }
}
