//! The mergeable half of an evaluation: a shard's rows filed into cells, the cells' sums overall
//! and per slice, with cells in key order so that the shards of one file, each evaluated on its
//! own worker, add up to exactly what the whole file gives. The metrics and intervals are then
//! computed once, from the merged sums (`super::evaluate_sums`).

use serde::{Deserialize, Serialize};

use super::Scored;
use crate::cells::{Grouped, SlicedSums, Summary, add, relayout};
use crate::classification::Classification;
use crate::error::{AnalysisError, Result};
use crate::regression::Regression;
use crate::slice::Slicing;

/// Sums of targets and residuals, which fix the cells of a regression before any row is filed
/// (every shard must file its rows into the same cells).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    pub n: f64,
    pub y: f64,
    pub yy: f64,
    pub e: f64,
    pub ee: f64,
}

impl Moments {
    /// The moments of a regression's targets and residuals (zero for classification).
    pub fn of(scored: &Scored) -> Self {
        let mut m = Self::default();
        if let Scored::Values { targets, predictions } = scored {
            for (&y, &p) in targets.iter().zip(predictions) {
                let e = p - y;
                m.n += 1.0;
                m.y += y;
                m.yy += y * y;
                m.e += e;
                m.ee += e * e;
            }
        }
        m
    }

    pub fn merge(&mut self, o: &Self) {
        self.n += o.n;
        self.y += o.y;
        self.yy += o.yy;
        self.e += o.e;
        self.ee += o.ee;
    }

    /// Centre and scale of the targets, and of the residuals (centred on 0).
    fn centres(&self) -> ((f64, f64), (f64, f64)) {
        let n = self.n.max(1.0);
        let sd = |s: f64, ss: f64| (ss / n - (s / n) * (s / n)).max(0.0).sqrt().max(1e-12);
        ((self.y / n, sd(self.y, self.yy)), (0.0, sd(self.e, self.ee)))
    }
}

/// What the cells are cells of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Task {
    Classes { classes: Vec<String> },
    Values { target: (f64, f64), residual: (f64, f64) },
}

/// The cells of a task, with what their keys say of their rows.
pub(super) enum Cells {
    Classes(Classification),
    Values(Regression),
}

impl Cells {
    pub(super) fn of(task: &Task, keys: &[u64]) -> Self {
        match task {
            Task::Classes { classes } => Cells::Classes(Classification::from_keys(classes.clone(), keys)),
            Task::Values { target, residual } => Cells::Values(Regression::from_keys(*target, *residual, keys)),
        }
    }

    pub(super) fn summary(&self) -> &dyn Summary {
        match self {
            Cells::Classes(c) => c,
            Cells::Values(r) => r,
        }
    }

    fn keys(&self) -> &[u64] {
        match self {
            Cells::Classes(c) => c.keys(),
            Cells::Values(r) => r.keys(),
        }
    }

    pub(super) fn confusion(&self, sums: &[f64]) -> Option<Vec<Vec<f64>>> {
        match self {
            Cells::Classes(c) => Some(c.confusion(sums)),
            Cells::Values(_) => None,
        }
    }
}

/// Files every row into its cell: the task, its cells, each row's cell and its sums
/// (`rows × stats`).
fn file_rows(scored: &Scored, moments: &Moments) -> Result<(Task, Cells, Vec<u32>, Vec<f64>)> {
    match scored {
        Scored::Classes { classes, labels, probs } => {
            let k = classes.len();
            if k < 2 || probs.len() != labels.len() * k {
                return Err(AnalysisError::invalid(
                    "--data",
                    format!("{} probabilities for {} rows of {k} classes", probs.len(), labels.len()),
                ));
            }
            if let Some(bad) = labels.iter().find(|&&l| l as usize >= k) {
                return Err(AnalysisError::invalid(
                    "--label-column",
                    format!("label {bad} is not a class of the model (it has {k}: 0 to {})", k - 1),
                ));
            }
            let mut cls = Classification::new(classes.clone());
            let mut stats = vec![0.0; labels.len() * 3];
            let cells = labels
                .iter()
                .zip(probs.chunks_exact(k))
                .zip(stats.chunks_exact_mut(3))
                .map(|((&y, p), s)| cls.row(y, p, s))
                .collect();
            Ok((Task::Classes { classes: classes.clone() }, Cells::Classes(cls), cells, stats))
        }
        Scored::Values { targets, predictions } => {
            let (target, residual) = moments.centres();
            let mut reg = Regression::new(target, residual);
            let mut stats = vec![0.0; targets.len() * 6];
            let cells = targets
                .iter()
                .zip(predictions)
                .zip(stats.chunks_exact_mut(6))
                .map(|((&y, &p), s)| reg.row(y, p, s))
                .collect();
            Ok((Task::Values { target, residual }, Cells::Values(reg), cells, stats))
        }
    }
}

