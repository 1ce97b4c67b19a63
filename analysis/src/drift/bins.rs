//! The histogram a reference and a current sample share: the bins the Jensen–Shannon distance,
//! the population stability index and the Hellinger distance compare, and the chart a report
//! draws.
//!
//! - Numeric samples are cut on equal-width edges over the combined minimum..maximum, with
//!   Sturges' rule for the bin count, k = ⌈log₂ n⌉ + 1 for n values in both samples together,
//!   capped at [`MAX_BINS`]. This is numpy's `histogram_bin_edges(np.concatenate([r, c]),
//!   bins="sturges")` (Evidently's choice), and values are counted as `np.histogram` counts them:
//!   bins are half-open `[a, b)` but the last one also holds its right edge. When every value is
//!   the same, the single bin is that value ± ½, as numpy makes it.
//! - Categorical samples have one bin per category, the union of both samples' categories, which
//!   the caller has already matched by level name (two files number their levels independently).
//!
//! [`shares`] turns counts into shares for measures that take logarithms: an empty bin gets the
//! share [`EMPTY_SHARE`] = 1e-4 (as Evidently fills empty bins) and the shares are renormalized to
//! sum to 1, so ln(c/r) stays finite and a category seen only in one sample still counts fully.
//! [`Binned::chart`] gives the plain shares for a report, at most [`MAX_BINS`] bars, never rows.

use serde::{Deserialize, Serialize};

/// The share an empty bin gets before logarithms are taken.
pub const EMPTY_SHARE: f64 = 1e-4;
/// The most bins a numeric histogram or a chart has.
pub const MAX_BINS: usize = 50;

/// Counts per shared bin of the reference and the current sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Binned {
    /// Bin edges (one more than the bins) for numeric samples; `None` for categories.
    pub edges: Option<Vec<f64>>,
    /// One label per bin: a category, or the bin's range.
    pub labels: Vec<String>,
    pub reference: Vec<u64>,
    pub current: Vec<u64>,
}

/// Shares per bin of both samples, for a report's chart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Bin edges for a numeric column (one more than the bins); absent for a categorical one.
    pub edges: Option<Vec<f64>>,
    pub labels: Vec<String>,
    pub reference: Vec<f64>,
    pub current: Vec<f64>,
}

/// Sturges' bin count for `n` values, k = ⌈log₂ n⌉ + 1, between 1 and [`MAX_BINS`].
pub fn sturges(n: usize) -> usize {
    if n <= 1 {
        return 1;
    }
    ((n as f64).log2().ceil() as usize + 1).min(MAX_BINS)
}

/// The smallest and largest of `values` (∞, −∞ when empty), eight lanes at a time.
fn min_max(values: &[f64]) -> (f64, f64) {
    let (mut lo, mut hi) = ([f64::INFINITY; 8], [f64::NEG_INFINITY; 8]);
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for k in 0..8 {
            lo[k] = if chunk[k] < lo[k] { chunk[k] } else { lo[k] };
            hi[k] = if chunk[k] > hi[k] { chunk[k] } else { hi[k] };
        }
    }
    let fold = |a: [f64; 8], f: fn(f64, f64) -> f64| a.into_iter().fold(a[0], f);
    let (lo, hi) = (fold(lo, f64::min), fold(hi, f64::max));
    rest.iter().fold((lo, hi), |(l, h), &x| (l.min(x), h.max(x)))
}

/// Sturges edges for `n` values between `lo` and `hi`, as numpy makes them (see the module doc).
fn edges_between(mut lo: f64, mut hi: f64, n: usize) -> Vec<f64> {
    if lo > hi {
        (lo, hi) = (0.0, 0.0);
    }
    let k = if lo == hi { 1 } else { sturges(n) };
    if lo == hi {
        (lo, hi) = (lo - 0.5, hi + 0.5);
    }
    let step = (hi - lo) / k as f64;
    let mut edges: Vec<f64> = (0..k).map(|i| lo + i as f64 * step).collect();
    edges.push(hi);
    edges
}

