//! The two samples a drift test compares, taken from a reference and a current column: finite
//! numbers, or counts per category over the union of both columns' categories.
//!
//! NaN cells count as missing and are skipped (as Evidently drops missing values); an infinite
//! value in a column compared as numbers is an error, since no distance or bin holds it.
//! Categories are matched by their text, because two files number their levels independently;
//! levels no row uses are dropped. A numeric column compared as categories has its distinct
//! values as the categories, in numeric order, labelled by their shortest decimal form.

use std::collections::BTreeMap;

use crate::error::{AnalysisError, Result};
use crate::frame::Column;

/// Two samples ready for a test.
pub(super) enum Sample {
    /// Finite values, in column order.
    Numeric { reference: Vec<f64>, current: Vec<f64> },
    /// Counts per category of both samples; `labels` is the union of the categories.
    Categorical { labels: Vec<String>, reference: Vec<u64>, current: Vec<u64> },
}

const SIDES: [&str; 2] = ["reference", "current data"];

impl Sample {
    /// The samples of column `name`; `as_categories` compares a numeric column's values as
    /// categories. The caller has checked that both columns are of the same kind.
    pub(super) fn new(name: &str, reference: &Column, current: &Column, as_categories: bool) -> Result<Sample> {
        for (col, side) in [reference, current].into_iter().zip(SIDES) {
            if values_in(col) == 0 {
                return Err(AnalysisError::column(name, format!("has no values in the {side}")));
            }
        }
        match (reference, current) {
            (Column::Numeric(r), Column::Numeric(c)) if !as_categories => {
                let mut out = [Vec::new(), Vec::new()];
                for ((v, side), out) in [r, c].into_iter().zip(SIDES).zip(&mut out) {
                    // One branch-free pass for both checks, then a plain copy unless NaN cells
                    // must be left out.
                    let flags = v.iter().fold(0u8, |f, x| f | u8::from(x.is_nan()) | u8::from(x.is_infinite()) << 1);
                    *out = if flags & 1 == 0 { v.clone() } else { v.iter().copied().filter(|x| !x.is_nan()).collect() };
                    if flags & 2 != 0 {
                        return Err(AnalysisError::column(
                            name,
                            format!("holds an infinite value in the {side}; a numeric drift test needs finite numbers"),
                        ));
                    }
                }
                let [reference, current] = out;
                Ok(Sample::Numeric { reference, current })
            }
            (Column::Numeric(r), Column::Numeric(c)) => {
                let (values, reference, current) = value_counts(r, c);
                Ok(Sample::Categorical { labels: values.iter().map(f64::to_string).collect(), reference, current })
            }
            (Column::Categorical { codes: rc, levels: rl }, Column::Categorical { codes: cc, levels: cl }) => {
                let mut union: BTreeMap<&str, [u64; 2]> = BTreeMap::new();
                for (s, ((codes, levels), side)) in [(rc, rl), (cc, cl)].into_iter().zip(SIDES).enumerate() {
                    for (level, n) in levels.iter().zip(level_counts(name, codes, levels.len(), side)?) {
                        if n > 0 {
                            union.entry(level.as_str()).or_default()[s] += n;
                        }
                    }
                }
                let labels = union.keys().map(|&l| l.to_owned()).collect();
                let (reference, current) = union.values().map(|&[r, c]| (r, c)).unzip();
                Ok(Sample::Categorical { labels, reference, current })
            }
            _ => Err(AnalysisError::column(name, "is numeric in one data set but not in the other")),
        }
    }

    /// The number of values in the reference and in the current sample.
    pub(super) fn sizes(&self) -> (usize, usize) {
        match self {
            Sample::Numeric { reference, current } => (reference.len(), current.len()),
            Sample::Categorical { reference, current, .. } => {
                (reference.iter().sum::<u64>() as usize, current.iter().sum::<u64>() as usize)
            }
        }
    }
}

/// Rows per level of `codes`, or an error for a code past the levels.
fn level_counts(name: &str, codes: &[u32], levels: usize, side: &str) -> Result<Vec<u64>> {
    let mut counts = vec![0u64; levels];
    for &code in codes {
        let slot = counts.get_mut(code as usize).ok_or_else(|| {
            AnalysisError::column(name, format!("has a category code past its {levels} levels in the {side}"))
        })?;
        *slot += 1;
    }
    Ok(counts)
}