/// The sums of a shard of the data (or of all of it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    pub rows: usize,
    pub task: Task,
    /// The cells' keys, ascending.
    pub keys: Vec<u64>,
    /// `cells × stats`.
    pub overall: Vec<f64>,
    pub slicings: Vec<SlicedSums>,
}

impl Partial {
    /// Files the rows of `scored` and adds them up overall and per slice of every slicing;
    /// `moments` are those of all the data `scored` is a shard of.
    pub fn of(scored: &Scored, slicings: &[Slicing], moments: &Moments) -> Result<Self> {
        let rows = scored.rows();
        if let Some(s) = slicings.iter().find(|s| s.codes.len() != rows) {
            return Err(AnalysisError::invalid(
                "--slice-by",
                format!("`{}` has {} rows, the data {rows}", s.name, s.codes.len()),
            ));
        }
        let (task, cells, cell, stats) = file_rows(scored, moments)?;
        let s = cells.summary().stats();
        let k = cells.summary().cells();
        let row = |i: usize, out: &mut [f64]| out.copy_from_slice(&stats[i * s..(i + 1) * s]);
        // Cells in key order, whatever order the rows came in.
        let local = cells.keys();
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_unstable_by_key(|&c| local[c]);
        let mut map = vec![0; k];
        for (new, &old) in order.iter().enumerate() {
            map[old] = new;
        }
        let keys = order.iter().map(|&c| local[c]).collect();
        let overall = Grouped::build(1, k, s, rows, |_| Some(0), &cell, row);
        let sliced = slicings
            .iter()
            .map(|slicing| {
                let g = Grouped::build(slicing.slices(), k, s, rows, |i| Some(slicing.codes[i]), &cell, row);
                let mut sums = SlicedSums::of(&slicing.name, &slicing.keys, &slicing.labels, &g);
                sums.relayout(&map, k, s);
                sums
            })
            .collect();
        Ok(Self { rows, task, keys, overall: relayout(overall.group(0), &map, k, s), slicings: sliced })
    }

    /// Sums per cell.
    pub fn stats(&self) -> usize {
        match self.task {
            Task::Classes { .. } => 3,
            Task::Values { .. } => 6,
        }
    }

    /// Adds another shard's sums (scored by the same model, sliced the same way).
    pub fn merge(&mut self, other: Partial) -> Result<()> {
        if other.task != self.task {
            return Err(AnalysisError::invalid("--data", "the shards were scored as different tasks"));
        }
        if other.slicings.len() != self.slicings.len() {
            return Err(AnalysisError::invalid("--slice-by", "the shards were sliced differently"));
        }
        let s = self.stats();
        // Both key lists are ascending: merge them.
        let mut keys = Vec::with_capacity(self.keys.len().max(other.keys.len()));
        let (mut a, mut b) = (0, 0);
        let (mut map_a, mut map_b) = (Vec::with_capacity(self.keys.len()), Vec::with_capacity(other.keys.len()));
        while a < self.keys.len() || b < other.keys.len() {
            let (ka, kb) = (self.keys.get(a).copied(), other.keys.get(b).copied());
            let next = match (ka, kb) {
                (Some(x), Some(y)) => x.min(y),
                (Some(x), None) => x,
                (None, Some(y)) => y,
                (None, None) => break,
            };
            if ka == Some(next) {
                map_a.push(keys.len());
                a += 1;
            }
            if kb == Some(next) {
                map_b.push(keys.len());
                b += 1;
            }
            keys.push(next);
        }
        let cells = keys.len();
        let mut overall = relayout(&self.overall, &map_a, cells, s);
        add(&mut overall, &relayout(&other.overall, &map_b, cells, s));
        for (mine, mut theirs) in self.slicings.iter_mut().zip(other.slicings) {
            mine.relayout(&map_a, cells, s);
            theirs.relayout(&map_b, cells, s);
            mine.merge(theirs)?;
        }
        self.keys = keys;
        self.overall = overall;
        self.rows += other.rows;
        Ok(())
    }
}
