//! Classification metrics from cell sums: accuracy, cross-entropy loss, expected calibration
//! error (10 equal-width confidence bins), per-class precision, recall and F1 with their macro
//! average, the confusion matrix, and ROC AUC for two classes.
//!
//! A row's cell is its label, its predicted class (the most probable), its confidence bin (the
//! top probability in steps of 0.01, ten of which make one calibration bin) and, for two classes,
//! the positive-class probability in steps of 0.001 (AUC reads the two score histograms; pairs
//! in one bin count half). Wrong predictions of more than two classes also key on the loss in
//! steps of 1/8 nat, so the rows of a cell have nearly the same loss when the bootstrap draws them.

use crate::cells::{Registry, Summary};

/// Score bins for two classes: probabilities in steps of 1/1000.
pub const SCORE_BINS: usize = 1000;
const CONF_STEPS: usize = 100;
const ECE_BINS: usize = 10;
/// Sums per cell: rows, loss, confidence.
const STATS: usize = 3;

/// The cells of a classification task.
#[derive(Clone, Debug)]
pub struct Classification {
    pub classes: Vec<String>,
    registry: Registry,
    label: Vec<u32>,
    pred: Vec<u32>,
    conf_bin: Vec<u16>,
    score_bin: Vec<u16>,
}

/// The bin of probability `p` among `bins` equal bins of [0, 1].
pub fn bin(p: f64, bins: usize) -> usize {
    ((p * bins as f64) as usize).min(bins - 1)
}

impl Classification {
    pub fn new(classes: Vec<String>) -> Self {
        Self {
            classes,
            registry: Registry::default(),
            label: Vec::new(),
            pred: Vec::new(),
            conf_bin: Vec::new(),
            score_bin: Vec::new(),
        }
    }

    pub fn binary(&self) -> bool {
        self.classes.len() == 2
    }

    /// Files a row with class probabilities `probs` and true class `label`: its cell, and its
    /// sums (1, loss, confidence) written into `stats`.
    pub fn row(&mut self, label: u32, probs: &[f32], stats: &mut [f64]) -> u32 {
        let pred = probs.iter().enumerate().fold(0, |b, (i, &p)| if p > probs[b] { i } else { b });
        let conf = f64::from(probs[pred]);
        let p_label = f64::from(probs.get(label as usize).copied().unwrap_or(0.0));
        let loss = -p_label.max(1e-15).ln();
        let conf_bin = bin(conf, CONF_STEPS);
        let (score_bin, loss_bin) = if self.binary() {
            (bin(f64::from(probs[1]), SCORE_BINS), 0)
        } else if pred as u32 != label {
            (0, ((loss * 8.0) as usize).min(255))
        } else {
            (0, 0)
        };
        let key = u64::from(label)
            | (pred as u64) << 16
            | (conf_bin as u64) << 32
            | (score_bin as u64) << 40
            | (loss_bin as u64) << 52;
        stats[0] = 1.0;
        stats[1] = loss;
        stats[2] = conf;
        self.file(key)
    }

    /// The cell of `key`, added (with what its key says of its rows) when new.
    fn file(&mut self, key: u64) -> u32 {
        let before = self.registry.len();
        let cell = self.registry.cell(key);
        if self.registry.len() > before {
            self.label.push((key & 0xffff) as u32);
            self.pred.push((key >> 16 & 0xffff) as u32);
            self.conf_bin.push((key >> 32 & 0xff) as u16);
            self.score_bin.push((key >> 40 & 0xfff) as u16);
        }
        cell
    }

    /// The cells of `keys`, numbered in their order (the cells of merged shards).
    pub fn from_keys(classes: Vec<String>, keys: &[u64]) -> Self {
        let mut c = Self::new(classes);
        for &k in keys {
            c.file(k);
        }
        c
    }

    /// Each cell's key, in cell order.
    pub fn keys(&self) -> &[u64] {
        &self.registry.keys
    }

    /// Counts by true class (rows) and predicted class (columns).
    pub fn confusion(&self, sums: &[f64]) -> Vec<Vec<f64>> {
        let k = self.classes.len();
        let mut m = vec![vec![0.0; k]; k];
        for c in 0..self.cells() {
            m[self.label[c] as usize][self.pred[c] as usize] += sums[c * STATS];
        }
        m
    }

    /// Histograms of the positive-class score bins of positive and negative rows.
    pub fn score_histograms(&self, sums: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let (mut pos, mut neg) = (vec![0.0; SCORE_BINS], vec![0.0; SCORE_BINS]);
        for c in 0..self.cells() {
            let h = if self.label[c] == 1 { &mut pos } else { &mut neg };
            h[self.score_bin[c] as usize] += sums[c * STATS];
        }
        (pos, neg)
    }
}

