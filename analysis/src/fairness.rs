//! Fairness rates per group (Fairness Indicators' set): at each threshold 0.1, 0.2, ..., 0.9 the
//! positive and negative rates, TPR, FNR, TNR, FPR and accuracy, plus the threshold-free AUC;
//! each group's gap to a baseline group (the largest, or one named) and their ratio, with
//! bootstrap intervals; a rate differs significantly when the gap's interval excludes zero.

use serde::Serialize;

use crate::bootstrap::{Interval, resample};
use crate::cells::{Grouped, SlicedSums, Summary};
use crate::classification::{SCORE_BINS, auc, bin};
use crate::error::{AnalysisError, Result};
use crate::slice::Slicing;

pub const THRESHOLDS: [f64; 9] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
pub const RATES: [&str; 7] = ["positive_rate", "negative_rate", "tpr", "fnr", "tnr", "fpr", "accuracy"];

/// Cells: (label positive?, score bin); a row is predicted positive at threshold t when its score
/// bin is at least t·1000, that is when its score is at least t.
struct Rates;

impl Summary for Rates {
    fn stats(&self) -> usize {
        1
    }

    fn cells(&self) -> usize {
        2 * SCORE_BINS
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> =
            THRESHOLDS.iter().flat_map(|t| RATES.iter().map(move |r| format!("{r}@{t}"))).collect();
        names.push("auc".into());
        names
    }

    fn metrics(&self, sums: &[f64]) -> Vec<f64> {
        let (neg, pos) = sums.split_at(SCORE_BINS);
        let (n, p): (f64, f64) = (neg.iter().sum(), pos.iter().sum());
        let share = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        let mut out = Vec::with_capacity(THRESHOLDS.len() * RATES.len() + 1);
        for t in THRESHOLDS {
            let from = (t * SCORE_BINS as f64).round() as usize;
            let tp: f64 = pos[from..].iter().sum();
            let fp: f64 = neg[from..].iter().sum();
            let (fn_, tn) = (p - tp, n - fp);
            let all = p + n;
            out.extend([
                share(tp + fp, all),
                share(fn_ + tn, all),
                share(tp, p),
                share(fn_, p),
                share(tn, n),
                share(fp, n),
                share(tp + tn, all),
            ]);
        }
        out.push(auc(pos, neg));
        out
    }
}

