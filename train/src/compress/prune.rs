//! Pruning: masks that zero the smallest weights (magnitude) or whole hidden units, the neurons
//! of linear layers and the output channels of conv layers (structured), on a schedule while the job trains or fine-tunes, applied before every step so the optimizer
//! cannot revive them. At the end the artifact really shrinks: structured pruning writes a dense
//! model with the reduced widths and channel counts (and a job file that says so), magnitude pruning stores its
//! weights sparsely.

use std::collections::HashMap;
use std::path::Path;

use shoal_common::spec::{self, Activation, LayerConfig, ModelConfig, PruneConfig, PruneMethod};

use crate::backend::{Backend, Tensor};
use crate::checkpoint;
use crate::engine::Objective;
use crate::error::{Result, TrainError};
use crate::model::Model;
use crate::nn::loss::{LossOutput, Targets};

/// Which elements of one parameter are kept.
struct Mask {
    param: String,
    keep: Vec<bool>,
}

/// The pruning objective: the inner objective's loss, and masks on the parameters.
pub struct Pruner<'a> {
    cfg: PruneConfig,
    model: ModelConfig,
    inner: &'a mut dyn Objective,
    masks: Vec<Mask>,
    /// Kept units of each structurally pruned layer, by index into `model.layers`.
    units: HashMap<usize, Vec<usize>>,
}

impl<'a> Pruner<'a> {
    pub fn new(cfg: PruneConfig, model: &ModelConfig, inner: &'a mut dyn Objective) -> Self {
        Self { cfg, model: model.clone(), inner, masks: Vec::new(), units: HashMap::new() }
    }

    /// Recomputes the masks so that `share` is removed.
    fn prune(&mut self, model: &Model, share: f64) -> Result<()> {
        self.masks.clear();
        self.units.clear();
        match self.cfg.method {
            PruneMethod::Magnitude { global } => {
                let weights: Vec<(String, Vec<f32>)> = model
                    .params()
                    .filter(|p| p.name.ends_with(".weight") && p.value.dims().len() >= 2)
                    .map(|p| Ok((p.name.clone(), p.backend().to_host(&p.value)?)))
                    .collect::<Result<_>>()?;
                if global {
                    let all: Vec<f32> = weights.iter().flat_map(|(_, w)| w.iter().map(|v| v.abs())).collect();
                    let keep = smallest_removed(&all, removed_of(share, all.len()));
                    let mut at = 0;
                    for (name, w) in &weights {
                        self.masks.push(Mask { param: name.clone(), keep: keep[at..at + w.len()].to_vec() });
                        at += w.len();
                    }
                } else {
                    for (name, w) in weights {
                        let abs: Vec<f32> = w.iter().map(|v| v.abs()).collect();
                        let keep = smallest_removed(&abs, removed_of(share, abs.len()));
                        self.masks.push(Mask { param: name, keep });
                    }
                }
            }
            PruneMethod::Structured { l2 } => {
                for i in (0..self.model.layers.len()).filter(|&i| spec::prunable_unit(&self.model, i)) {
                    let name = format!("layers.{i}");
                    let p =
                        model.params().find(|p| p.name == format!("{name}.weight")).ok_or_else(|| missing(&name))?;
                    // Linear (outputs, inputs) or conv (channels, inputs, k, k): a unit is a row.
                    let dims = p.value.dims();
                    let (width, inputs) = (dims[0], dims[1..].iter().product::<usize>());
                    let w = p.backend().to_host(&p.value)?;
                    let scores: Vec<f32> = w
                        .chunks_exact(inputs)
                        .map(|row| {
                            if l2 {
                                row.iter().map(|v| v * v).sum::<f32>().sqrt()
                            } else {
                                row.iter().map(|v| v.abs()).sum()
                            }
                        })
                        .collect();
                    // At least one unit stays, so the layer still exists.
                    let keep_unit = smallest_removed(&scores, removed_of(share, width).min(width - 1));
                    self.units.insert(i, (0..width).filter(|&u| keep_unit[u]).collect());
                    let keep_w = (0..width * inputs).map(|e| keep_unit[e / inputs]).collect();
                    self.masks.push(Mask { param: format!("{name}.weight"), keep: keep_w });
                    self.masks.push(Mask { param: format!("{name}.bias"), keep: keep_unit });
                }
            }
        }
        Ok(())
    }

