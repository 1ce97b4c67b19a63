//! Mergeable summaries of rows. Each row falls into one *cell* (a key fine enough that rows in a
//! cell agree on everything a metric reads: label, prediction, score bin) and adds a vector of
//! sums to it (its count first). Metrics are functions of those per-cell sums, so they are exact
//! for every set of rows whose sums are known: a slice, the rest of the data (total minus slice),
//! or the shards of a large file added together. The bootstrap resamples cells instead of rows
//! (`bootstrap.rs`), which makes a thousand resamples of a million rows cheap.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::{AnalysisError, Result};

/// What a task's rows contribute to their cell and what is computed from the sums.
pub trait Summary {
    /// Sums per cell, the row count included (at index 0).
    fn stats(&self) -> usize;
    /// Metric names, in the order `metrics` returns them.
    fn names(&self) -> Vec<String>;
    /// The metrics of a set of rows from its per-cell sums (`cells() × stats()`, cell-major); a
    /// metric that is undefined for these rows (no positives, say) is NaN.
    fn metrics(&self, sums: &[f64]) -> Vec<f64>;
    /// Number of distinct cells seen.
    fn cells(&self) -> usize;
}

/// Numbers cell keys in order of first appearance.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    index: HashMap<u64, u32>,
    pub keys: Vec<u64>,
}

impl Registry {
    pub fn cell(&mut self, key: u64) -> u32 {
        let next = self.keys.len() as u32;
        *self.index.entry(key).or_insert_with(|| {
            self.keys.push(key);
            next
        })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Per-cell sums for each of `groups` disjoint sets of rows (the values of a slice column, or the
/// groups of a fairness column; one group for the whole data).
#[derive(Clone, Debug, PartialEq)]
pub struct Grouped {
    pub groups: usize,
    pub cells: usize,
    pub stats: usize,
    /// `groups × cells × stats`.
    pub sums: Vec<f64>,
}

impl Grouped {
    /// Adds every row: `group[i]` (None leaves the row out), `cell[i]`, and its sums from `row`.
    pub fn build(
        groups: usize,
        cells: usize,
        stats: usize,
        rows: usize,
        group: impl Fn(usize) -> Option<u32>,
        cell: &[u32],
        row: impl Fn(usize, &mut [f64]),
    ) -> Self {
        let mut sums = vec![0.0; groups * cells * stats];
        let mut buf = vec![0.0; stats];
        for (i, &c) in cell.iter().enumerate().take(rows) {
            let Some(g) = group(i) else { continue };
            row(i, &mut buf);
            let at = (g as usize * cells + c as usize) * stats;
            for (s, v) in sums[at..at + stats].iter_mut().zip(&buf) {
                *s += v;
            }
        }
        Self { groups, cells, stats, sums }
    }

    /// The sums of group `g`.
    pub fn group(&self, g: usize) -> &[f64] {
        let n = self.cells * self.stats;
        &self.sums[g * n..(g + 1) * n]
    }

    /// The sums of all groups together.
    pub fn total(&self) -> Vec<f64> {
        let n = self.cells * self.stats;
        let mut t = vec![0.0; n];
        for g in 0..self.groups {
            for (a, b) in t.iter_mut().zip(self.group(g)) {
                *a += b;
            }
        }
        t
    }

    /// Rows in group `g`.
    pub fn rows(&self, g: usize) -> f64 {
        self.group(g).iter().step_by(self.stats).sum()
    }

    /// An empty summary of the same shape.
    pub fn clone_shape(&self) -> Self {
        Self { groups: self.groups, cells: self.cells, stats: self.stats, sums: Vec::new() }
    }
}

/// One slice's label and per-cell sums.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SliceSums {
    pub label: String,
    pub sums: Vec<f64>,
}

/// The sums of one slicing's slices over the same cells, each slice under its key (its place
/// among the slices of the whole data), so that the shards of a file add up slice by slice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlicedSums {
    pub by: String,
    pub slices: BTreeMap<u32, SliceSums>,
}

impl SlicedSums {
    /// Group `g` of `grouped` is the slice with key `keys[g]` and label `labels[g]`.
    pub fn of(by: &str, keys: &[u32], labels: &[String], grouped: &Grouped) -> Self {
        let slices = (0..grouped.groups)
            .map(|g| (keys[g], SliceSums { label: labels[g].clone(), sums: grouped.group(g).to_vec() }))
            .collect();
        Self { by: by.into(), slices }
    }

