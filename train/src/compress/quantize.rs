//! Post-training quantization of a checkpoint to int8: per-channel symmetric weights, per-tensor
//! input scales calibrated on training batches, evaluated against the fp32 model with the int8
//! arithmetic of [`super::int8`]. With an accuracy budget, layers go back to fp32 one at a time,
//! most sensitive first, until the drop is met; the most accurate model found is saved either way,
//! with a report of what was kept in which precision.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::Serialize;
use shoal_common::spec::{Activation, LayerConfig, QuantizeConfig, TrainConfig, load_toml};

use super::calibrate::{Calibration, threshold};
use super::int8::{QLinear, Weights, quantize_weights};
use crate::backend::HOST;
use crate::checkpoint;
use crate::data::{self, Dataset, TargetData};
use crate::error::{Result, TrainError};

/// Written beside the weights of a quantized artifact.
pub const REPORT_FILE: &str = "quantization.json";
/// Where a `[quantize]` job puts its int8 artifact: a folder inside its final checkpoint.
pub const JOB_ARTIFACT_DIR: &str = "int8";

/// What `shoal quantize` asks for.
#[derive(Clone, Debug)]
pub struct QuantizeOptions {
    pub calibration: Calibration,
    /// Calibration batches from the training split, and their size.
    pub batches: usize,
    pub batch: usize,
    /// Largest accuracy drop accepted; `None` quantizes every layer.
    pub max_accuracy_drop: Option<f64>,
}

impl From<&QuantizeConfig> for QuantizeOptions {
    fn from(q: &QuantizeConfig) -> Self {
        Self { calibration: q.calibration, batches: q.batches, batch: q.batch, max_accuracy_drop: q.max_accuracy_drop }
    }
}

/// What was done, saved as `quantization.json` and printed.
#[derive(Clone, Debug, Serialize)]
pub struct QuantizeReport {
    pub artifact: PathBuf,
    pub calibration: &'static str,
    pub calibration_rows: usize,
    pub fp32_accuracy: f64,
    pub accuracy: f64,
    pub accuracy_drop: f64,
    /// Whether `max_accuracy_drop` (when given) was met.
    pub met: bool,
    /// Per layer: `int8` or `fp32`.
    pub precision: Vec<(String, &'static str)>,
    pub fp32_bytes: u64,
    pub bytes: u64,
}

/// A model for int8 inference: linear layers in order.
pub struct QModel {
    pub layers: Vec<QLinear>,
}

impl QModel {
    /// Outputs for `rows` rows of `x`.
    pub fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let mut h = x.to_vec();
        for l in &self.layers {
            h = l.forward(&h, rows)?;
        }
        Ok(h)
    }
}

fn refuse(path: &Path, reason: impl Into<String>) -> TrainError {
    TrainError::Quantize { path: path.to_path_buf(), reason: reason.into() }
}

/// Quantizes the checkpoint `dir` into the artifact folder `out`.
pub fn quantize(dir: &Path, out: &Path, opts: &QuantizeOptions) -> Result<QuantizeReport> {
    if dir.join(REPORT_FILE).exists() {
        return Err(refuse(dir, "is already quantized (it holds quantization.json): quantize its fp32 checkpoint"));
    }
    if out == dir || std::path::absolute(out).ok() == std::path::absolute(dir).ok() {
        return Err(refuse(dir, "the artifact would overwrite the checkpoint: give another --output"));
    }
    if opts.batches == 0 || opts.batch == 0 {
        return Err(refuse(dir, "the calibration set is empty: --batches and --batch must be > 0"));
    }
    let text = std::fs::read_to_string(dir.join(checkpoint::SPEC_FILE))
        .map_err(|e| refuse(dir, format!("cannot read its job file: {e}")))?;
    let (_, cfg) = load_toml(&text).map_err(|e| refuse(dir, format!("its job file is not valid: {e}")))?;
    let saved = checkpoint::load(dir)?;
    // Calibrated and evaluated on the features the model was trained on: its saved transforms.
    let splits = data::load_continuing(&cfg.dataset, Some(dir))?;
    let validation = splits.validation.as_ref().ok_or_else(|| refuse(dir, "its dataset has no validation split"))?;
    let TargetData::Classes { .. } = validation.targets else {
        return Err(refuse(dir, "only classification models are quantized (accuracy is the budget)"));
    };
    let fp32 = fp32_layers(dir, &cfg, &saved.model)?;
    let rows = (opts.batches * opts.batch).min(splits.train.rows);
    let scales = calibrate(&fp32, &splits.train, rows, opts.calibration)?;
    let build = |int8: &[bool]| QModel {
        layers: fp32
            .iter()
            .zip(&scales)
            .zip(int8)
            .map(|((l, &s), &q)| if q { to_int8(l, s) } else { l.clone() })
            .collect(),
    };
    let fp32_accuracy = accuracy(&build(&vec![false; fp32.len()]), validation)?;
    let mut int8 = vec![true; fp32.len()];
    let mut best = (accuracy(&build(&int8), validation)?, int8.clone());
    if let Some(budget) = opts.max_accuracy_drop
        && fp32_accuracy - best.0 > budget
    {
        // Sensitivity: how much accuracy each layer alone gains back in fp32.
        let mut gains: Vec<(usize, f64)> = (0..fp32.len())
            .map(|i| {
                let mut one = vec![true; fp32.len()];
                one[i] = false;
                Ok((i, accuracy(&build(&one), validation)?))
            })
            .collect::<Result<_>>()?;
        gains.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for (i, _) in gains {
            int8[i] = false;
            let acc = accuracy(&build(&int8), validation)?;
            if acc > best.0 {
                best = (acc, int8.clone());
            }
            if fp32_accuracy - acc <= budget {
                best = (acc, int8.clone());
                break;
            }
        }
    }
    let (acc, int8) = best;
    let model = build(&int8);
    save(out, &model, &text)?;
    checkpoint::copy_transforms(dir, out)?;
    let report = QuantizeReport {
        artifact: out.to_path_buf(),
        calibration: opts.calibration.name(),
        calibration_rows: rows,
        fp32_accuracy,
        accuracy: acc,
        accuracy_drop: fp32_accuracy - acc,
        met: opts.max_accuracy_drop.is_none_or(|b| fp32_accuracy - acc <= b),
        precision: model
            .layers
            .iter()
            .map(|l| (l.name.clone(), if l.weights.is_int8() { "int8" } else { "fp32" }))
            .collect(),
        fp32_bytes: file_len(&dir.join(checkpoint::MODEL_FILE)),
        bytes: file_len(&out.join(checkpoint::MODEL_FILE)),
    };
    let json = serde_json::to_vec_pretty(&report).map_err(|e| refuse(out, e.to_string()))?;
    std::fs::write(out.join(REPORT_FILE), json).map_err(|e| TrainError::checkpoint(out, e))?;
    Ok(report)
}

