//! The dense linear algebra behind the transforms: means and covariances of a row-major data
//! matrix (in f64, two passes), the Cholesky factor of a positive-definite matrix, and the
//! generalized symmetric-definite eigenproblem A v = λ B v that linear discriminant analysis
//! solves. Matrices are row-major `Vec<f64>`s with their dimension passed alongside.

use super::eigen::Eigen;
use crate::error::{AnalysisError, Result};

/// Rows centred and multiplied together per block: the d × d accumulator is then read once per
/// block rather than once per row, which keeps a covariance of hundreds of columns compute-bound.
const BLOCK: usize = 64;

/// The mean and covariance of the rows of a data matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Moments {
    pub rows: usize,
    pub dim: usize,
    pub mean: Vec<f64>,
    /// `dim × dim`, row-major, with divisor `rows − 1` (the unbiased sample covariance, as
    /// `numpy.cov` computes it).
    pub covariance: Vec<f64>,
}

/// Checks that `x` is a finite `rows × d` matrix with at least `min_rows` rows.
pub fn check_matrix<T: Copy + Into<f64>>(x: &[T], rows: usize, d: usize, min_rows: usize) -> Result<()> {
    if d == 0 {
        return Err(AnalysisError::invalid("data", "has no columns"));
    }
    if x.len() != rows * d {
        return Err(AnalysisError::invalid("data", format!("has {} values, not {rows} rows × {d} columns", x.len())));
    }
    if rows < min_rows {
        return Err(AnalysisError::invalid("data", format!("has {rows} rows; at least {min_rows} are needed")));
    }
    if let Some(i) = x.iter().position(|&v| !v.into().is_finite()) {
        return Err(AnalysisError::invalid(
            "data",
            format!("row {} column {} is not a finite number ({})", i / d, i % d, x[i].into()),
        ));
    }
    Ok(())
}

/// The spread to divide a column by when standardizing: its standard deviation, or 1 when that is
/// zero up to rounding. f32 features sum exactly in f64, but the mean of n equal f64 values can be
/// an ulp off them (three 0.1s), and dividing such a constant column's rounding-sized deviations
/// by their own spread would make them look like a column of unit variance; 10⁻¹¹ of the mean is
/// far below any difference an f32 can hold and above the rounding of a mean of millions of rows.
pub fn scale_of(variance: f64, mean: f64) -> f64 {
    let s = variance.max(0.0).sqrt();
    if s > 1e-11 * mean.abs() && s.is_finite() { s } else { 1.0 }
}

/// The per-column mean of the `rows × d` matrix `x`.
pub fn mean<T: Copy + Into<f64>>(x: &[T], rows: usize, d: usize) -> Vec<f64> {
    let mut m = vec![0.0; d];
    for row in x.chunks_exact(d) {
        m.iter_mut().zip(row).for_each(|(m, &v)| *m += v.into());
    }
    m.iter_mut().for_each(|m| *m /= rows as f64);
    m
}

/// The mean and sample covariance of the finite `rows × d` matrix `x` (at least two rows):
/// first the mean, then the products of the centred rows, so that a large offset costs no
/// precision.
pub fn covariance<T: Copy + Into<f64>>(x: &[T], rows: usize, d: usize) -> Result<Moments> {
    check_matrix(x, rows, d, 2)?;
    let mean = mean(x, rows, d);
    let mut covariance = scatter(x, d, |_| &mean);
    covariance.iter_mut().for_each(|c| *c /= (rows - 1) as f64);
    Ok(Moments { rows, dim: d, mean, covariance })
}

/// Σᵢ (xᵢ − cᵢ)(xᵢ − cᵢ)ᵀ over the rows of `x`, where `center(i)` is row i's centre (the mean,
/// or its class's mean). Full symmetric d × d.
pub fn scatter<'a, T: Copy + Into<f64>>(x: &[T], d: usize, center: impl Fn(usize) -> &'a [f64]) -> Vec<f64> {
    let mut acc = vec![0.0; d * d];
    // Column j of a block of centred rows is `cols[j * BLOCK..]`, so each product is one
    // contiguous dot product.
    let mut cols = vec![0.0; d * BLOCK];
    for (b, block) in x.chunks(d * BLOCK).enumerate() {
        let n = block.len() / d;
        if n < BLOCK {
            // The last, partial block: zero rows add nothing to the products.
            cols.iter_mut().for_each(|c| *c = 0.0);
        }
        for (r, row) in block.chunks_exact(d).enumerate() {
            let c = center(b * BLOCK + r);
            for j in 0..d {
                cols[j * BLOCK + r] = row[j].into() - c[j];
            }
        }
        for i in 0..d {
            let ci = &cols[i * BLOCK..i * BLOCK + BLOCK];
            let mut j = i;
            while j + 4 <= d {
                let sums = dot4(ci, &cols[j * BLOCK..(j + 4) * BLOCK]);
                acc[i * d + j..i * d + j + 4].iter_mut().zip(sums).for_each(|(a, s)| *a += s);
                j += 4;
            }
            for j in j..d {
                acc[i * d + j] += dot(ci, &cols[j * BLOCK..j * BLOCK + BLOCK]);
            }
        }
    }
    for i in 0..d {
        for j in 0..i {
            acc[i * d + j] = acc[j * d + i];
        }
    }
    acc
}