/// Distinct values of each sample (NaN skipped) with their counts, sorted.
fn runs(values: &[f64]) -> Vec<(f64, u64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_unstable_by(f64::total_cmp);
    let mut runs: Vec<(f64, u64)> = Vec::new();
    for x in v {
        match runs.last_mut() {
            Some((y, n)) if *y == x => *n += 1,
            _ => runs.push((x, 1)),
        }
    }
    runs
}

/// The union of both samples' distinct values, ascending, with each sample's count per value.
fn value_counts(reference: &[f64], current: &[f64]) -> (Vec<f64>, Vec<u64>, Vec<u64>) {
    let (a, b) = (runs(reference), runs(current));
    let (mut values, mut r, mut c) = (Vec::new(), Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let x = match (a.get(i), b.get(j)) {
            (Some(&(x, _)), Some(&(y, _))) => x.min(y),
            (Some(&(x, _)), None) | (None, Some(&(x, _))) => x,
            (None, None) => break,
        };
        values.push(x);
        r.push(if a.get(i).is_some_and(|p| p.0 == x) {
            i += 1;
            a[i - 1].1
        } else {
            0
        });
        c.push(if b.get(j).is_some_and(|p| p.0 == x) {
            j += 1;
            b[j - 1].1
        } else {
            0
        });
    }
    (values, r, c)
}

/// The number of cells with a value: not NaN for numeric columns, every cell for categorical.
pub(super) fn values_in(column: &Column) -> usize {
    match column {
        Column::Numeric(v) => v.iter().filter(|x| !x.is_nan()).count(),
        Column::Categorical { codes, .. } => codes.len(),
    }
}

/// Whether `values` hold at most two distinct values (NaN skipped); stops at the third.
pub(super) fn at_most_two_distinct(values: &[f64]) -> bool {
    let mut seen: [Option<f64>; 2] = [None, None];
    for &x in values.iter().filter(|x| !x.is_nan()) {
        match seen {
            [Some(a), _] if a == x => {}
            [_, Some(b)] if b == x => {}
            [None, _] => seen[0] = Some(x),
            [_, None] => seen[1] = Some(x),
            _ => return false,
        }
    }
    true
}

/// How many categories both columns hold together (0 when they cannot be compared).
pub(super) fn union_categories(reference: &Column, current: &Column) -> usize {
    match Sample::new("", reference, current, true) {
        Ok(Sample::Categorical { labels, .. }) => labels.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_matched_by_name() {
        // The two files number their levels independently; "a" is unused in the current file.
        let reference = Column::categorical(&["a", "b", "b", "c"]);
        let current = Column::Categorical {
            codes: vec![1, 1, 2, 3],
            levels: vec!["a".into(), "b".into(), "c".into(), "d".into()],
        };
        let Ok(Sample::Categorical { labels, reference, current }) = Sample::new("g", &reference, &current, false)
        else {
            panic!("categorical sample");
        };
        assert_eq!(labels, ["a", "b", "c", "d"]);
        assert_eq!(reference, [1, 2, 1, 0]);
        assert_eq!(current, [0, 2, 1, 1]);
        let bad = Column::Categorical { codes: vec![5], levels: vec!["a".into()] };
        let err = Sample::new("g", &bad, &bad, false).err().expect("bad code").to_string();
        assert!(err.contains("category code past its 1 levels in the reference"), "{err}");
    }

    #[test]
    fn numbers_skip_nan_and_can_be_categories() {
        let r = Column::Numeric(vec![1.0, f64::NAN, 0.0, 1.0]);
        let c = Column::Numeric(vec![2.0, 1.0, f64::NAN]);
        let Ok(Sample::Categorical { labels, reference, current }) = Sample::new("x", &r, &c, true) else {
            panic!("categorical sample");
        };
        assert_eq!(
            (labels, reference, current),
            (vec!["0".into(), "1".into(), "2".into()], vec![1, 2, 0], vec![0, 1, 1])
        );
        let s = Sample::new("x", &r, &c, false).expect("numeric sample");
        assert_eq!(s.sizes(), (3, 2));
        assert!(at_most_two_distinct(&[1.0, f64::NAN, 0.0, 1.0]));
        assert!(!at_most_two_distinct(&[1.0, 0.0, 2.0]));
        let inf = Column::Numeric(vec![1.0, f64::INFINITY]);
        let err = Sample::new("x", &r, &inf, false).err().expect("infinite").to_string();
        assert!(err.contains("infinite value in the current data"), "{err}");
        let nan = Column::Numeric(vec![f64::NAN]);
        let err = Sample::new("x", &nan, &c, false).err().expect("empty").to_string();
        assert_eq!(err, "column `x`: has no values in the reference");
    }
}