impl QuantizeReport {
    /// The report as figures of a job's result (`int8/...`; per layer 8 or 32 bits).
    pub fn figures(&self) -> Vec<(String, f64)> {
        let mut rows = vec![
            ("int8/accuracy".to_owned(), self.accuracy),
            ("int8/fp32_accuracy".to_owned(), self.fp32_accuracy),
            ("int8/accuracy_drop".to_owned(), self.accuracy_drop),
            ("int8/met".to_owned(), f64::from(u8::from(self.met))),
            ("int8/bytes".to_owned(), self.bytes as f64),
            ("int8/fp32_bytes".to_owned(), self.fp32_bytes as f64),
        ];
        for (layer, precision) in &self.precision {
            rows.push((format!("int8/bits/{layer}"), if *precision == "int8" { 8.0 } else { 32.0 }));
        }
        rows
    }
}

/// Quantizes the final checkpoint of a `[quantize]` job into [`JOB_ARTIFACT_DIR`] inside it.
pub fn quantize_job(cfg: &QuantizeConfig, checkpoint: &Path) -> Result<QuantizeReport> {
    quantize(checkpoint, &checkpoint.join(JOB_ARTIFACT_DIR), &QuantizeOptions::from(cfg))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The parameter prefix and activation of each linear layer of the job's MLP, output last.
fn linear_units(dir: &Path, cfg: &TrainConfig) -> Result<Vec<(String, Activation)>> {
    let mut units = Vec::new();
    for (i, l) in cfg.model.layers.iter().enumerate() {
        match *l {
            LayerConfig::Linear { activation, skip: false, .. } => units.push((format!("layers.{i}"), activation)),
            _ => {
                return Err(refuse(
                    dir,
                    format!("model.layers[{i}]: only MLPs of linear layers without skips are quantized for now"),
                ));
            }
        }
    }
    units.push(("output".into(), Activation::Identity));
    Ok(units)
}

/// The fp32 linear layers of the checkpoint's MLP.
fn fp32_layers(dir: &Path, cfg: &TrainConfig, tensors: &HashMap<String, Tensor>) -> Result<Vec<QLinear>> {
    linear_units(dir, cfg)?
        .into_iter()
        .map(|(name, activation)| {
            let get = |suffix: &str| {
                tensors.get(&format!("{name}.{suffix}")).ok_or_else(|| {
                    refuse(dir, format!("the checkpoint does not match its job file: no `{name}.{suffix}`"))
                })
            };
            let w = get("weight")?;
            let (outputs, inputs) = w.dims2()?;
            let weights = Weights::Fp32(w.flatten_all()?.to_vec1::<f32>()?);
            let bias = get("bias")?.to_vec1::<f32>()?;
            Ok(QLinear { name, inputs, outputs, weights, bias, activation })
        })
        .collect()
}

/// Each layer's input scale from the first `rows` training rows run through the fp32 layers.
fn calibrate(layers: &[QLinear], train: &Dataset, rows: usize, method: Calibration) -> Result<Vec<f32>> {
    let mut h = train.x[..rows * train.features].to_vec();
    let mut scales = Vec::with_capacity(layers.len());
    for l in layers {
        let mut abs: Vec<f32> = h.iter().map(|v| v.abs()).collect();
        scales.push(threshold(method, &mut abs) / 127.0);
        h = l.forward(&h, rows)?;
    }
    Ok(scales)
}

fn to_int8(l: &QLinear, input_scale: f32) -> QLinear {
    let Weights::Fp32(w) = &l.weights else { return l.clone() };
    let (q, scale) = quantize_weights(w, l.inputs);
    QLinear { weights: Weights::int8(q, scale, input_scale, l.inputs), ..l.clone() }
}

/// Share of `data`'s rows whose largest output is the label.
pub fn accuracy(model: &QModel, data: &Dataset) -> Result<f64> {
    let TargetData::Classes { labels, .. } = &data.targets else { return Ok(f64::NAN) };
    let mut correct = 0;
    for start in (0..data.rows).step_by(256) {
        let rows = 256.min(data.rows - start);
        let out = model.forward(&data.x[start * data.features..(start + rows) * data.features], rows)?;
        let width = out.len() / rows;
        for (r, row) in out.chunks_exact(width).enumerate() {
            let best = (0..width).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap_or(0);
            correct += usize::from(best as u32 == labels[start + r]);
        }
    }
    Ok(correct as f64 / data.rows.max(1) as f64)
}

/// Reads an int8 artifact written by [`quantize`]: its layers in the order of the job file's model.
pub fn load_int8(dir: &Path, cfg: &TrainConfig) -> Result<QModel> {
    let tensors = candle_core::safetensors::load(dir.join(checkpoint::MODEL_FILE), &HOST)
        .map_err(|e| TrainError::checkpoint(dir, format!("{}: {e}", checkpoint::MODEL_FILE)))?;
    let mismatch = |what: String| refuse(dir, format!("the artifact does not match its job file: {what}"));
    let mut layers = Vec::new();
    for (name, activation) in linear_units(dir, cfg)? {
        let get = |suffix: &str| tensors.get(&format!("{name}.{suffix}"));
        let bias = get("bias").ok_or_else(|| mismatch(format!("no `{name}.bias`")))?.to_vec1::<f32>()?;
        let outputs = bias.len();
        let (inputs, weights) = match (get("weight_q"), get("weight_scale"), get("input_scale"), get("weight")) {
            (Some(q), Some(scale), Some(input_scale), _) => {
                let (o, inputs) = q.dims2()?;
                let scale = scale.to_vec1::<f32>()?;
                if o != outputs || scale.len() != outputs {
                    return Err(mismatch(format!(
                        "`{name}` has {o} weight rows and {} scales for {outputs} outputs",
                        scale.len()
                    )));
                }
                let q: Vec<i8> = q.flatten_all()?.to_vec1::<u8>()?.into_iter().map(|v| v as i8).collect();
                let input_scale = input_scale.to_vec1::<f32>()?.first().copied().unwrap_or(0.0);
                (inputs, Weights::int8(q, scale, input_scale, inputs))
            }
            (_, _, _, Some(w)) => {
                let (o, inputs) = w.dims2()?;
                if o != outputs {
                    return Err(mismatch(format!("`{name}.weight` has {o} rows for {outputs} outputs")));
                }
                (inputs, Weights::Fp32(w.flatten_all()?.to_vec1::<f32>()?))
            }
            _ => return Err(mismatch(format!("no weights for `{name}`"))),
        };
        if let Some(prev) = layers.last().map(|l: &QLinear| l.outputs)
            && prev != inputs
        {
            return Err(mismatch(format!("`{name}` takes {inputs} inputs, the layer before gives {prev}")));
        }
        layers.push(QLinear { name, inputs, outputs, weights, bias, activation });
    }
    Ok(QModel { layers })
}

/// Writes the artifact: int8 weights (as bytes), their scales and the input scale per layer,
/// fp32 for the layers kept so, biases in fp32, and the job file.
fn save(out: &Path, model: &QModel, job: &str) -> Result<()> {
    let io = |e: std::io::Error| TrainError::checkpoint(out, e);
    std::fs::create_dir_all(out).map_err(io)?;
    let mut tensors = HashMap::new();
    for l in &model.layers {
        let t = |v: Vec<f32>| Tensor::from_vec(v.clone(), v.len(), &HOST);
        match &l.weights {
            Weights::Int8 { q, scale, input_scale, .. } => {
                let bytes: Vec<u8> = q.iter().map(|&v| v as u8).collect();
                tensors.insert(format!("{}.weight_q", l.name), Tensor::from_vec(bytes, (l.outputs, l.inputs), &HOST)?);
                tensors.insert(format!("{}.weight_scale", l.name), t(scale.clone())?);
                tensors.insert(format!("{}.input_scale", l.name), t(vec![*input_scale])?);
            }
            Weights::Fp32(w) => {
                tensors
                    .insert(format!("{}.weight", l.name), Tensor::from_vec(w.clone(), (l.outputs, l.inputs), &HOST)?);
            }
        }
        tensors.insert(format!("{}.bias", l.name), t(l.bias.clone())?);
    }
    candle_core::safetensors::save(&tensors, out.join(checkpoint::MODEL_FILE))
        .map_err(|e| TrainError::checkpoint(out, e))?;
    std::fs::write(out.join(checkpoint::SPEC_FILE), job).map_err(io)?;
    Ok(())
}
