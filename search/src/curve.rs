//! Learning-curve extrapolation: fits a few parametric families to a trial's partial validation
//! curve (score against the share of its budget used) and predicts where it will end. A trial
//! whose optimistic prediction is still below the best final score so far is unlikely to beat it.

/// Families y(x) on x in (0, 1], each fitted by a scan over its shape parameter with the linear
/// coefficients solved by least squares.
const FAMILIES: [(&str, f64, f64); 3] = [("pow", 0.05, 3.0), ("exp", 0.25, 16.0), ("log", 0.0, 0.0)];

/// Shape parameters scanned for a family: 32 points spaced geometrically over its range.
fn shapes(lo: f64, hi: f64) -> Vec<f64> {
    if lo <= 0.0 {
        return vec![0.0];
    }
    (0..32).map(|i| lo * (hi / lo).powf(i as f64 / 31.0)).collect()
}

fn basis(family: &str, shape: f64, x: f64) -> f64 {
    let x = x.max(1e-6);
    match family {
        // y = a - b x^-c  ->  basis x^-c (b negative for rising curves)
        "pow" => x.powf(-shape),
        // y = a - b e^{-c x}
        "exp" => (-shape * x).exp(),
        // y = a + b ln x
        _ => x.ln(),
    }
}

/// One fitted family: prediction at x = 1 and root-mean-square residual.
#[derive(Clone, Copy, Debug)]
pub struct Fit {
    pub at_end: f64,
    pub rmse: f64,
}

/// Least-squares fit of y = a + b f(x) for every family and shape; the best shape per family.
pub fn fits(points: &[(f64, f64)]) -> Vec<Fit> {
    let mut out = Vec::new();
    for (family, lo, hi) in FAMILIES {
        let mut best: Option<Fit> = None;
        for c in shapes(lo, hi) {
            let Some((a, b)) = linear_fit(points, |x| basis(family, c, x)) else { continue };
            let rmse = (points.iter().map(|&(x, y)| (a + b * basis(family, c, x) - y).powi(2)).sum::<f64>()
                / points.len() as f64)
                .sqrt();
            let fit = Fit { at_end: a + b * basis(family, c, 1.0), rmse };
            if best.is_none_or(|f| fit.rmse < f.rmse) {
                best = Some(fit);
            }
        }
        out.extend(best);
    }
    out
}

fn linear_fit(points: &[(f64, f64)], f: impl Fn(f64) -> f64) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    let (mut sf, mut sy, mut sff, mut sfy) = (0.0, 0.0, 0.0, 0.0);
    for &(x, y) in points {
        let v = f(x);
        sf += v;
        sy += y;
        sff += v * v;
        sfy += v * y;
    }
    let det = n * sff - sf * sf;
    if det.abs() < 1e-12 || !det.is_finite() {
        return None;
    }
    let b = (n * sfy - sf * sy) / det;
    let a = (sy - b * sf) / n;
    (a.is_finite() && b.is_finite()).then_some((a, b))
}

/// The optimistic end of a curve: the highest family prediction plus `z` times the spread of the
/// fits (residuals and disagreement between families), never below the best score seen yet.
pub fn optimistic_end(points: &[(f64, f64)], z: f64) -> Option<f64> {
    let fits = fits(points);
    if fits.is_empty() {
        return None;
    }
    let preds: Vec<f64> = fits.iter().map(|f| f.at_end).collect();
    let mean = preds.iter().sum::<f64>() / preds.len() as f64;
    let disagreement = (preds.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / preds.len() as f64).sqrt();
    let rmse = fits.iter().map(|f| f.rmse).fold(f64::INFINITY, f64::min);
    let top = preds.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let seen = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    Some((top + z * (rmse + disagreement)).max(seen))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(end: f64, k: f64, upto: f64) -> Vec<(f64, f64)> {
        (1..=20)
            .map(|i| i as f64 / 20.0)
            .filter(|x| *x <= upto)
            .map(|x| (x, end - (end - 0.1) * (-k * x).exp()))
            .collect()
    }

    #[test]
    fn extrapolates_a_saturating_curve() {
        let pts = curve(0.9, 4.0, 0.4);
        let fits = fits(&pts);
        let exp = fits[1];
        let truth = 0.9 - 0.8 * (-4.0f64).exp();
        assert!((exp.at_end - truth).abs() < 0.02, "{exp:?} vs {truth}");
        let hi = optimistic_end(&pts, 2.0).expect("fit");
        assert!(hi >= truth - 0.01 && hi < 1.05, "{hi}");
    }

    #[test]
    fn a_flat_poor_curve_stays_poor() {
        let pts: Vec<(f64, f64)> = (1..=6).map(|i| (i as f64 / 20.0, 0.3 + 0.002 * i as f64)).collect();
        let hi = optimistic_end(&pts, 2.0).expect("fit");
        assert!(hi < 0.5, "{hi}");
    }
}