/// The dot product of two [`BLOCK`]-long slices, in eight independent sums: a single running
/// sum must be added in order, which keeps the compiler from using vector instructions.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut lanes = [0.0; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    lanes.iter().sum()
}

/// The dot products of `a` with the four consecutive [`BLOCK`]-long slices of `b`, each in four
/// lanes: `a` is loaded once for all four.
fn dot4(a: &[f64], b: &[f64]) -> [f64; 4] {
    let (b0, rest) = b.split_at(BLOCK);
    let (b1, rest) = rest.split_at(BLOCK);
    let (b2, b3) = rest.split_at(BLOCK);
    let mut s = [[0.0; 4]; 4];
    for k in (0..BLOCK).step_by(4) {
        let x = &a[k..k + 4];
        for (s, b) in s.iter_mut().zip([b0, b1, b2, b3]) {
            for l in 0..4 {
                s[l] += x[l] * b[k + l];
            }
        }
    }
    s.map(|s| s.iter().sum())
}

/// The lower-triangular L with L Lᵀ = `a` (symmetric positive definite, `d × d`), row-major
/// with zeros above the diagonal.
pub fn cholesky(a: &[f64], d: usize) -> Result<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let dot: f64 = (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum();
            let v = a[i * d + j] - dot;
            if i == j {
                if v <= 0.0 || !v.is_finite() {
                    return Err(AnalysisError::invalid(
                        "matrix",
                        format!("is not positive definite (pivot {i} is {v:e})"),
                    ));
                }
                l[i * d + i] = v.sqrt();
            } else {
                l[i * d + j] = v / l[j * d + j];
            }
        }
    }
    Ok(l)
}

/// Solves L y = b in place for lower-triangular L.
fn forward(l: &[f64], d: usize, b: &mut [f64]) {
    for i in 0..d {
        let s: f64 = (0..i).map(|k| l[i * d + k] * b[k]).sum();
        b[i] = (b[i] - s) / l[i * d + i];
    }
}

/// Solves Lᵀ y = b in place for lower-triangular L.
fn backward(l: &[f64], d: usize, b: &mut [f64]) {
    for i in (0..d).rev() {
        let s: f64 = (i + 1..d).map(|k| l[k * d + i] * b[k]).sum();
        b[i] = (b[i] - s) / l[i * d + i];
    }
}

