//! Principal components of the training covariance, for the `pca` and `whiten` transforms, and
//! the shares of variance they explain.

use super::eigen::Eigen;
use super::linalg::covariance;
use super::transform::Projection;
use crate::error::{AnalysisError, Result};

/// A component whose training variance is at most this share of the total has none to speak of:
/// whitening leaves it unscaled rather than blow rounding noise up to unit variance.
const NEGLIGIBLE_VARIANCE: f64 = 1e-12;

/// Eigenvalues of a positive semi-definite matrix and the shares of their sum.
pub(super) struct Shares {
    /// Descending, with any below zero (rounding) raised to zero.
    pub values: Vec<f64>,
    pub total: f64,
    /// Each value over the total (all zero if the total is).
    pub ratio: Vec<f64>,
    /// Running sums of `ratio`.
    pub cumulative: Vec<f64>,
}

impl Shares {
    pub fn of(eigenvalues: &[f64]) -> Shares {
        let values: Vec<f64> = eigenvalues.iter().map(|v| v.max(0.0)).collect();
        let total: f64 = values.iter().sum();
        let ratio: Vec<f64> = values.iter().map(|v| if total > 0.0 { v / total } else { 0.0 }).collect();
        let cumulative = ratio
            .iter()
            .scan(0.0, |s, r| {
                *s += r;
                Some(*s)
            })
            .collect();
        Shares { values, total, ratio, cumulative }
    }

    /// The projection onto the first `k` components: `basis` holds their rows, centred on `mean`.
    pub fn projection(&self, mean: Vec<f64>, basis: Vec<f64>, k: usize) -> Projection {
        Projection {
            mean,
            basis,
            explained_variance: self.values[..k].to_vec(),
            explained_ratio: self.ratio[..k].to_vec(),
            cumulative_ratio: self.cumulative[..k].to_vec(),
            total_variance: self.total,
        }
    }
}

/// PCA (or whitening) of the training covariance, keeping `components`, or enough for a
/// `variance` share, or all.
pub(super) fn principal(
    field: &str,
    x: &[f32],
    rows: usize,
    d: usize,
    components: Option<usize>,
    variance: Option<f64>,
    whiten: bool,
) -> Result<Projection> {
    if let Some(k) = components.filter(|&k| k > d) {
        return Err(AnalysisError::invalid(
            format!("{field}.components"),
            format!("asks for {k} components of {d} input columns"),
        ));
    }
    let m = covariance(x, rows, d)?;
    let e = Eigen::symmetric(&m.covariance, d)?;
    let shares = Shares::of(&e.values);
    let (values, total, cumulative) = (&shares.values, shares.total, &shares.cumulative);
    let k = match (components, variance) {
        (Some(k), _) => k,
        // The rounding slack keeps `variance = 1.0` from asking for a component past the last
        // one that carries any variance.
        (None, Some(share)) => cumulative.iter().position(|&c| c >= share - 1e-12).map_or(d, |i| i + 1),
        (None, None) => d,
    };
    let mut basis = Vec::with_capacity(k * d);
    for (j, &v) in values.iter().enumerate().take(k) {
        let s = if whiten && v > NEGLIGIBLE_VARIANCE * total { 1.0 / v.sqrt() } else { 1.0 };
        basis.extend(e.vector(j).iter().map(|x| x * s));
    }
    Ok(shares.projection(m.mean, basis, k))
}

#[cfg(test)]
mod tests {
    use crate::reduce::spec::TransformSpec;
    use crate::reduce::testing::{gaussian, naive_covariance};
    use crate::reduce::transform::Fitted;

    /// Ten rows of three correlated columns.
    const TABLE: [[f32; 3]; 10] = [
        [2.5, 2.4, 1.2],
        [0.5, 0.7, -0.3],
        [2.2, 2.9, 0.8],
        [1.9, 2.2, 1.5],
        [3.1, 3.0, 0.2],
        [2.3, 2.7, 1.1],
        [2.0, 1.6, -0.4],
        [1.0, 1.1, 0.9],
        [1.5, 1.6, 0.3],
        [1.1, 0.9, -0.1],
    ];

    const ALL: TransformSpec = TransformSpec::Pca { components: None, variance: None };

