//! The population stability index, the credit-scoring industry's drift measure:
//! PSI = Σ (cᵢ − rᵢ)·ln(cᵢ/rᵢ) over the shared bins, with rᵢ and cᵢ the reference and current
//! shares. Every term is ≥ 0 (it is the symmetrized Kullback–Leibler divergence). Drift is
//! PSI ≥ 0.1, the usual "some change" line (≥ 0.25 is commonly read as a major shift).
//!
//! The logarithm needs positive shares: give it [`shares`](super::bins::shares), which fills empty
//! bins with 1e-4 as Evidently does; a zero share left in gives an infinite index.

/// PSI between reference shares `r` and current shares `c` (same length, positive).
pub fn index(r: &[f64], c: &[f64]) -> f64 {
    r.iter().zip(c).map(|(&r, &c)| if r == c { 0.0 } else { (c - r) * (c / r).ln() }).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::bins::{numeric, shares};
    use crate::drift::tests::{A, B, close, shifted};

    #[test]
    fn matches_numpy() {
        // r, c as for the Jensen–Shannon test; np.sum((c - r) * np.log(c / r))
        let b = numeric(&A, &B);
        close(index(&shares(&b.reference), &shares(&b.current)), 1.723940997819836, 1e-12);
        let s = shifted(&B, 1.5);
        let b = numeric(&A, &s);
        close(index(&shares(&b.reference), &shares(&b.current)), 4.777975018293166, 1e-12);
        // (0.6-0.5)*ln(0.6/0.5) + (0.4-0.5)*ln(0.4/0.5)
        close(index(&[0.5, 0.5], &[0.6, 0.4]), 0.1 * (1.2f64.ln() - 0.8f64.ln()), 1e-15);
        assert_eq!(index(&[0.3, 0.7], &[0.3, 0.7]), 0.0);
    }
}