/// A rate of one group at one threshold.
#[derive(Clone, Debug, Serialize)]
pub struct Rate {
    pub value: f64,
    pub low: f64,
    pub high: f64,
    /// This group's rate minus the baseline's, with its interval.
    pub gap: Interval,
    /// This group's rate over the baseline's.
    pub ratio: Interval,
    pub significant: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct GroupRates {
    pub group: String,
    pub rows: usize,
    pub positives: usize,
    pub baseline: bool,
    /// `rates[threshold][rate]`: `rates["0.5"]["tpr"]`.
    pub rates: std::collections::BTreeMap<String, std::collections::BTreeMap<String, Rate>>,
    pub auc: Rate,
    /// Names `rate@threshold` (and `auc`) whose gap to the baseline is significant.
    pub differs: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Fairness {
    pub column: String,
    pub positive_class: String,
    pub baseline: String,
    pub thresholds: Vec<f64>,
    pub groups: Vec<GroupRates>,
}

/// Rates of every group of `groups`, from each row's positive-class `score` and whether its label
/// is `positive`; `baseline` names the group the others are compared with (else the largest).
pub fn fairness(
    groups: &Slicing,
    positive: &[bool],
    score: &[f64],
    positive_class: &str,
    baseline: Option<&str>,
    resamples: usize,
    seed: u64,
) -> Result<Fairness> {
    fairness_of(&fairness_sums(groups, positive, score), positive_class, baseline, resamples, seed)
}

/// Rows per group by (label positive?, score bin): the mergeable part of [`fairness`], which the
/// shards of a file add up.
pub fn fairness_sums(groups: &Slicing, positive: &[bool], score: &[f64]) -> SlicedSums {
    let cell: Vec<u32> =
        positive.iter().zip(score).map(|(&p, &s)| (usize::from(p) * SCORE_BINS + bin(s, SCORE_BINS)) as u32).collect();
    let grouped = Grouped::build(
        groups.slices(),
        2 * SCORE_BINS,
        1,
        cell.len(),
        |i| Some(groups.codes[i]),
        &cell,
        |_, s| s[0] = 1.0,
    );
    SlicedSums::of(&groups.name, &groups.keys, &groups.labels, &grouped)
}

/// [`fairness`] from the merged sums of every shard.
pub fn fairness_of(
    sums: &SlicedSums,
    positive_class: &str,
    baseline: Option<&str>,
    resamples: usize,
    seed: u64,
) -> Result<Fairness> {
    let (grouped, labels) = sums.grouped(2 * SCORE_BINS, 1);
    let g = grouped.groups;
    if g == 0 {
        return Err(AnalysisError::invalid("--groups", format!("`{}` has no rows", sums.by)));
    }
    let counts: Vec<usize> = (0..g).map(|k| grouped.rows(k) as usize).collect();
    let base = match baseline {
        Some(name) => labels.iter().position(|l| l == name).ok_or_else(|| {
            AnalysisError::invalid(
                "--baseline",
                format!("`{name}` is not a group of `{}` (its groups: {})", sums.by, labels.join(", ")),
            )
        })?,
        None => (0..g).max_by_key(|&k| (counts[k], std::cmp::Reverse(k))).unwrap_or(0),
    };
    let draws = resample(&Rates, &grouped, resamples, seed);
    let point: Vec<Vec<f64>> = (0..g).map(|k| Rates.metrics(grouped.group(k))).collect();
    let rate = |k: usize, m: usize| {
        let ci = draws.interval(k, m, point[k][m]);
        let gap = draws.against_group(k, base, m, point[k][m] - point[base][m]);
        let ratio = draws.ratio_to_group(k, base, m, point[k][m] / point[base][m]);
        Rate { value: ci.value, low: ci.low, high: ci.high, gap, ratio, significant: k != base && gap.excludes_zero() }
    };
    let names = Rates.names();
    let out = (0..g)
        .map(|k| {
            let mut rates = std::collections::BTreeMap::new();
            let mut differs = Vec::new();
            for (ti, t) in THRESHOLDS.iter().enumerate() {
                let mut at = std::collections::BTreeMap::new();
                for (ri, r) in RATES.iter().enumerate() {
                    let m = ti * RATES.len() + ri;
                    let v = rate(k, m);
                    if v.significant {
                        differs.push(names[m].clone());
                    }
                    at.insert((*r).to_owned(), v);
                }
                rates.insert(format!("{t}"), at);
            }
            let auc = rate(k, names.len() - 1);
            if auc.significant {
                differs.push("auc".into());
            }
            let positives = grouped.group(k)[SCORE_BINS..].iter().sum::<f64>() as usize;
            GroupRates {
                group: labels[k].clone(),
                rows: counts[k],
                positives,
                baseline: k == base,
                rates,
                auc,
                differs,
            }
        })
        .collect();
    Ok(Fairness {
        column: sums.by.clone(),
        positive_class: positive_class.into(),
        baseline: labels[base].clone(),
        thresholds: THRESHOLDS.to_vec(),
        groups: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_match_a_hand_count_and_gaps_are_flagged() {
        // Group a (4 rows): positives scored .95, .55, negatives .35, .65. Group b (2 rows):
        // positive .25, negative .15. Repeated 50 times so the bootstrap has something to work with.
        let rows = [("a", true, 0.95), ("a", true, 0.55), ("a", false, 0.35), ("a", false, 0.65)];
        let rows_b = [("b", true, 0.25), ("b", false, 0.15)];
        let mut labels = Vec::new();
        let mut pos = Vec::new();
        let mut score = Vec::new();
        for _ in 0..50 {
            for &(g, p, s) in rows.iter().chain(&rows_b) {
                labels.push(if g == "a" { 0 } else { 1 });
                pos.push(p);
                score.push(s);
            }
        }
        let groups = Slicing::new("g", vec!["a".into(), "b".into()], labels);
        let f = fairness(&groups, &pos, &score, "yes", None, 300, 3).expect("fairness");
        assert_eq!(f.baseline, "a");
        let a = &f.groups[0].rates["0.5"];
        // At 0.5 group a predicts .95, .55, .65 positive: positive rate 3/4, TPR 2/2, FPR 1/2,
        // accuracy 3/4 (.35 is a true negative).
        assert_eq!(a["positive_rate"].value, 0.75);
        assert_eq!(a["tpr"].value, 1.0);
        assert_eq!(a["fpr"].value, 0.5);
        assert_eq!(a["accuracy"].value, 0.75);
        let b = &f.groups[1];
        // At 0.5 group b predicts nothing positive: TPR 0, gap -1, significantly different.
        assert_eq!(b.rates["0.5"]["tpr"].value, 0.0);
        assert_eq!(b.rates["0.5"]["tpr"].gap.value, -1.0);
        assert!(b.rates["0.5"]["tpr"].significant);
        assert!(b.differs.contains(&"tpr@0.5".to_owned()));
        // At 0.2 both groups find all their positives: no gap.
        assert_eq!(b.rates["0.2"]["tpr"].value, 1.0);
        assert!(!b.rates["0.2"]["tpr"].significant);
        // AUC: group a ranks 3 of 4 pairs right (.55 loses to .65), group b 1 of 1.
        assert_eq!(f.groups[0].auc.value, 0.75);
        assert_eq!(b.auc.value, 1.0);
        assert_eq!(b.auc.ratio.value, 1.0 / 0.75);
        let err = fairness(&groups, &pos, &score, "yes", Some("zz"), 10, 3).expect_err("unknown baseline");
        assert!(err.to_string().contains("`zz` is not a group of `g`"), "{err}");
    }
}
