//! Slices of the data: the values of a column (`slice_by = ["region"]`), a numeric column cut
//! into quantile buckets, or the cross of two columns (`"region*age"`).

mod profile;
mod rule;

use std::collections::BTreeMap;

pub use profile::{MAX_VALUES, Profile, SKETCH_POINTS, Sketch};
pub use rule::Rule;

use crate::error::{AnalysisError, Result};
use crate::frame::Frame;

/// Every row's slice under one slicing.
#[derive(Clone, Debug, PartialEq)]
pub struct Slicing {
    /// As given: a column name or `a*b`.
    pub name: String,
    /// One per slice, in code order.
    pub labels: Vec<String>,
    pub codes: Vec<u32>,
    /// Each slice's place among the slices of the whole data (for a column, its code under the
    /// rule; for a cross, the pair's), the same on every shard: merged shards order by it.
    pub keys: Vec<u32>,
}

/// The columns a slice spec reads: one, or the two of a cross `a*b`; `field` names the option.
pub fn columns_of<'a>(spec: &'a str, field: &str) -> Result<Vec<&'a str>> {
    let parts: Vec<&str> = spec.split('*').map(str::trim).collect();
    if parts.len() > 2 {
        return Err(AnalysisError::invalid(
            field,
            format!("`{spec}`: a slice is one column or a cross of two (`a*b`)"),
        ));
    }
    if parts.iter().any(|p| p.is_empty()) {
        return Err(AnalysisError::invalid(field, "a slice names an empty column"));
    }
    Ok(parts)
}

/// The rules of the columns `specs` read, from this frame alone.
pub fn local_rules(frame: &Frame, specs: &[&str], buckets: usize, field: &str) -> Result<BTreeMap<String, Rule>> {
    let mut rules = BTreeMap::new();
    for spec in specs {
        for name in columns_of(spec, field)? {
            if !rules.contains_key(name) {
                let profile = Profile::of(frame.column(name, field)?, usize::MAX);
                rules.insert(name.to_owned(), Rule::merge(name, &[profile], buckets)?);
            }
        }
    }
    Ok(rules)
}

impl Slicing {
    /// A slicing whose slices are numbered as they are listed.
    pub fn new(name: impl Into<String>, labels: Vec<String>, codes: Vec<u32>) -> Self {
        let keys = (0..labels.len() as u32).collect();
        Self { name: name.into(), labels, codes, keys }
    }

    pub fn slices(&self) -> usize {
        self.labels.len()
    }

    /// Parses `spec` (a column or `a*b`) against `frame`; `field` names the option for errors.
    pub fn of(frame: &Frame, spec: &str, buckets: usize, field: &str) -> Result<Self> {
        Self::with_rules(frame, spec, &local_rules(frame, &[spec], buckets, field)?, field)
    }

    /// Slices `frame` by `spec` under `rules` (fixed for the whole data, of which the frame may
    /// be a shard).
    pub fn with_rules(frame: &Frame, spec: &str, rules: &BTreeMap<String, Rule>, field: &str) -> Result<Self> {
        let by = |name: &str| -> Result<(Vec<String>, Vec<u32>)> {
            let rule = rules
                .get(name)
                .ok_or_else(|| AnalysisError::invalid(field, format!("no slicing rule for column `{name}`")))?;
            Ok((rule.labels(), rule.codes(name, frame.column(name, field)?)?))
        };
        match columns_of(spec, field)?[..] {
            [one] => {
                let (labels, codes) = by(one)?;
                Ok(Self::new(one, labels, codes))
            }
            [a, b] => Ok(cross(spec, by(a)?, by(b)?)),
            _ => unreachable!("columns_of returns one or two columns"),
        }
    }
}

/// The occupied combinations of two slicings (labels and codes); each keeps its pair's code
/// among all combinations as its key.
fn cross(spec: &str, (la, ca): (Vec<String>, Vec<u32>), (lb, cb): (Vec<String>, Vec<u32>)) -> Slicing {
    let nb = lb.len() as u32;
    let raw: Vec<u32> = ca.iter().zip(&cb).map(|(x, y)| x * nb + y).collect();
    let mut seen: Vec<u32> = raw.clone();
    seen.sort_unstable();
    seen.dedup();
    let labels = seen.iter().map(|&c| format!("{} * {}", la[(c / nb) as usize], lb[(c % nb) as usize])).collect();
    let codes = raw.iter().map(|c| seen.partition_point(|s| s < c) as u32).collect();
    Slicing { name: spec.into(), labels, codes, keys: seen }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Column;

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
        let err = Slicing::of(&frame(), "g*", 4, "slice_by").expect_err("empty part");
        assert!(err.to_string().contains("empty column"), "{err}");
    }
}
