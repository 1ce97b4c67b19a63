//! The normed Wasserstein-1 (earth mover's) distance between two numeric samples, Evidently's
//! default drift measure for numeric columns of more than 1000 reference rows.
//!
//! W₁ = ∫ |F(x) − G(x)| dx for the two empirical distribution functions, computed exactly in one
//! pass over both samples sorted: between consecutive values of the merged samples F and G are
//! constant, so the integral is a sum of rectangles (scipy's `wasserstein_distance`). It is
//! divided by the reference sample's population standard deviation so that the threshold does
//! not depend on the column's units; drift is a normed distance ≥ 0.1, a tenth of a standard
//! deviation.
//!
//! When the reference is constant (standard deviation 0) the distance is divided by 1, i.e. it
//! stays in the column's own units; Evidently divides by max(σ, 0.001) instead, which turns any
//! movement of a constant column into a huge value. (The automatic choice never sends a constant
//! column here: it counts as categorical.)

/// W₁ between two samples, each sorted ascending (NaN-free); 0 when either is empty.
///
/// Computed as ∫₀¹ |F⁻¹(u) − G⁻¹(u)| du, which equals ∫ |F − G| dx: the quantile functions are
/// steps at the multiples of 1/n and 1/m, so the walk over both samples follows integer
/// breakpoints (no comparison of values, whose unpredictable branches dominate a merge), and for
/// n = m it is the mean of |aᵢ − bᵢ|.
pub fn distance(reference: &[f64], current: &[f64]) -> f64 {
    let (n, m) = (reference.len(), current.len());
    if n == 0 || m == 0 {
        return 0.0;
    }
    if n == m {
        let mut lanes = [0.0; 4];
        let (a, b) = (reference.chunks_exact(4), current.chunks_exact(4));
        let tail: f64 = a.remainder().iter().zip(b.remainder()).map(|(x, y)| (x - y).abs()).sum();
        for (x, y) in a.zip(b) {
            for k in 0..4 {
                lanes[k] += (x[k] - y[k]).abs();
            }
        }
        return (lanes.iter().sum::<f64>() + tail) / n as f64;
    }
    // Breakpoints in units of 1/(n·m): sample a's i-th value spans (i·m, (i+1)·m], b's j-th
    // value (j·n, (j+1)·n].
    let (nm, mm) = (n as u128, m as u128);
    let (mut i, mut j, mut at) = (0usize, 0usize, 0u128);
    let mut area = 0.0;
    while i < n && j < m {
        let (end_a, end_b) = ((i as u128 + 1) * mm, (j as u128 + 1) * nm);
        let end = end_a.min(end_b);
        area += (reference[i] - current[j]).abs() * (end - at) as f64;
        at = end;
        i += usize::from(end_a == end);
        j += usize::from(end_b == end);
    }
    area / (n as f64 * m as f64)
}

/// The population standard deviation of `values` (0 when empty).
pub fn population_std(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    (values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// W₁ divided by the reference's population standard deviation (or by 1 when that is 0); both
/// samples sorted ascending.
pub fn normed(reference: &[f64], current: &[f64]) -> f64 {
    let std = population_std(reference);
    let norm = if std > 0.0 && std.is_finite() { std } else { 1.0 };
    distance(reference, current) / norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::tests::{A, B, close, shifted, sorted};

    #[test]
    fn matches_scipy() {
        // scipy.stats.wasserstein_distance(A, B) / np.std(A)
        close(normed(&sorted(&A), &sorted(&B)), 0.33527050965178024, 1e-12);
        // scipy.stats.wasserstein_distance(A, B + 1.5) / np.std(A)
        close(normed(&sorted(&A), &sorted(&shifted(&B, 1.5))), 1.8966385870914781, 1e-12);
        // A shift of every value by c moves the distance by exactly |c|, ties included.
        let r = [1.0, 1.0, 2.0, 3.0];
        assert!((distance(&r, &[3.0, 3.0, 4.0, 5.0]) - 2.0).abs() < 1e-15);
        // scipy.stats.wasserstein_distance([0, 1, 3], [5, 6, 8, 9])
        close(distance(&[0.0, 1.0, 3.0], &[5.0, 6.0, 8.0, 9.0]), 5.666666666666666, 1e-14);
        // Unequal sizes and ties: scipy.stats.wasserstein_distance(A, B[:13]) and
        // scipy.stats.wasserstein_distance([1, 1, 2, 3], [1, 2, 2, 2, 5, 5])
        close(distance(&sorted(&A), &sorted(&B[..13])), 0.3447692307692308, 1e-12);
        close(distance(&r, &[1.0, 2.0, 2.0, 2.0, 5.0, 5.0]), 1.0833333333333335, 1e-14);
        // A constant reference is divided by 1.
        assert_eq!(normed(&[2.0, 2.0], &[2.0, 3.0]), 0.5);
    }
}
