//! Pearson's chi-square goodness-of-fit test of the current sample's category counts against the
//! reference sample's proportions, as Evidently applies it to categorical columns.
//!
//! The categories are the union of both samples' (matched by name by the caller). The expected
//! count of category i is rᵢ·m, the reference share times the current total, and the statistic is
//! Σ (oᵢ − eᵢ)²/eᵢ with k − 1 degrees of freedom for k categories; drift is p < 0.05.
//!
//! A category the reference never saw would have an expected count of 0 and an infinite statistic
//! (scipy's `chisquare` returns inf there). Instead every empty reference category gets the share
//! [`EMPTY_SHARE`](super::bins::EMPTY_SHARE) = 1e-4 and the shares are renormalized to sum to 1
//! ([`shares`]): a new category in the current data still pushes the
//! statistic up sharply, but by a finite amount that grows with its count. With a single category
//! there is nothing to compare: the statistic is 0 and p = 1.

use super::bins::shares;
use crate::special::chi_square_sf;

/// (χ², p-value) of `current` counts against the proportions of `reference` counts, per category.
pub fn test(reference: &[u64], current: &[u64]) -> (f64, f64) {
    let k = reference.len().min(current.len());
    let m: u64 = current[..k].iter().sum();
    if k < 2 || m == 0 {
        return (0.0, 1.0);
    }
    let expected = shares(&reference[..k]);
    let statistic: f64 = expected
        .iter()
        .zip(&current[..k])
        .map(|(&r, &o)| {
            let e = r * m as f64;
            (o as f64 - e).powi(2) / e
        })
        .sum();
    (statistic, chi_square_sf(statistic, (k - 1) as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::tests::close;

    #[test]
    fn matches_scipy() {
        // scipy.stats.chisquare([28, 22, 37, 13], [30, 20, 40, 10]) (equal totals, so no scaling)
        let (s, p) = test(&[30, 20, 40, 10], &[28, 22, 37, 13]);
        close(s, 1.4583333333333335, 1e-13);
        close(p, 0.6919198137398298, 1e-12);
        assert!(p >= 0.05);
        // scipy.stats.chisquare([10, 20, 40, 30], [30, 20, 40, 10])
        let (s, p) = test(&[30, 20, 40, 10], &[10, 20, 40, 30]);
        close(s, 53.333333333333336, 1e-13);
        close(p, 1.5566059901364668e-11, 1e-11);
        assert!(p < 0.05);
        // Reference 100 rows, current 50: expected = reference share × 50.
        // r = np.array([30, 20, 50, 0]) / 100; r[r == 0] = 1e-4; r /= r.sum()
        // scipy.stats.chisquare([15, 10, 24, 1], r * 50)
        let (s, p) = test(&[30, 20, 50, 0], &[15, 10, 24, 1]);
        close(s, 198.06480399999998, 1e-12);
        close(p, 1.1048270972395662e-42, 1e-10);
        assert!(p < 0.05);
        assert_eq!(test(&[5], &[7]), (0.0, 1.0));
    }
}
