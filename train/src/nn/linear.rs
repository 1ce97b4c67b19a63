//! Fully connected layer with its activation fused in: `y = act(x · wᵀ + b)`, weights in PyTorch's
//! (outputs, inputs) layout. The backend runs it (fused kernels on CPU).

use std::sync::Arc;

use candle_core::Result;
use shoal_common::spec::Activation;

use super::Param;
use super::layer::{Ctx, Deferred, Layer, Saved};
use crate::backend::{Backend, Tensor};
use crate::rng::Rng;

pub struct Linear {
    params: [Param; 2],
    backend: Arc<dyn Backend>,
    activation: Activation,
    inputs: usize,
    outputs: usize,
}

impl Linear {
    /// PyTorch's default initialisation: weights and bias uniform in ±1/√inputs.
    pub fn new(
        name: &str,
        inputs: usize,
        outputs: usize,
        activation: Activation,
        rng: &mut Rng,
        backend: &Arc<dyn Backend>,
    ) -> Result<Self> {
        let bound = 1.0 / (inputs as f64).sqrt();
        let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.uniform_range(-bound, bound) as f32).collect() };
        let w = Param::new(format!("{name}.weight"), draw(outputs * inputs), &[outputs, inputs], backend)?;
        let b = Param::new(format!("{name}.bias"), draw(outputs), &[outputs], backend)?;
        Ok(Self { params: [w, b], backend: backend.clone(), activation, inputs, outputs })
    }

    fn weight(&self) -> &Tensor {
        &self.params[0].value
    }

    /// Adds `dzᵀ·x` and the column sums of `dz` to the weight and bias gradients.
    fn accumulate_param_grads(&mut self, x: &Tensor, dz: &Tensor, threads: usize) -> Result<()> {
        let [w, b] = &mut self.params;
        self.backend.linear_weight_grad(x, dz, &mut w.grad, w.grad_valid, threads)?;
        self.backend.bias_grad(dz, &mut b.grad, b.grad_valid)?;
        w.grad_valid = true;
        b.grad_valid = true;
        Ok(())
    }

    /// The saved input and the pre-activation gradient of `grad_out`.
    fn dz(&self, saved: &Saved, grad_out: Tensor) -> Result<(Tensor, Tensor)> {
        let x = saved.get(0)?.clone();
        let dy = grad_out.reshape((x.dim(0)?, self.outputs))?;
        let dz = self.backend.activation_backward(self.activation, saved.get(1)?, dy)?;
        Ok((x, dz))
    }

    fn input_grad(&self, dz: &Tensor, saved: &Saved, threads: usize) -> Result<Tensor> {
        self.backend.linear_input_grad(dz, self.weight(), threads)?.reshape(saved.input_dims.as_slice())
    }
}

impl Layer for Linear {
    fn kind(&self) -> &'static str {
        "linear"
    }

    /// Saves the (contiguous, flat) input and what the activation's backward reads.
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<(Tensor, Saved)> {
        let input_dims = x.dims().to_vec();
        let x = if x.rank() == 2 { x.clone() } else { x.flatten_from(1)? };
        let x = x.contiguous()?;
        let (w, b) = (self.weight(), &self.params[1].value);
        let (y, keep) = self.backend.linear_forward(&x, w, b, self.activation, ctx.threads)?;
        let saved = if ctx.train() { Saved::new(vec![x, keep], &input_dims) } else { Saved::default() };
        Ok((y, saved))
    }

    fn backward_input_first(
        &mut self,
        saved: Saved,
        grad_out: Tensor,
        threads: usize,
    ) -> Result<(Option<Tensor>, Option<Deferred>)> {
        let (x, dz) = self.dz(&saved, grad_out)?;
        let dx = self.input_grad(&dz, &saved, threads)?;
        Ok((Some(dx), Some(Deferred { tensors: vec![x, dz] })))
    }

    fn finish_backward(&mut self, deferred: Deferred, threads: usize) -> Result<()> {
        let [x, dz] = deferred.tensors.as_slice() else {
            candle_core::bail!("a deferred linear backward needs its input and pre-activation gradient")
        };
        self.accumulate_param_grads(x, dz, threads)
    }

    fn backward(
        &mut self,
        saved: Saved,
        grad_out: Tensor,
        need_input_grad: bool,
        threads: usize,
    ) -> Result<Option<Tensor>> {
        let (x, dz) = self.dz(&saved, grad_out)?;
        self.accumulate_param_grads(&x, &dz, threads)?;
        if !need_input_grad {
            return Ok(None);
        }
        Ok(Some(self.input_grad(&dz, &saved, threads)?))
    }

    fn params(&self) -> &[Param] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [Param] {
        &mut self.params
    }

    fn output_dims(&self, _input: &[usize]) -> Vec<usize> {
        vec![self.outputs]
    }

    fn macs(&self, _input: &[usize]) -> u64 {
        (self.inputs * self.outputs) as u64
    }
}
