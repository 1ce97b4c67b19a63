//! Losses, computed with their gradient in one fused pass: softmax cross-entropy for
//! classification, mean squared error for regression.

use candle_core::{Result, bail};

use crate::backend::{Backend, Tensor};

/// Labels of a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// One class index per row.
    Classes(Vec<u32>),
    /// `width` regression targets per row.
    Values { values: Vec<f32>, width: usize },
}

impl Targets {
    pub fn rows(&self) -> usize {
        match self {
            Targets::Classes(c) => c.len(),
            Targets::Values { values, width } => values.len() / (*width).max(1),
        }
    }
}

/// Loss of a batch and the gradient of `scale · Σ_rows loss` with respect to the model output.
pub struct LossOutput {
    /// Sum over rows of the per-row loss (mean over target columns for regression).
    pub loss_sum: f64,
    /// Rows classified correctly (classification only).
    pub correct: usize,
    pub rows: usize,
    pub grad: Tensor,
}

impl LossOutput {
    pub fn mean(&self) -> f64 {
        self.loss_sum / self.rows.max(1) as f64
    }
}

/// Computes the loss and its gradient on `backend`, where `output` lives. For a mean over the
/// batch, pass `scale = 1 / rows`.
pub fn loss_and_grad(backend: &dyn Backend, output: &Tensor, targets: &Targets, scale: f32) -> Result<LossOutput> {
    let (rows, width) = output.dims2()?;
    if targets.rows() != rows {
        bail!("batch has {rows} outputs but {} targets", targets.rows());
    }
    let l = match targets {
        Targets::Classes(labels) => backend.cross_entropy(output, labels, scale)?,
        Targets::Values { values, width: tw } => {
            if *tw != width {
                bail!("model has {width} outputs but targets have {tw} columns");
            }
            // Per-row loss is the mean over columns, so the gradient scales by 1/width.
            let mut l = backend.squared_error(output, values, scale / width as f32)?;
            l.loss_sum /= width as f64;
            l
        }
    };
    Ok(LossOutput { loss_sum: l.loss_sum, correct: l.correct, rows, grad: l.grad })
}
