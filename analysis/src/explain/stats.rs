//! The few statistics the explainers share: quantiles of a sorted sample, the mean and standard
//! deviation, Pearson's correlation, and ranks with ties averaged (Spearman's correlation is
//! Pearson's on ranks).

/// The `q` quantile (0 ≤ q ≤ 1) of `sorted`, interpolating linearly between order statistics;
/// NaN for an empty sample.
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The mean and the sample standard deviation (n − 1 in the denominator; 0 for one value).
pub(crate) fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let ss: f64 = v.iter().map(|x| (x - mean) * (x - mean)).sum();
    (mean, (ss / (n - 1.0)).sqrt())
}

/// Pearson's correlation of `a` and `b` (equal lengths); NaN when either is constant, since a
/// constant has no linear relation to anything.
pub(crate) fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa <= 0.0 || sbb <= 0.0 {
        return f64::NAN;
    }
    (sab / (saa.sqrt() * sbb.sqrt())).clamp(-1.0, 1.0)
}

/// The rank of every value of `v` (1-based), tied values sharing the mean of their ranks.
pub(crate) fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut out = vec![0.0; v.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && v[order[end]] == v[order[start]] {
            end += 1;
        }
        // Ranks start + 1 ..= end, whose mean is (start + 1 + end) / 2.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            out[i] = rank;
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_hand_computations() {
        // Positions q · 3 in 1, 2, 4, 8: 0.5 → 1.5, 1/3 → 2.
        assert_eq!(quantile(&[1.0, 2.0, 4.0, 8.0], 0.5 / 3.0), 1.5);
        assert_eq!(quantile(&[1.0, 2.0, 4.0, 8.0], 1.0 / 3.0), 2.0);
        assert_eq!(quantile(&[1.0, 2.0, 4.0, 8.0], 1.0), 8.0);
        assert!(quantile(&[], 0.5).is_nan());
        // Mean 2.5, squares about it 2.25 + .25 + .25 + 2.25 = 5, over 3.
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((s - (5.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert_eq!(mean_std(&[7.0]), (7.0, 0.0));
        // Deviations -1, 0, 1 and -13/6, -1/6, 7/3: 4.5 / √(2 · 61/6) = 0.997949.
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.5]) - 0.997_948_7).abs() < 1e-7);
        assert!(pearson(&[1.0, 1.0], &[1.0, 2.0]).is_nan());
        assert_eq!(ranks(&[10.0, 30.0, 20.0, 30.0]), vec![1.0, 3.5, 2.0, 3.5]);
    }
}