/// The shared equal-width edges of two finite numeric samples, as numpy's Sturges rule makes them.
/// Empty samples give the single bin [−½, ½].
pub fn edges(reference: &[f64], current: &[f64]) -> Vec<f64> {
    let ((a, b), (c, d)) = (min_max(reference), min_max(current));
    edges_between(a.min(c), b.max(d), reference.len() + current.len())
}

/// Adds each value of `values` to its bin of `edges` (equal width, at least two edges).
fn count_into(values: &[f64], edges: &[f64], counts: &mut [u64]) {
    let k = counts.len();
    let (lo, hi) = (edges[0], edges[k]);
    let scale = k as f64 / (hi - lo);
    for &x in values {
        if !(lo..=hi).contains(&x) {
            continue;
        }
        let mut i = (((x - lo) * scale) as usize).min(k - 1);
        if x < edges[i] {
            i = i.saturating_sub(1);
        } else if i + 1 < k && x >= edges[i + 1] {
            i += 1;
        }
        counts[i] += 1;
    }
}

/// Counts per bin of an ascending sample: binary searches for the edges, O(k log n).
fn count_sorted(values: &[f64], edges: &[f64]) -> Vec<u64> {
    let k = edges.len() - 1;
    let below = |e: f64| values.partition_point(|&x| x < e);
    let mut starts: Vec<usize> = edges[..k].iter().map(|&e| below(e)).collect();
    starts.push(values.partition_point(|&x| x <= edges[k]));
    starts.windows(2).map(|w| (w[1] - w[0]) as u64).collect()
}

/// The bins of `edges` with their counts and labels.
fn with_labels(edges: Vec<f64>, reference: Vec<u64>, current: Vec<u64>) -> Binned {
    let k = edges.len() - 1;
    let labels = (0..k)
        .map(|i| {
            let close = if i + 1 == k { ']' } else { ')' };
            format!("[{}, {}{close}", short(edges[i]), short(edges[i + 1]))
        })
        .collect();
    Binned { edges: Some(edges), labels, reference, current }
}

/// Bins two finite numeric samples on their shared Sturges edges.
pub fn numeric(reference: &[f64], current: &[f64]) -> Binned {
    let edges = edges(reference, current);
    let k = edges.len() - 1;
    let (mut r, mut c) = (vec![0; k], vec![0; k]);
    count_into(reference, &edges, &mut r);
    count_into(current, &edges, &mut c);
    with_labels(edges, r, c)
}

/// [`numeric`] for samples already sorted ascending, without a pass over the values.
pub fn numeric_sorted(reference: &[f64], current: &[f64]) -> Binned {
    let ends =
        |v: &[f64]| (v.first().copied().unwrap_or(f64::INFINITY), v.last().copied().unwrap_or(f64::NEG_INFINITY));
    let ((a, b), (c, d)) = (ends(reference), ends(current));
    let edges = edges_between(a.min(c), b.max(d), reference.len() + current.len());
    let (r, c) = (count_sorted(reference, &edges), count_sorted(current, &edges));
    with_labels(edges, r, c)
}

/// A number in at most six significant digits, for bin labels.
fn short(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        return "0".into();
    }
    if !(1e-3..1e7).contains(&a) {
        return format!("{x:.3e}");
    }
    let decimals = (5 - a.log10().floor() as i32).clamp(0, 8) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
}

/// Shares of `counts` with every empty bin given [`EMPTY_SHARE`], renormalized to sum to 1.
/// All-zero counts give equal shares.
pub fn shares(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return vec![1.0 / counts.len().max(1) as f64; counts.len()];
    }
    let raw: Vec<f64> = counts.iter().map(|&c| if c == 0 { EMPTY_SHARE } else { c as f64 / total as f64 }).collect();
    let sum: f64 = raw.iter().sum();
    raw.into_iter().map(|s| s / sum).collect()
}

/// Plain shares of `counts` (zero for an empty sample).
pub fn plain_shares(counts: &[u64]) -> Vec<f64> {
    let total = counts.iter().sum::<u64>().max(1) as f64;
    counts.iter().map(|&c| c as f64 / total).collect()
}

