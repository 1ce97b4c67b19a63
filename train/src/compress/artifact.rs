//! A model on disk made ready for inference on the CPU, whatever produced it: an fp32 checkpoint
//! (trained, distilled, or structurally pruned into a smaller dense model), a checkpoint with
//! sparse weights (magnitude pruning), or an int8 artifact (`shoal quantize`). `shoal predict`
//! and `shoal compare` open artifacts through this one type.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use shoal_analysis::reduce::Pipeline;
use shoal_common::spec::{DatasetSource, TrainConfig, load_toml};

use super::int8::Weights;
use super::quantize::{QModel, REPORT_FILE, load_int8};
use crate::backend::{Backend, CpuBackend};
use crate::checkpoint;
use crate::error::{Result, TrainError};
use crate::model::{DataShape, Model};
use crate::nn::{Ctx, Mode};
use crate::rng::Rng;

/// How an artifact stores its weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Fp32,
    /// fp32 weights stored as a bitmap of non-zeros plus their values.
    Sparse,
    Int8,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Fp32 => "fp32",
            Format::Sparse => "sparse",
            Format::Int8 => "int8",
        }
    }
}

enum Runner {
    Dense(Model),
    Int8(QModel),
}

/// An opened artifact.
pub struct Artifact {
    pub path: PathBuf,
    pub format: Format,
    /// The job file saved with the weights.
    pub job: TrainConfig,
    /// Parameters (weights and biases) and, of the weight matrices, how many are zero.
    pub params: usize,
    pub weights: usize,
    pub zero_weights: usize,
    /// Size of the weights file.
    pub bytes: u64,
    pub outputs: usize,
    /// The feature transforms saved with the weights: the model reads their outputs.
    pub transforms: Option<Pipeline>,
    runner: Runner,
}

fn refuse(path: &Path, reason: impl Into<String>) -> TrainError {
    TrainError::Checkpoint { path: path.to_path_buf(), reason: reason.into() }
}

impl Artifact {
    /// Opens the artifact folder `path` for inputs of `features` values (an image of
    /// `image` = channels, height, width when the model has convolutions). With saved transforms
    /// `features` is their output width, the model's, not the raw data's
    /// ([`Preparation::of_artifact`](crate::data::Preparation::of_artifact) prepares such inputs).
    pub fn open(path: &Path, features: usize, image: Option<[usize; 3]>) -> Result<Self> {
        let job = Self::job_of(path)?;
        let transforms = checkpoint::transforms(path)?;
        if let Some(t) = &transforms
            && t.outputs() != features
        {
            return Err(refuse(
                path,
                format!(
                    "reads the {} outputs of its saved transforms (of {} raw features), not {features} features",
                    t.outputs(),
                    t.inputs()
                ),
            ));
        }
        let bytes = std::fs::metadata(path.join(checkpoint::MODEL_FILE)).map_or(0, |m| m.len());
        if path.join(REPORT_FILE).exists() {
            let model = load_int8(path, &job)?;
            let first = model.layers.first().map_or(0, |l| l.inputs);
            if first != features {
                return Err(refuse(path, format!("takes {first} features, the data has {features}")));
            }
            let (mut params, mut weights, mut zero_weights) = (0, 0, 0);
            for l in &model.layers {
                let n = l.inputs * l.outputs;
                params += n + l.outputs;
                weights += n;
                zero_weights += match &l.weights {
                    Weights::Int8 { q, .. } => q.iter().filter(|&&v| v == 0).count(),
                    Weights::Fp32(w) => w.iter().filter(|&&v| v == 0.0).count(),
                };
            }
            let outputs = model.layers.last().map_or(0, |l| l.outputs);
            return Ok(Self {
                path: path.to_path_buf(),
                format: Format::Int8,
                job,
                params,
                weights,
                zero_weights,
                bytes,
                outputs,
                transforms,
                runner: Runner::Int8(model),
            });
        }
        let saved = checkpoint::load(path)?;
        let format = if saved.sparse_tensors > 0 { Format::Sparse } else { Format::Fp32 };
        let outputs = saved
            .model
            .get("output.bias")
            .ok_or_else(|| refuse(path, "the checkpoint has no `output.bias`"))?
            .dims1()?;
        // Transformed features are flat, whatever the source.
        let image = image.or(match job.dataset.source {
            DatasetSource::Digits if transforms.is_none() => Some([1, 8, 8]),
            _ => None,
        });
        let backend: Arc<dyn Backend> = Arc::new(CpuBackend);
        let shape = DataShape { features, image, outputs };
        let mut model = Model::build_on(&job.model, &shape, 0, &backend)
            .map_err(|e| refuse(path, format!("its job file's model does not fit {features} features: {e}")))?;
        model.load_named(&saved.model, path)?;
        let (mut weights, mut zero_weights) = (0, 0);
        for t in saved.model.values().filter(|t| t.rank() >= 2) {
            let v = t.flatten_all()?.to_vec1::<f32>()?;
            weights += v.len();
            zero_weights += v.iter().filter(|&&x| x == 0.0).count();
        }
        Ok(Self {
            path: path.to_path_buf(),
            format,
            job,
            params: model.param_count(),
            weights,
            zero_weights,
            bytes,
            outputs,
            transforms,
            runner: Runner::Dense(model),
        })
    }

