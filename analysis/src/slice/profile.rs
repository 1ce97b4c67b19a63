//! What one share of the data says about a column to slice by, before the slices are fixed: its
//! text values, or for numbers its few distinct values and a sketch of their order statistics.
//! Profiles of the shards of a file merge into the [`Rule`](super::rule::Rule) every shard then
//! slices by, so that a slice means the same rows on every worker.

use serde::{Deserialize, Serialize};

use crate::frame::Column;

/// A numeric column with at most this many distinct values is sliced by value, not by bucket.
pub const MAX_VALUES: usize = 10;

/// Order statistics a shard sends for a column of many numbers: quantiles over the merged
/// sketches are exact for shards of up to this many rows, and off by less than a shard's rows
/// over this many in rank above.
pub const SKETCH_POINTS: usize = 65_536;

/// Evenly spaced order statistics of a column's numbers (all of them when few).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sketch {
    /// The numbers it stands for (not NaN).
    pub rows: usize,
    /// Sorted; the first and last are the column's minimum and maximum.
    pub points: Vec<f64>,
}

impl Sketch {
    /// The sketch of `values` with at most `cap` points (at least 2).
    pub fn of(values: &[f64], cap: usize) -> Self {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        sorted.sort_unstable_by(f64::total_cmp);
        let rows = sorted.len();
        let cap = cap.max(2);
        if rows <= cap {
            return Self { rows, points: sorted };
        }
        let points = (0..cap).map(|i| sorted[i * (rows - 1) / (cap - 1)]).collect();
        Self { rows, points }
    }

    /// The nearest-rank quantiles `qs` of the numbers of all `sketches` together: the value of
    /// rank `round(q (n - 1))` among all n, where each point of a sketch stands for its share of
    /// that sketch's rows.
    pub fn quantiles(sketches: &[&Sketch], qs: &[f64]) -> Vec<f64> {
        let mut weighted: Vec<(f64, f64)> = sketches
            .iter()
            .filter(|s| !s.points.is_empty())
            .flat_map(|s| {
                let w = s.rows as f64 / s.points.len() as f64;
                s.points.iter().map(move |&p| (p, w))
            })
            .collect();
        weighted.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let n: usize = sketches.iter().map(|s| s.rows).sum();
        if weighted.is_empty() {
            return vec![f64::NAN; qs.len()];
        }
        let mut cumulative = Vec::with_capacity(weighted.len());
        let mut total = 0.0;
        for &(_, w) in &weighted {
            total += w;
            cumulative.push(total);
        }
        qs.iter()
            .map(|q| {
                let rank = (q * (n.max(1) - 1) as f64).round();
                // The first point whose rows reach past `rank` (0-based).
                let at = cumulative.partition_point(|&c| c <= rank + 1e-9).min(weighted.len() - 1);
                weighted[at].0
            })
            .collect()
    }
}

/// One shard's view of a slice column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Profile {
    /// A column with text: its distinct values, sorted.
    Text(Vec<String>),
    Numbers {
        /// The distinct values, sorted, when there are at most [`MAX_VALUES`].
        distinct: Option<Vec<f64>>,
        sketch: Sketch,
    },
}

impl Profile {
    /// The profile of `column`, its sketch at most `cap` points.
    pub fn of(column: &Column, cap: usize) -> Self {
        match column {
            Column::Categorical { levels, .. } => Profile::Text(levels.clone()),
            Column::Numeric(v) => {
                let mut distinct: Vec<f64> = Vec::new();
                for &x in v.iter().filter(|x| !x.is_nan()) {
                    if let Err(at) = distinct.binary_search_by(|d| d.total_cmp(&x)) {
                        distinct.insert(at, x);
                        if distinct.len() > MAX_VALUES {
                            break;
                        }
                    }
                }
                let distinct = (distinct.len() <= MAX_VALUES).then_some(distinct);
                let sketch = Sketch::of(v, cap);
                Profile::Numbers { distinct, sketch }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_full_sketches_are_the_exact_order_statistics() {
        let v: Vec<f64> = (0..101).map(|i| f64::from((i * 37) % 101)).collect();
        let (a, b) = (Sketch::of(&v[..40], 1000), Sketch::of(&v[40..], 1000));
        let q = Sketch::quantiles(&[&a, &b], &[0.0, 0.25, 0.5, 0.9, 1.0]);
        // 0..=100 shuffled: rank round(q · 100) is the value itself.
        assert_eq!(q, vec![0.0, 25.0, 50.0, 90.0, 100.0]);
    }

    #[test]
    fn capped_sketches_stay_within_a_shards_share_of_rank() {
        let v: Vec<f64> = (0..100_000).map(f64::from).collect();
        let parts: Vec<Sketch> = v.chunks(25_000).map(|c| Sketch::of(c, 500)).collect();
        let refs: Vec<&Sketch> = parts.iter().collect();
        let q = Sketch::quantiles(&refs, &[0.1, 0.5, 0.75]);
        for (got, want) in q.iter().zip([10_000.0, 50_000.0, 75_000.0]) {
            // 25,000 rows in 500 points: 50 rows a point.
            assert!((got - want).abs() <= 100.0, "{got} vs {want}");
        }
        assert_eq!(parts[0].points[0], 0.0);
        assert_eq!(*parts[3].points.last().expect("points"), 99_999.0);
    }

    #[test]
    fn few_distinct_numbers_are_listed() {
        let p = Profile::of(&Column::Numeric(vec![2.0, 1.0, 2.0, f64::NAN]), 10);
        assert_eq!(
            p,
            Profile::Numbers {
                distinct: Some(vec![1.0, 2.0]),
                sketch: Sketch { rows: 3, points: vec![1.0, 2.0, 2.0] }
            }
        );
        let many = Profile::of(&Column::Numeric((0..50).map(f64::from).collect()), 10);
        assert!(matches!(many, Profile::Numbers { distinct: None, .. }));
    }
}