    /// Per-parameter sparsity of the masks, the overall share removed and, for structured
    /// pruning, the kept width of each pruned layer: the job's pruning report.
    pub fn report(&self) -> Vec<(String, f64)> {
        let mut rows = Vec::new();
        let (mut zeros, mut total) = (0usize, 0usize);
        for m in &self.masks {
            let z = m.keep.iter().filter(|k| !**k).count();
            rows.push((format!("sparsity/{}", m.param), z as f64 / m.keep.len().max(1) as f64));
            if m.param.ends_with(".weight") {
                (zeros, total) = (zeros + z, total + m.keep.len());
            }
        }
        rows.push(("sparsity".into(), zeros as f64 / total.max(1) as f64));
        let mut units: Vec<_> = self.units.iter().collect();
        units.sort();
        for (i, kept) in units {
            rows.push((format!("width/layers.{i}"), kept.len() as f64));
        }
        rows
    }

    /// Rewrites the final checkpoint `dir` (written from the masked model) as the compressed
    /// artifact.
    pub fn finish(&self, dir: &Path) -> Result<()> {
        let saved = checkpoint::load(dir)?;
        let (tensors, toml) = match self.cfg.method {
            PruneMethod::Magnitude { .. } => {
                let mut out = HashMap::new();
                for (name, t) in saved.model {
                    // Sparse storage costs 1/8 + 4·(1 − s) bytes per element: smaller from s = 1/32.
                    let sparse = self
                        .masks
                        .iter()
                        .any(|m| m.param == name && m.keep.iter().filter(|k| !**k).count() * 32 > m.keep.len());
                    if sparse {
                        out.extend(crate::sparse::encode(&name, &t)?);
                    } else {
                        out.insert(name, t);
                    }
                }
                (out, None)
            }
            PruneMethod::Structured { .. } => {
                (shrink(&self.model, &self.units, saved.model)?, Some(self.reduced_job_file(dir)?))
            }
        };
        checkpoint::rewrite(dir, &tensors, toml.as_deref())
    }

    /// The checkpoint's job file with the kept widths, as a plain job (no pruning, no parent).
    fn reduced_job_file(&self, dir: &Path) -> Result<String> {
        let path = dir.join(checkpoint::SPEC_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::checkpoint(dir, e))?;
        let mut job = spec::parse_toml(&text).map_err(|e| TrainError::checkpoint(dir, e))?;
        if let Some(m) = job.model.as_mut() {
            for (i, kept) in &self.units {
                match (m.layers.get_mut(*i), self.model.layers.get(*i)) {
                    (Some(l), Some(LayerConfig::Conv { .. })) => l.channels = kept.len() as i64,
                    (Some(l), _) => l.width = kept.len() as i64,
                    _ => {}
                }
            }
        }
        job.prune = None;
        job.inherit = None;
        Ok(spec::to_toml(&job))
    }
}

impl Objective for Pruner<'_> {
    fn loss(
        &mut self,
        backend: &dyn Backend,
        input: &Tensor,
        output: &Tensor,
        targets: &Targets,
        scale: f32,
    ) -> Result<LossOutput> {
        self.inner.loss(backend, input, output, targets, scale)
    }

    fn constrain(&mut self, model: &mut Model, done: u64) -> Result<()> {
        let (s, sched) = (self.cfg.sparsity, self.cfg.schedule);
        if let Some(share) = sched.due(s, done) {
            self.prune(model, share)?;
        } else if self.masks.is_empty() && sched.reached(s, done) > 0.0 {
            // Resumed after the schedule began: the zeros in the checkpoint are the smallest
            // weights, so recomputing at the share reached keeps them pruned.
            self.prune(model, sched.reached(s, done))?;
        }
        for m in &self.masks {
            let p = model.params_mut().find(|p| p.name == m.param).ok_or_else(|| missing(&m.param))?;
            let mut values = p.backend().to_host(&p.value)?;
            for (v, &k) in values.iter_mut().zip(&m.keep) {
                if !k {
                    *v = 0.0;
                }
            }
            p.value = p.backend().from_host(values, p.value.dims())?;
        }
        self.inner.constrain(model, done)
    }
}