    /// The job file saved in the artifact folder `path`.
    pub fn job_of(path: &Path) -> Result<TrainConfig> {
        if !path.join(checkpoint::MODEL_FILE).is_file() {
            return Err(refuse(path, format!("is not an artifact: it has no {}", checkpoint::MODEL_FILE)));
        }
        let text = std::fs::read_to_string(path.join(checkpoint::SPEC_FILE))
            .map_err(|e| refuse(path, format!("cannot read its job file {}: {e}", checkpoint::SPEC_FILE)))?;
        let (_, job) = load_toml(&text).map_err(|e| refuse(path, format!("its job file is not valid: {e}")))?;
        Ok(job)
    }

    /// Share of the weight matrices' entries that are zero.
    pub fn sparsity(&self) -> f64 {
        self.zero_weights as f64 / self.weights.max(1) as f64
    }

    /// The model's outputs (logits, or regression values) for `rows` rows of `x`, on one thread.
    pub fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        match &self.runner {
            Runner::Int8(m) => m.forward(x, rows),
            Runner::Dense(m) => {
                let mut ctx = Ctx::new(Mode::Eval, 1, Rng::new(0));
                let features = x.len() / rows.max(1);
                let input = m.backend().batch_from_host(x.to_vec(), &[rows, features])?;
                let (out, _) = m.forward(&input, &mut ctx)?;
                Ok(m.backend().to_host(&out)?)
            }
        }
    }

    /// The outputs of `rows` rows of `x`, and the gradient with respect to `x` of
    /// `Σ outputs · weights` (`weights` shaped like the outputs: a one-hot row picks one output)
    /// through the engine's backward pass. Int8 artifacts have no gradient.
    pub fn gradient(&mut self, x: &[f32], rows: usize, weights: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
        let Runner::Dense(m) = &mut self.runner else {
            return Err(refuse(&self.path, "is int8: gradients need an fp32 artifact (the one it was quantized from)"));
        };
        let mut ctx = Ctx::new(Mode::Attribute, 1, Rng::new(0));
        let features = x.len() / rows.max(1);
        let input = m.backend().batch_from_host(x.to_vec(), &[rows, features])?;
        let (out, saved) = m.forward(&input, &mut ctx)?;
        let outputs = m.backend().to_host(&out)?;
        let grad = m.backend().batch_from_host(weights.to_vec(), out.dims())?;
        let dx = m.input_gradient(saved, grad, 1)?;
        Ok((outputs, m.backend().to_host(&dx)?))
    }

    /// Class probabilities (the softmax of each row's outputs) of `rows` rows of `x`.
    pub fn probabilities(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let mut out = self.forward(x, rows)?;
        softmax_rows(&mut out, self.outputs.max(1));
        Ok(out)
    }

    /// The index of the largest output of each of `rows` rows of `x`.
    pub fn classify(&self, x: &[f32], rows: usize) -> Result<Vec<u32>> {
        let out = self.forward(x, rows)?;
        Ok(out.chunks_exact(self.outputs.max(1)).map(|row| argmax(row) as u32).collect())
    }
}

/// Replaces each row of `width` values by its softmax.
pub fn softmax_rows(x: &mut [f32], width: usize) {
    for row in x.chunks_exact_mut(width) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f64;
        for v in row.iter_mut() {
            let e = f64::from(*v - max).exp();
            sum += e;
            *v = e as f32;
        }
        for v in row.iter_mut() {
            *v = (f64::from(*v) / sum) as f32;
        }
    }
}

/// Index of the largest value (the first on ties).
pub fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best })
}
