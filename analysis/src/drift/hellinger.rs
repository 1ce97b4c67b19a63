//! The Hellinger distance between the two samples' histograms:
//! H = √(Σ (√pᵢ − √qᵢ)²)/√2, from 0 (same shares) to 1 (disjoint bins). Drift is H ≥ 0.1.
//!
//! No logarithm is taken, so an empty bin needs no filling: the caller passes the plain shares
//! ([`plain_shares`](super::bins::plain_shares)), as Evidently does for this measure, and the
//! distance stays exact.

/// H between two share vectors of equal length (each summing to 1).
pub fn distance(p: &[f64], q: &[f64]) -> f64 {
    let sum: f64 = p.iter().zip(q).map(|(&a, &b)| (a.max(0.0).sqrt() - b.max(0.0).sqrt()).powi(2)).sum();
    (sum / 2.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::bins::{numeric, plain_shares};
    use crate::drift::tests::{A, B, close, shifted};

    #[test]
    fn matches_numpy() {
        // r, c = (np.histogram(x, e)[0] / len(x) for x in (A, B)) with e as for Jensen–Shannon
        // np.sqrt(np.sum((np.sqrt(r) - np.sqrt(c)) ** 2)) / np.sqrt(2)
        let b = numeric(&A, &B);
        close(distance(&plain_shares(&b.reference), &plain_shares(&b.current)), 0.3894928280698992, 1e-12);
        let s = shifted(&B, 1.5);
        let b = numeric(&A, &s);
        close(distance(&plain_shares(&b.reference), &plain_shares(&b.current)), 0.59476917843797, 1e-12);
        close(distance(&[1.0, 0.0], &[0.0, 1.0]), 1.0, 1e-15);
        assert_eq!(distance(&[0.25, 0.75], &[0.25, 0.75]), 0.0);
    }
}
