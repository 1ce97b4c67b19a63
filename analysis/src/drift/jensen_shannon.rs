//! The Jensen–Shannon distance between the two samples' histograms, Evidently's default drift
//! measure for categorical columns of more than 1000 reference rows.
//!
//! With the shared bins' shares p (reference) and q (current) and their mixture m = (p + q)/2,
//! the divergence is JS = ½ Σ pᵢ ln(pᵢ/mᵢ) + ½ Σ qᵢ ln(qᵢ/mᵢ) in nats, and the distance is √JS,
//! between 0 and √ln 2 ≈ 0.83 (scipy's `spatial.distance.jensenshannon` with its default natural
//! base). Drift is a distance ≥ 0.1. The shares come from [`shares`](super::bins::shares), with
//! empty bins filled as Evidently fills them; zero shares would be fine too (0·ln 0 = 0).

/// x ln(x/y), with 0 ln 0 = 0.
fn rel_entr(x: f64, y: f64) -> f64 {
    if x > 0.0 && y > 0.0 { x * (x / y).ln() } else { 0.0 }
}

/// √JS between two share vectors of equal length, each normalized here to sum to 1.
pub fn distance(p: &[f64], q: &[f64]) -> f64 {
    let (sp, sq) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    if !(sp > 0.0 && sq > 0.0) {
        return 0.0;
    }
    let divergence: f64 = p
        .iter()
        .zip(q)
        .map(|(&a, &b)| {
            let (a, b) = (a / sp, b / sq);
            let m = 0.5 * (a + b);
            0.5 * (rel_entr(a, m) + rel_entr(b, m))
        })
        .sum();
    divergence.max(0.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::bins::{numeric, shares};
    use crate::drift::tests::{A, B, close, shifted};

    #[test]
    fn matches_scipy() {
        // e = np.histogram_bin_edges(np.concatenate([A, B]), bins="sturges")
        // r, c = (np.histogram(x, e)[0] / len(x) for x in (A, B)); fill zeros with 1e-4, renormalize
        // scipy.spatial.distance.jensenshannon(r, c)
        let b = numeric(&A, &B);
        close(distance(&shares(&b.reference), &shares(&b.current)), 0.35586038588251595, 1e-12);
        let s = shifted(&B, 1.5);
        let b = numeric(&A, &s);
        close(distance(&shares(&b.reference), &shares(&b.current)), 0.5162807712631379, 1e-12);
        // scipy.spatial.distance.jensenshannon([0.5, 0.5, 0], [0, 0.1, 0.9])
        close(distance(&[0.5, 0.5, 0.0], &[0.0, 0.1, 0.9]), 0.7469797975180145, 1e-12);
        assert_eq!(distance(&[0.2, 0.8], &[0.2, 0.8]), 0.0);
        // Disjoint supports reach the maximum √ln 2.
        close(distance(&[1.0, 0.0], &[0.0, 1.0]), 2f64.ln().sqrt(), 1e-15);
    }
}