    #[test]
    fn pca_matches_numpy_eigh_of_the_covariance() {
        // Reference (numpy 2.x, eigenpairs reordered descending, signs by the same convention):
        //   x = np.array(TABLE, dtype=np.float32).astype(np.float64)
        //   w, v = np.linalg.eigh(np.cov(x, rowvar=False)); w, v = w[::-1], v[:, ::-1]
        //   v = v * np.sign(v[np.abs(v).argmax(axis=0), range(3)]); print(w, v.T)
        let want_values = [1.4060969569707717, 0.34045818678049594, 0.035000434765324995];
        let want_vectors = [
            [0.6259421384141629, 0.7034363706749308, 0.3367101301849807],
            [-0.38106029811736936, -0.10082918404305434, 0.9190356493868523],
            [-0.6804333094111479, 0.7035700022434817, -0.20493843804152478],
        ];
        let x = TABLE.concat();
        let f = Fitted::fit(&ALL, &x, 10, 3, None, 0).expect("pca");
        let p = f.projection().expect("projection");
        for (got, want) in p.explained_variance.iter().zip(want_values) {
            assert!((got - want).abs() < 1e-13, "{got} vs {want}");
        }
        for (got, want) in p.basis.iter().zip(want_vectors.concat()) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        let total: f64 = want_values.iter().sum();
        assert!((p.total_variance - total).abs() < 1e-13);
        assert!((p.cumulative_ratio[1] - (want_values[0] + want_values[1]) / total).abs() < 1e-13);
        // Shares 0.789, 0.980, 1: a 0.9 share takes two components, 0.7 one, 1.0 all three.
        for (share, k) in [(0.9, 2), (0.7, 1), (1.0, 3)] {
            let f = Fitted::fit(&TransformSpec::Pca { components: None, variance: Some(share) }, &x, 10, 3, None, 0);
            assert_eq!(f.expect("pca").outputs(), k, "share {share}");
        }
        let err = Fitted::fit(&TransformSpec::Pca { components: Some(4), variance: None }, &x, 10, 3, None, 0)
            .expect_err("too many");
        assert_eq!(err.to_string(), "transform.components: asks for 4 components of 3 input columns");
    }

    #[test]
    fn pca_of_twenty_columns_solves_the_eigen_equation() {
        // Reference: the covariance computed entry by entry; every basis row v must satisfy
        // C v = λ v and the rows must be orthonormal.
        let d = 20;
        let mix: Vec<f64> =
            (0..d * d).map(|k| ((k * 7919 % 101) as f64 / 50.0 - 1.0) * (1.0 + (k % d) as f64)).collect();
        let x = gaussian(300, d, &mix, 11);
        let c = naive_covariance(&x, 300, d);
        let p = Fitted::fit(&ALL, &x, 300, d, None, 0).expect("pca").projection().cloned().expect("projection");
        let scale = p.explained_variance[0];
        for (v, &lambda) in p.basis.chunks(d).zip(&p.explained_variance) {
            for i in 0..d {
                let cv: f64 = (0..d).map(|k| c[i * d + k] * v[k]).sum();
                assert!((cv - lambda * v[i]).abs() < 1e-10 * scale, "{cv} vs {}", lambda * v[i]);
            }
        }
        for (i, a) in p.basis.chunks(d).enumerate() {
            for (j, b) in p.basis.chunks(d).enumerate() {
                let dot: f64 = a.iter().zip(b).map(|(a, b)| a * b).sum();
                assert!((dot - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn transformed_training_data_is_decorrelated() {
        // Reference: the covariance of the outputs, by definition. PCA leaves the eigenvalues on
        // its diagonal and zeros off it; whitening leaves the identity.
        let d = 5;
        let mut mix = vec![0.0; d * d];
        (0..d * d)
            .for_each(|k| mix[k] = if k / d == k % d { (k / d + 1) as f64 } else { 0.3 * ((k % 3) as f64 - 1.0) });
        let rows = 400;
        let x = gaussian(rows, d, &mix, 5);
        let pca = Fitted::fit(&ALL, &x, rows, d, None, 0).expect("pca");
        let p = pca.projection().expect("projection");
        let c = naive_covariance(&pca.apply(&x, rows), rows, d);
        let top = p.explained_variance[0];
        for i in 0..d {
            for j in 0..d {
                let want = if i == j { p.explained_variance[i] } else { 0.0 };
                assert!((c[i * d + j] - want).abs() < 1e-5 * top, "({i}, {j}): {} vs {want}", c[i * d + j]);
            }
        }
        let whiten = TransformSpec::Whiten { components: Some(3), variance: None };
        let w = Fitted::fit(&whiten, &x, rows, d, None, 0).expect("whiten");
        assert_eq!((w.inputs(), w.outputs()), (5, 3));
        let c = naive_covariance(&w.apply(&x, rows), rows, 3);
        for (k, v) in c.iter().enumerate() {
            assert!((v - if k / 3 == k % 3 { 1.0 } else { 0.0 }).abs() < 1e-5, "{k}: {v}");
        }
    }
}
