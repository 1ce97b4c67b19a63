//! Inverted dropout: in training, zero each value with probability p and scale the rest by
//! 1/(1-p); at inference, pass through.

use std::sync::Arc;

use candle_core::Result;

use super::Param;
use super::layer::{Ctx, Layer, Saved};
use crate::backend::{Backend, Tensor};

pub struct Dropout {
    p: f64,
    backend: Arc<dyn Backend>,
}

impl Dropout {
    /// Masks are made by `backend`, where the activations live.
    pub fn new(p: f64, backend: &Arc<dyn Backend>) -> Self {
        Self { p, backend: backend.clone() }
    }
}

impl Layer for Dropout {
    fn kind(&self) -> &'static str {
        "dropout"
    }

    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<(Tensor, Saved)> {
        if !ctx.dropout() || self.p == 0.0 {
            return Ok((x.clone(), Saved::new(Vec::new(), x.dims())));
        }
        let mask = self.backend.dropout_mask(x.dims(), 1.0 - self.p, &mut ctx.rng)?;
        let y = self.backend.multiply(x, &mask)?;
        Ok((y, Saved::new(vec![mask], x.dims())))
    }

    fn backward(
        &mut self,
        saved: Saved,
        grad_out: Tensor,
        need_input_grad: bool,
        _threads: usize,
    ) -> Result<Option<Tensor>> {
        if !need_input_grad {
            return Ok(None);
        }
        match saved.tensors.first() {
            Some(mask) => Ok(Some(self.backend.multiply(&grad_out, mask)?)),
            None => Ok(Some(grad_out)),
        }
    }

    fn params(&self) -> &[Param] {
        &[]
    }

    fn params_mut(&mut self) -> &mut [Param] {
        &mut []
    }

    fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        input.to_vec()
    }

    fn macs(&self, _input: &[usize]) -> u64 {
        0
    }
}
