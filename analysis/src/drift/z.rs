//! The two-proportion Z-test for binary columns: does the share of one category differ between the
//! reference and the current sample?
//!
//! With x₁ of n₁ reference rows and x₂ of n₂ current rows in the first category (the first of the
//! union of both samples' categories, in the caller's order), p̂₁ = x₁/n₁, p̂₂ = x₂/n₂, the pooled
//! share p̂ = (x₁ + x₂)/(n₁ + n₂) and z = (p̂₁ − p̂₂)/√(p̂(1 − p̂)(1/n₁ + 1/n₂)); the p-value is
//! two-sided, 2·(1 − Φ(|z|)). Drift is p < 0.05. When both samples hold only one category the
//! pooled spread is 0 and the shares are equal: z = 0, p = 1. The statistic reported is z.

use crate::special::normal_sf;

/// (z, two-sided p-value) for the share of category 0 in `reference` counts against `current`
/// counts; counts past the second category are ignored (the caller rejects them).
pub fn test(reference: &[u64], current: &[u64]) -> (f64, f64) {
    let n1: u64 = reference.iter().take(2).sum();
    let n2: u64 = current.iter().take(2).sum();
    if n1 == 0 || n2 == 0 {
        return (0.0, 1.0);
    }
    let x1 = reference.first().copied().unwrap_or(0) as f64;
    let x2 = current.first().copied().unwrap_or(0) as f64;
    let (n1, n2) = (n1 as f64, n2 as f64);
    let pooled = (x1 + x2) / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se.is_nan() || se <= 0.0 {
        return (0.0, 1.0);
    }
    let z = (x1 / n1 - x2 / n2) / se;
    (z, (2.0 * normal_sf(z.abs())).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::tests::close;

    #[test]
    fn matches_the_pooled_formula() {
        // p1, p2 = 40/100, 45/100; p = 85/200; se = sqrt(p*(1-p)*(1/100+1/100))
        // z = (p1-p2)/se; 2*scipy.stats.norm.sf(abs(z))
        let (z, p) = test(&[40, 60], &[45, 55]);
        close(z, -0.7151985398521514, 1e-13);
        close(p, 0.4744863711713392, 1e-12);
        assert!(p >= 0.05);
        // Same with 40/100 against 140/200.
        let (z, p) = test(&[40, 60], &[140, 60]);
        close(z, -5.0, 1e-13);
        close(p, 5.73303143758389e-07, 1e-12);
        assert!(p < 0.05);
        assert_eq!(test(&[10, 0], &[20, 0]), (0.0, 1.0));
        assert_eq!(test(&[10], &[20]), (0.0, 1.0));
    }
}
