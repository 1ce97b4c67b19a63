//! A trainable tensor and its gradient, both owned by a backend (in its device memory).

use std::sync::Arc;

use candle_core::Result;

use super::{Backend, Tensor};

/// A trainable tensor and its gradient.
pub struct Param {
    /// Stable name (`layers.0.weight`), used in checkpoints.
    pub name: String,
    pub value: Tensor,
    pub grad: Tensor,
    /// False after `zero_grad`: the next gradient overwrites instead of adding (no zeroing pass).
    pub grad_valid: bool,
    backend: Arc<dyn Backend>,
}

impl Param {
    /// A parameter on `backend` with the given initial values (row-major, shape `dims`).
    pub fn new(name: String, values: Vec<f32>, dims: &[usize], backend: &Arc<dyn Backend>) -> Result<Self> {
        let value = backend.from_host(values, dims)?;
        let grad = backend.zeros(dims)?;
        Ok(Self { name, value, grad, grad_valid: false, backend: backend.clone() })
    }

    /// The backend holding this parameter.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn elem_count(&self) -> usize {
        self.value.elem_count()
    }

    /// Adds `g` to the gradient (or sets it, after `zero_grad`).
    pub fn accumulate(&mut self, g: &Tensor) -> Result<()> {
        self.backend.accumulate(&mut self.grad, g, !self.grad_valid)?;
        self.grad_valid = true;
        Ok(())
    }

    pub fn zero_grad(&mut self) {
        self.grad_valid = false;
    }
}
