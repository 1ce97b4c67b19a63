//! Slices of the data: the values of a column (`slice_by = ["region"]`), a numeric column cut
//! into quantile buckets, or the cross of two columns (`"region*age"`).

use crate::error::{AnalysisError, Result};
use crate::frame::{Column, Frame};

/// A numeric column with at most this many distinct values is sliced by value, not by bucket.
pub const MAX_VALUES: usize = 10;

/// Every row's slice under one slicing.
#[derive(Clone, Debug, PartialEq)]
pub struct Slicing {
    /// As given: a column name or `a*b`.
    pub name: String,
    /// One per slice, in code order.
    pub labels: Vec<String>,
    pub codes: Vec<u32>,
}

impl Slicing {
    pub fn slices(&self) -> usize {
        self.labels.len()
    }

    /// Parses `spec` (a column or `a*b`) against `frame`; `field` names the option for errors.
    pub fn of(frame: &Frame, spec: &str, buckets: usize, field: &str) -> Result<Self> {
        let parts: Vec<&str> = spec.split('*').map(str::trim).collect();
        match parts[..] {
            [one] => by_column(frame, one, buckets, field),
            [a, b] => {
                let (a, b) = (by_column(frame, a, buckets, field)?, by_column(frame, b, buckets, field)?);
                Ok(cross(spec, &a, &b))
            }
            _ => {
                Err(AnalysisError::invalid(field, format!("`{spec}`: a slice is one column or a cross of two (`a*b`)")))
            }
        }
    }
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.0}") } else { format!("{v}") }
}

fn by_column(frame: &Frame, name: &str, buckets: usize, field: &str) -> Result<Slicing> {
    if name.is_empty() {
        return Err(AnalysisError::invalid(field, "a slice names an empty column"));
    }
    match frame.column(name, field)? {
        Column::Categorical { codes, levels } => {
            Ok(Slicing { name: name.into(), labels: levels.clone(), codes: codes.clone() })
        }
        Column::Numeric(v) => {
            let mut distinct: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
            distinct.sort_unstable_by(f64::total_cmp);
            distinct.dedup();
            if distinct.is_empty() {
                return Err(AnalysisError::column(name, "has no numbers to slice by"));
            }
            if distinct.len() <= MAX_VALUES {
                let codes = v.iter().map(|x| distinct.partition_point(|d| d < x) as u32).collect();
                let labels = distinct.iter().map(|&d| format_value(d)).collect();
                return Ok(Slicing { name: name.into(), labels, codes });
            }
            Ok(quantile_buckets(name, v, buckets.max(2)))
        }
    }
}

/// `buckets` buckets between the column's quantiles (ties may merge some).
fn quantile_buckets(name: &str, v: &[f64], buckets: usize) -> Slicing {
    let mut sorted: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    sorted.sort_unstable_by(f64::total_cmp);
    let at = |q: f64| sorted[((q * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)];
    let mut inner: Vec<f64> = (1..buckets).map(|k| at(k as f64 / buckets as f64)).collect();
    inner.dedup();
    let (lo, hi) = (sorted[0], sorted[sorted.len() - 1]);
    inner.retain(|&e| e > lo);
    let codes = v.iter().map(|x| inner.partition_point(|e| e <= x) as u32).collect();
    let mut bounds = vec![lo];
    bounds.extend(&inner);
    bounds.push(hi);
    let labels = (0..=inner.len())
        .map(|k| {
            let close = if k == inner.len() { "]" } else { ")" };
            format!("[{}, {}{close}", format_value(bounds[k]), format_value(bounds[k + 1]))
        })
        .collect();
    Slicing { name: name.into(), labels, codes }
}

/// The occupied combinations of two slicings.
fn cross(spec: &str, a: &Slicing, b: &Slicing) -> Slicing {
    let nb = b.slices() as u32;
    let raw: Vec<u32> = a.codes.iter().zip(&b.codes).map(|(x, y)| x * nb + y).collect();
    let mut seen: Vec<u32> = raw.clone();
    seen.sort_unstable();
    seen.dedup();
    let labels =
        seen.iter().map(|&c| format!("{} * {}", a.labels[(c / nb) as usize], b.labels[(c % nb) as usize])).collect();
    let codes = raw.iter().map(|c| seen.partition_point(|s| s < c) as u32).collect();
    Slicing { name: spec.into(), labels, codes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame {
        let x: Vec<f64> = (0..12).map(f64::from).collect();
        let g = ["a", "b", "a", "b", "a", "b", "a", "b", "a", "b", "c", "c"];
        Frame {
            names: vec!["x".into(), "g".into(), "k".into()],
            columns: vec![
                Column::Numeric(x),
                Column::categorical(&g),
                Column::Numeric(vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0]),
            ],
            rows: 12,
        }
    }

    #[test]
    fn numeric_columns_are_cut_at_quantiles() {
        let s = Slicing::of(&frame(), "x", 4, "--slice-by").expect("slices");
        // Quantiles of 0..=11 at 1/4, 2/4, 3/4 (nearest rank): 3, 6, 8.
        assert_eq!(s.labels, vec!["[0, 3)", "[3, 6)", "[6, 8)", "[8, 11]"]);
        assert_eq!(s.codes, vec![0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3]);
        // Few distinct numbers are values.
        let k = Slicing::of(&frame(), "k", 4, "--slice-by").expect("slices");
        assert_eq!(k.labels, vec!["1", "2"]);
    }

    #[test]
    fn crosses_keep_only_occupied_combinations() {
        let s = Slicing::of(&frame(), "g*k", 4, "--slice-by").expect("cross");
        assert_eq!(s.labels, vec!["a * 1", "b * 2", "c * 1", "c * 2"]);
        assert_eq!(&s.codes[..4], &[0, 1, 0, 1]);
        assert_eq!(&s.codes[10..], &[2, 3]);
    }

    #[test]
    fn bad_specs_name_the_option_and_column() {
        let err = Slicing::of(&frame(), "region", 4, "slice_by").expect_err("missing");
        assert!(err.to_string().starts_with("slice_by: the data has no column `region`"), "{err}");
        let err = Slicing::of(&frame(), "g*k*x", 4, "slice_by").expect_err("triple");
        assert!(err.to_string().contains("cross of two"), "{err}");
    }
}