/// ROC AUC from score histograms of positives and negatives (ties within a bin count half).
pub fn auc(pos: &[f64], neg: &[f64]) -> f64 {
    let (p, n): (f64, f64) = (pos.iter().sum(), neg.iter().sum());
    if p <= 0.0 || n <= 0.0 {
        return f64::NAN;
    }
    let mut below = 0.0;
    let mut area = 0.0;
    for (a, b) in pos.iter().zip(neg) {
        area += a * (below + 0.5 * b);
        below += b;
    }
    area / (p * n)
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

impl Summary for Classification {
    fn stats(&self) -> usize {
        STATS
    }

    fn cells(&self) -> usize {
        self.registry.len()
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = ["accuracy", "loss", "ece", "macro_f1"].map(String::from).to_vec();
        if self.binary() {
            names.push("auc".into());
        }
        for metric in ["precision", "recall", "f1"] {
            names.extend(self.classes.iter().map(|c| format!("{metric}/{c}")));
        }
        names
    }

    fn metrics(&self, sums: &[f64]) -> Vec<f64> {
        let k = self.classes.len();
        let (mut rows, mut correct, mut loss) = (0.0, 0.0, 0.0);
        let mut ece_n = [0.0; ECE_BINS];
        let mut ece_hit = [0.0; ECE_BINS];
        let mut ece_conf = [0.0; ECE_BINS];
        for c in 0..self.cells() {
            let s = &sums[c * STATS..(c + 1) * STATS];
            rows += s[0];
            loss += s[1];
            let b = self.conf_bin[c] as usize * ECE_BINS / CONF_STEPS;
            ece_n[b] += s[0];
            ece_conf[b] += s[2];
            if self.label[c] == self.pred[c] {
                correct += s[0];
                ece_hit[b] += s[0];
            }
        }
        let ece = ratio((0..ECE_BINS).map(|b| (ece_hit[b] - ece_conf[b]).abs()).sum(), rows);
        let m = self.confusion(sums);
        let mut precision = Vec::with_capacity(k);
        let mut recall = Vec::with_capacity(k);
        let mut f1 = Vec::with_capacity(k);
        for (c, row) in m.iter().enumerate() {
            let tp = row[c];
            let predicted: f64 = m.iter().map(|r| r[c]).sum();
            let actual: f64 = row.iter().sum();
            let (p, r) = (ratio(tp, predicted), ratio(tp, actual));
            precision.push(p);
            recall.push(r);
            f1.push(if tp > 0.0 {
                2.0 * p * r / (p + r)
            } else if actual + predicted > 0.0 {
                0.0
            } else {
                f64::NAN
            });
        }
        let defined: Vec<f64> = f1.iter().copied().filter(|v| !v.is_nan()).collect();
        let macro_f1 = ratio(defined.iter().sum(), defined.len() as f64);
        let mut out = vec![ratio(correct, rows), ratio(loss, rows), ece, macro_f1];
        if self.binary() {
            let (pos, neg) = self.score_histograms(sums);
            out.push(auc(&pos, &neg));
        }
        out.extend(precision);
        out.extend(recall);
        out.extend(f1);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cells::Grouped;

    /// Eight rows of a two-class model, checked by hand below.
    const ROWS: [(u32, f32); 8] =
        [(1, 0.95), (1, 0.85), (1, 0.35), (1, 0.65), (0, 0.15), (0, 0.45), (0, 0.75), (0, 0.05)];

    fn summary() -> (Classification, Grouped) {
        let mut cls = Classification::new(vec!["no".into(), "yes".into()]);
        let mut stats = vec![[0.0; 3]; ROWS.len()];
        let cells: Vec<u32> = ROWS.iter().zip(&mut stats).map(|(&(y, p), s)| cls.row(y, &[1.0 - p, p], s)).collect();
        let g = Grouped::build(1, cls.cells(), 3, ROWS.len(), |_| Some(0), &cells, |i, s| s.copy_from_slice(&stats[i]));
        (cls, g)
    }

    #[test]
    fn metrics_match_a_hand_computation() {
        let (cls, g) = summary();
        let names = cls.names();
        let m = cls.metrics(g.group(0));
        let get = |n: &str| m[names.iter().position(|x| x == n).expect("metric")];
        // Predicted yes: 0.95, 0.85, 0.65 (all right) and 0.75 (wrong); predicted no: 0.35 (wrong),
        // 0.15, 0.45, 0.05: 6 of 8 right.
        assert_eq!(get("accuracy"), 0.75);
        assert_eq!(cls.confusion(g.group(0)), vec![vec![3.0, 1.0], vec![1.0, 3.0]]);
        assert_eq!(get("precision/yes"), 0.75);
        assert_eq!(get("recall/yes"), 0.75);
        assert!((get("f1/no") - 0.75).abs() < 1e-12);
        // Loss: mean of -ln p(label) over p(label) = .95 .85 .35 .65 .85 .55 .25 .95.
        let hand = -[0.95f64, 0.85, 0.35, 0.65, 0.85, 0.55, 0.25, 0.95].iter().map(|p| p.ln()).sum::<f64>() / 8.0;
        assert!((get("loss") - hand).abs() < 1e-6, "{} vs {hand}", get("loss"));
        // AUC: of the 16 (positive, negative) pairs the positive scores higher in 13 (0.35 beats
        // 0.15 and 0.05; 0.65 beats all but 0.75; 0.85 and 0.95 beat all four): 13/16. sklearn's
        // roc_auc_score([1,1,1,1,0,0,0,0], [.95,.85,.35,.65,.15,.45,.75,.05]) gives 0.8125 too.
        assert!((get("auc") - 0.8125).abs() < 1e-12);
        // Calibration bins by confidence (top probability), hits against summed confidence:
        // [.9, 1) {.95 right, .95 right}: |2 - 1.9|; [.8, .9) {.85, .85, both right}: |2 - 1.7|;
        // [.7, .8) {.75 wrong}: .75; [.6, .7) {.65 wrong, .65 right}: |1 - 1.3|; [.5, .6) {.55
        // right}: .45. Sum 1.9 over 8 rows.
        assert!((get("ece") - 0.2375).abs() < 1e-6, "{}", get("ece"));
    }

    #[test]
    fn auc_counts_ties_half() {
        assert_eq!(auc(&[0.0, 1.0], &[0.0, 1.0]), 0.5);
        assert_eq!(auc(&[0.0, 2.0], &[1.0, 0.0]), 1.0);
        assert!(auc(&[1.0, 0.0], &[0.0, 0.0]).is_nan());
    }
}