    /// The slices that hold rows, in key order, as groups of `cells × stats` sums; and their labels.
    pub fn grouped(&self, cells: usize, stats: usize) -> (Grouped, Vec<String>) {
        let occupied: Vec<&SliceSums> =
            self.slices.values().filter(|s| s.sums.iter().step_by(stats).sum::<f64>() > 0.0).collect();
        let mut sums = Vec::with_capacity(occupied.len() * cells * stats);
        for s in &occupied {
            sums.extend(&s.sums);
        }
        let labels = occupied.iter().map(|s| s.label.clone()).collect();
        (Grouped { groups: occupied.len(), cells, stats, sums }, labels)
    }

    /// Moves every slice's sums to new cells: old cell `c` becomes `map[c]` of `cells`.
    pub fn relayout(&mut self, map: &[usize], cells: usize, stats: usize) {
        for s in self.slices.values_mut() {
            s.sums = relayout(&s.sums, map, cells, stats);
        }
    }

    /// Adds the slices of another shard, over the same cells.
    pub fn merge(&mut self, other: SlicedSums) -> Result<()> {
        if other.by != self.by {
            return Err(AnalysisError::invalid(
                "slice_by",
                format!("shards sliced by `{}` and `{}`", self.by, other.by),
            ));
        }
        for (key, slice) in other.slices {
            match self.slices.get_mut(&key) {
                Some(mine) if mine.label != slice.label => {
                    return Err(AnalysisError::invalid(
                        "slice_by",
                        format!("`{}`: shards name slice {key} `{}` and `{}`", self.by, mine.label, slice.label),
                    ));
                }
                Some(mine) => add(&mut mine.sums, &slice.sums),
                None => {
                    self.slices.insert(key, slice);
                }
            }
        }
        Ok(())
    }
}

/// `sums` of `stats` per cell, with old cell `c` moved to `map[c]` among `cells`.
pub fn relayout(sums: &[f64], map: &[usize], cells: usize, stats: usize) -> Vec<f64> {
    let mut out = vec![0.0; cells * stats];
    for (c, cell) in sums.chunks_exact(stats).enumerate() {
        let at = map[c] * stats;
        out[at..at + stats].copy_from_slice(cell);
    }
    out
}

/// `a += b`, element by element.
pub fn add(a: &mut [f64], b: &[f64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// `a - b`, element by element.
pub fn minus(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_add_up_to_the_total() {
        let mut reg = Registry::default();
        let cell: Vec<u32> = [7u64, 9, 7, 3].iter().map(|&k| reg.cell(k)).collect();
        assert_eq!(cell, vec![0, 1, 0, 2]);
        let g = Grouped::build(
            2,
            reg.len(),
            2,
            4,
            |i| Some((i % 2) as u32),
            &cell,
            |i, s| {
                s[0] = 1.0;
                s[1] = i as f64;
            },
        );
        assert_eq!(g.group(0), &[2.0, 2.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(g.group(1), &[0.0, 0.0, 1.0, 1.0, 1.0, 3.0]);
        assert_eq!(g.total(), vec![2.0, 2.0, 1.0, 1.0, 1.0, 3.0]);
        assert_eq!(g.rows(1), 2.0);
        assert_eq!(minus(&g.total(), g.group(0)), g.group(1).to_vec());
    }
}
