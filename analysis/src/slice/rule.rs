//! How one column is cut into slices, fixed from the profiles of every shard of the data: by its
//! text values, by its few distinct numbers, or into buckets between quantiles.

use serde::{Deserialize, Serialize};

use super::profile::{MAX_VALUES, Profile, Sketch};
use crate::error::{AnalysisError, Result};
use crate::frame::Column;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Rule {
    /// Text values, sorted (numbers among them as the CSV reader writes them).
    Levels(Vec<String>),
    /// Few distinct numbers, sorted.
    Values(Vec<f64>),
    /// Buckets `[lo, e1), [e1, e2), ..., [ek, hi]` between quantiles.
    Buckets { lo: f64, inner: Vec<f64>, hi: f64 },
}

pub(super) fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.0}") } else { format!("{v}") }
}

impl Rule {
    /// The rule for column `name` given every shard's profile of it; numbers with many values
    /// are cut into `buckets` buckets.
    pub fn merge(name: &str, profiles: &[Profile], buckets: usize) -> Result<Self> {
        let any_text = profiles.iter().any(|p| matches!(p, Profile::Text(_)));
        if any_text {
            let mut levels = Vec::new();
            for p in profiles {
                match p {
                    Profile::Text(l) => levels.extend(l.iter().cloned()),
                    Profile::Numbers { distinct: Some(d), .. } => levels.extend(d.iter().map(f64::to_string)),
                    Profile::Numbers { distinct: None, .. } => {
                        return Err(AnalysisError::column(
                            name,
                            "holds text in some rows and many different numbers in others: it cannot be sliced",
                        ));
                    }
                }
            }
            levels.sort();
            levels.dedup();
            return Ok(Rule::Levels(levels));
        }
        let mut distinct = Some(Vec::new());
        let mut sketches = Vec::with_capacity(profiles.len());
        for p in profiles {
            if let Profile::Numbers { distinct: d, sketch } = p {
                sketches.push(sketch);
                match (d, &mut distinct) {
                    (Some(d), Some(all)) => all.extend(d),
                    _ => distinct = None,
                }
            }
        }
        if sketches.iter().all(|s| s.rows == 0) {
            return Err(AnalysisError::column(name, "has no numbers to slice by"));
        }
        if let Some(mut d) = distinct {
            d.sort_unstable_by(f64::total_cmp);
            d.dedup();
            if d.len() <= MAX_VALUES {
                return Ok(Rule::Values(d));
            }
        }
        let buckets = buckets.max(2);
        let mut qs: Vec<f64> = (1..buckets).map(|k| k as f64 / buckets as f64).collect();
        qs.extend([0.0, 1.0]);
        let q = Sketch::quantiles(&sketches, &qs);
        let (lo, hi) = (q[buckets - 1], q[buckets]);
        let mut inner = q[..buckets - 1].to_vec();
        inner.dedup();
        inner.retain(|&e| e > lo);
        Ok(Rule::Buckets { lo, inner, hi })
    }

    /// The slices' labels, in code order.
    pub fn labels(&self) -> Vec<String> {
        match self {
            Rule::Levels(l) => l.clone(),
            Rule::Values(v) => v.iter().map(|&d| format_value(d)).collect(),
            Rule::Buckets { lo, inner, hi } => {
                let mut bounds = vec![*lo];
                bounds.extend(inner);
                bounds.push(*hi);
                (0..=inner.len())
                    .map(|k| {
                        let close = if k == inner.len() { "]" } else { ")" };
                        format!("[{}, {}{close}", format_value(bounds[k]), format_value(bounds[k + 1]))
                    })
                    .collect()
            }
        }
    }

    /// Every row's slice code; `name` is the column's, for errors.
    pub fn codes(&self, name: &str, column: &Column) -> Result<Vec<u32>> {
        let missing = |what: String| {
            AnalysisError::column(name, format!("has the value `{what}`, which the slices of the data do not hold"))
        };
        match (self, column) {
            (Rule::Levels(levels), Column::Categorical { codes, levels: local }) => {
                let map: Vec<u32> = local
                    .iter()
                    .map(|l| levels.binary_search(l).map(|i| i as u32).map_err(|_| missing(l.clone())))
                    .collect::<Result<_>>()?;
                Ok(codes.iter().map(|&c| map[c as usize]).collect())
            }
            (Rule::Levels(levels), Column::Numeric(v)) => v
                .iter()
                .map(|x| {
                    let text = x.to_string();
                    levels.binary_search(&text).map(|i| i as u32).map_err(|_| missing(text))
                })
                .collect(),
            (Rule::Values(distinct), Column::Numeric(v)) => {
                Ok(v.iter().map(|x| distinct.partition_point(|d| d < x) as u32).collect())
            }
            (Rule::Buckets { inner, .. }, Column::Numeric(v)) => {
                Ok(v.iter().map(|x| inner.partition_point(|e| e <= x) as u32).collect())
            }
            (_, Column::Categorical { levels, .. }) => Err(missing(levels.first().cloned().unwrap_or_default())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_that_each_see_few_values_may_together_need_buckets() {
        let a = Profile::of(&Column::Numeric((0..8).map(f64::from).collect()), 100);
        let b = Profile::of(&Column::Numeric((8..16).map(f64::from).collect()), 100);
        let rule = Rule::merge("x", &[a.clone(), b], 4).expect("rule");
        // 0..=15: nearest ranks 3.75 → 4, 7.5 → 8, 11.25 → 11.
        assert_eq!(rule, Rule::Buckets { lo: 0.0, inner: vec![4.0, 8.0, 11.0], hi: 15.0 });
        assert_eq!(rule.codes("x", &Column::Numeric(vec![3.0, 4.0, 15.0])).expect("codes"), vec![0, 1, 3]);
        assert_eq!(Rule::merge("x", &[a], 4).expect("rule"), Rule::Values((0..8).map(f64::from).collect()));
    }

    #[test]
    fn text_in_one_shard_makes_the_numbers_of_others_text() {
        let a = Profile::of(&Column::categorical(&["n/a", "3"]), 100);
        let b = Profile::of(&Column::Numeric(vec![1.0, 3.0]), 100);
        let rule = Rule::merge("c", &[a, b], 4).expect("rule");
        assert_eq!(rule, Rule::Levels(vec!["1".into(), "3".into(), "n/a".into()]));
        assert_eq!(rule.codes("c", &Column::Numeric(vec![3.0, 1.0])).expect("codes"), vec![1, 0]);
        let many = Profile::of(&Column::Numeric((0..50).map(f64::from).collect()), 100);
        let err = Rule::merge("c", &[Profile::Text(vec!["x".into()]), many], 4).expect_err("mixed");
        assert!(err.to_string().starts_with("column `c`: holds text"), "{err}");
    }
}