/// How many of `n` a share removes.
fn removed_of(share: f64, n: usize) -> usize {
    ((share * n as f64).floor() as usize).min(n)
}

/// Keep flags for `scores` with the `removed` lowest-scoring ones removed (ties broken by
/// position, so every rank removes the same ones).
fn smallest_removed(scores: &[f32], removed: usize) -> Vec<bool> {
    let removed = removed.min(scores.len());
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    let mut keep = vec![true; scores.len()];
    for &i in &order[..removed] {
        keep[i] = false;
    }
    keep
}

fn missing(name: &str) -> TrainError {
    TrainError::Shape { field: "layers".into(), reason: format!("pruning found no parameter `{name}`") }
}

/// What a unit outputs when its incoming weights and bias are zero.
fn at_zero(a: Activation) -> f32 {
    if a == Activation::Sigmoid { 0.5 } else { 0.0 }
}

/// The dense tensors of the model with only the kept units of each pruned layer. A removed unit
/// outputs the constant `act(0)` (0 for a conv channel: see [`spec::prunable_unit`]), so its
/// outgoing weights times that constant are folded into the consumer's bias: the smaller model
/// computes what the masked one did. The consumer reads each unit through a block of its
/// columns: one for a linear layer after a linear one, `k·k` for a conv layer, the pooled
/// `height·width` for a linear layer reading a flattened conv output.
fn shrink(
    model: &ModelConfig,
    units: &HashMap<usize, Vec<usize>>,
    mut tensors: HashMap<String, candle_core::Tensor>,
) -> Result<HashMap<String, candle_core::Tensor>> {
    let producer_of = |j: usize| {
        (0..j).rev().find(|&p| !matches!(model.layers[p], LayerConfig::Pool { .. }) && spec::consumer_of(model, p) == j)
    };
    for i in 0..=model.layers.len() {
        if matches!(model.layers.get(i), Some(LayerConfig::Pool { .. })) {
            continue;
        }
        let name = if i == model.layers.len() { "output".to_owned() } else { format!("layers.{i}") };
        let prev = producer_of(i).and_then(|p| units.get(&p).map(|kept| (p, kept)));
        let own = units.get(&i);
        if prev.is_none() && own.is_none() {
            continue;
        }
        let (wk, bk) = (format!("{name}.weight"), format!("{name}.bias"));
        let t = tensors.get(&wk).ok_or_else(|| missing(&wk))?;
        let (mut w, mut dims) = (t.flatten_all()?.to_vec1::<f32>()?, t.dims().to_vec());
        let mut b = tensors.get(&bk).ok_or_else(|| missing(&bk))?.to_vec1::<f32>()?;
        let rows = dims[0];
        if let Some((p, kept)) = prev {
            let (LayerConfig::Linear { width: before, activation, .. }
            | LayerConfig::Conv { channels: before, activation, .. }) = model.layers[p]
            else {
                continue;
            };
            let c0 = at_zero(activation);
            let cols = w.len() / rows.max(1);
            let block = cols / before.max(1);
            let keep: Vec<bool> = (0..cols).map(|c| kept.binary_search(&(c / block)).is_ok()).collect();
            for r in 0..rows {
                let row = &w[r * cols..(r + 1) * cols];
                b[r] += c0 * (0..cols).filter(|&c| !keep[c]).map(|c| row[c]).sum::<f32>();
            }
            w = (0..rows * cols).filter(|&e| keep[e % cols]).map(|e| w[e]).collect();
            // A conv weight (out, in, k, k) loses input channels; a linear one columns.
            dims[1] = if dims.len() == 4 { kept.len() } else { kept.len() * block };
        }
        if let Some(kept) = own {
            let cols = w.len() / rows.max(1);
            w = kept.iter().flat_map(|&r| w[r * cols..(r + 1) * cols].to_vec()).collect();
            b = kept.iter().map(|&r| b[r]).collect();
            dims[0] = kept.len();
        }
        tensors.insert(wk, candle_core::Tensor::from_vec(w, dims.as_slice(), &crate::backend::HOST)?);
        tensors.insert(bk, candle_core::Tensor::from_vec(b, dims[0], &crate::backend::HOST)?);
    }
    Ok(tensors)
}