/// The generalized eigenproblem A v = λ B v for symmetric A and symmetric positive
/// semi-definite B (both `d × d`), i.e. the eigenvectors of B⁻¹A. B gets a ridge of `ridge`
/// times its mean diagonal entry first, so that a B singular by a constant or duplicated column
/// still factors; then with B = L Lᵀ, C = L⁻¹ A L⁻ᵀ is symmetric with the same eigenvalues, and
/// v = L⁻ᵀ w for each eigenvector w of C. The returned vectors are B-orthonormal (vᵀ B v = 1, with
/// the ridged B) under the largest-component-positive sign convention, values descending.
pub fn generalized_eigen(a: &[f64], b: &[f64], d: usize, ridge: f64) -> Result<Eigen> {
    let mut b = b.to_vec();
    let mean_diag = (0..d).map(|i| b[i * d + i]).sum::<f64>() / d as f64;
    let lift = ridge * if mean_diag > 0.0 { mean_diag } else { 1.0 };
    (0..d).for_each(|i| b[i * d + i] += lift);
    let l = cholesky(&b, d)?;
    // C = L⁻¹ A L⁻ᵀ: solve L Y = A column by column (A symmetric: its columns are its rows),
    // then L C = Yᵀ the same way.
    let mut y = vec![0.0; d * d];
    for j in 0..d {
        let mut col = a[j * d..j * d + d].to_vec();
        forward(&l, d, &mut col);
        (0..d).for_each(|i| y[i * d + j] = col[i]);
    }
    let mut c = vec![0.0; d * d];
    for i in 0..d {
        let mut col = y[i * d..i * d + d].to_vec();
        forward(&l, d, &mut col);
        (0..d).for_each(|k| c[k * d + i] = col[k]);
    }
    let e = Eigen::symmetric(&c, d)?;
    let mut vectors = vec![0.0; d * d];
    for j in 0..d {
        let mut v = e.vector(j);
        backward(&l, d, &mut v);
        let lead = v.iter().fold(0.0f64, |m, &x| if x.abs() > m.abs() { x } else { m });
        let sign = if lead < 0.0 { -1.0 } else { 1.0 };
        (0..d).for_each(|i| vectors[i * d + j] = sign * v[i]);
    }
    Ok(Eigen { dim: d, values: e.values, vectors })
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn covariance_matches_the_textbook_formula() {
        // Reference: numpy.cov(x, rowvar=False) of these rows is computed by hand below: mean
        // (2, 4, 1e9), and the third column (offset by 1e9) has the first column's spread.
        let x = [1.0, 2.0, 1e9 + 1.0, 2.0, 4.0, 1e9 + 2.0, 3.0, 6.0, 1e9 + 3.0, 2.0, 4.0, 1e9 - 2.0];
        let m = covariance(&x, 4, 3).expect("covariance");
        assert_eq!(m.mean[..2], [2.0, 4.0]);
        // Deviations: a = (−1, 0, 1, 0), b = 2a, c = (1, 2, 3, −2) − 1 = (0, 1, 2, −3).
        let want = [2.0 / 3.0, 4.0 / 3.0, 2.0 / 3.0, 4.0 / 3.0, 8.0 / 3.0, 4.0 / 3.0, 2.0 / 3.0, 4.0 / 3.0, 14.0 / 3.0];
        for (g, w) in m.covariance.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
        // More rows than one block, as f32: the blocked sums equal a row-by-row loop.
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let (rows, d) = (150, 5);
        let x: Vec<f32> = (0..rows * d).map(|_| rng.random_range(-3.0..3.0)).collect();
        let m = covariance(&x, rows, d).expect("covariance");
        for i in 0..d {
            for j in 0..d {
                let s: f64 =
                    x.chunks(d).map(|r| (f64::from(r[i]) - m.mean[i]) * (f64::from(r[j]) - m.mean[j])).sum::<f64>()
                        / (rows - 1) as f64;
                assert!((m.covariance[i * d + j] - s).abs() < 1e-12);
            }
        }
        assert!(covariance(&[1.0, 2.0], 1, 2).is_err());
        let err = covariance(&[1.0, f64::NAN, 2.0, 3.0], 2, 2).expect_err("NaN");
        assert!(err.to_string().starts_with("data: row 0 column 1 is not a finite number"), "{err}");
    }

    #[test]
    fn cholesky_and_the_generalized_problem() {
        // Reference: B = L Lᵀ by multiplication; A v = λ B v and vᵀ B v = 1 checked directly.
        let b = [4.0, 2.0, 0.4, 2.0, 5.0, 1.0, 0.4, 1.0, 3.0];
        let l = cholesky(&b, 3).expect("cholesky");
        for i in 0..3 {
            for j in 0..3 {
                let s: f64 = (0..3).map(|k| l[i * 3 + k] * l[j * 3 + k]).sum();
                assert!((s - b[i * 3 + j]).abs() < 1e-14);
            }
        }
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_err());
        let a = [1.0, 0.5, -0.2, 0.5, 2.0, 0.3, -0.2, 0.3, 0.7];
        let e = generalized_eigen(&a, &b, 3, 0.0).expect("generalized");
        for j in 0..3 {
            let v = e.vector(j);
            let bv: Vec<f64> = (0..3).map(|i| (0..3).map(|k| b[i * 3 + k] * v[k]).sum()).collect();
            let av: Vec<f64> = (0..3).map(|i| (0..3).map(|k| a[i * 3 + k] * v[k]).sum()).collect();
            assert!(av.iter().zip(&bv).all(|(x, y)| (x - e.values[j] * y).abs() < 1e-13));
            assert!((v.iter().zip(&bv).map(|(x, y)| x * y).sum::<f64>() - 1.0).abs() < 1e-13);
        }
        // A singular B (a zero column) factors once ridged.
        let singular = [1.0, 0.0, 0.0, 0.0];
        assert!(generalized_eigen(&[1.0, 0.0, 0.0, 1.0], &singular, 2, 1e-6).is_ok());
    }
}