impl Binned {
    /// The chart of these bins: plain shares; past [`MAX_BINS`] categories, the
    /// `MAX_BINS - 1` most frequent (both samples together) and one bar for all others.
    pub fn chart(&self) -> Histogram {
        let (r, c) = (plain_shares(&self.reference), plain_shares(&self.current));
        if self.labels.len() <= MAX_BINS {
            return Histogram { edges: self.edges.clone(), labels: self.labels.clone(), reference: r, current: c };
        }
        let mut order: Vec<usize> = (0..self.labels.len()).collect();
        order.sort_by(|&a, &b| (r[b] + c[b]).total_cmp(&(r[a] + c[a])).then(a.cmp(&b)));
        let (top, rest) = order.split_at(MAX_BINS - 1);
        let mut chart = Histogram {
            edges: None,
            labels: top.iter().map(|&i| self.labels[i].clone()).collect(),
            reference: top.iter().map(|&i| r[i]).collect(),
            current: top.iter().map(|&i| c[i]).collect(),
        };
        chart.labels.push(format!("({} others)", rest.len()));
        chart.reference.push(rest.iter().map(|&i| r[i]).sum());
        chart.current.push(rest.iter().map(|&i| c[i]).sum());
        chart
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_bins_match_numpy() {
        let r = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        let c = [2.5, 7.0, 10.0, 10.0];
        // np.histogram_bin_edges(r + c, bins="sturges") -> 5 bins of width 2 over 0..10;
        // np.histogram(r, e)[0] -> [2, 2, 2, 0, 0]; np.histogram(c, e)[0] -> [0, 1, 0, 1, 2].
        let b = numeric(&r, &c);
        assert_eq!(b.edges, Some(vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]));
        assert_eq!(b.reference, vec![2, 2, 2, 0, 0]);
        assert_eq!(b.current, vec![0, 1, 0, 1, 2]);
        assert_eq!(b.labels[0], "[0, 2)");
        assert_eq!(b.labels[4], "[8, 10]");
        let mut sc = c;
        sc.sort_unstable_by(f64::total_cmp);
        assert_eq!(numeric_sorted(&r, &sc), b);
        // One value everywhere: numpy's single bin [x − ½, x + ½].
        let b = numeric(&[3.0, 3.0], &[3.0]);
        assert_eq!(b.edges, Some(vec![2.5, 3.5]));
        assert_eq!((b.reference, b.current), (vec![2], vec![1]));
        assert_eq!(sturges(1000), 11);
        assert_eq!(sturges(1024), 11);
        assert_eq!(sturges(1025), 12);
        assert_eq!(sturges(usize::MAX), MAX_BINS);
    }

    #[test]
    fn shares_fill_empty_bins_and_sum_to_one() {
        let s = shares(&[3, 0, 1]);
        let sum = 1.0 + EMPTY_SHARE;
        assert!((s[0] - 0.75 / sum).abs() < 1e-15 && (s[1] - EMPTY_SHARE / sum).abs() < 1e-15, "{s:?}");
        assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        assert_eq!(plain_shares(&[3, 0, 1]), vec![0.75, 0.0, 0.25]);
        assert_eq!(shares(&[0, 0]), vec![0.5, 0.5]);
    }

    #[test]
    fn charts_keep_at_most_max_bins() {
        let n = 60;
        let labels: Vec<String> = (0..n).map(|i| format!("l{i:02}")).collect();
        let reference: Vec<u64> = (0..n as u64).collect();
        let b = Binned { edges: None, labels, reference: reference.clone(), current: reference };
        let chart = b.chart();
        assert_eq!(chart.labels.len(), MAX_BINS);
        assert_eq!(chart.labels[0], "l59");
        assert_eq!(chart.labels[MAX_BINS - 1], "(11 others)");
        assert!((chart.reference.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(short(0.1 + 0.2), "0.3");
        assert_eq!(short(-1234.5678), "-1234.57");
        assert_eq!(short(1e-9), "1.000e-9");
    }
}
