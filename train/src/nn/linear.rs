//! Fully connected layer with its activation fused in: `y = act(x · wᵀ + b)`, weights in PyTorch's
//! (outputs, inputs) layout. The backend runs it (fused kernels on CPU). Under quantization-aware
//! training its weights and input are rounded to the int8 grid first ([`super::fake_quant`]).

use std::sync::Arc;

use candle_core::Result;
use shoal_common::spec::Activation;

use super::layer::{Ctx, Deferred, Layer, Saved};
use super::{Param, fake_quant};
use crate::backend::{Backend, Tensor};
use crate::rng::Rng;

pub struct Linear {
    params: [Param; 2],
    backend: Arc<dyn Backend>,
    activation: Activation,
    inputs: usize,
    outputs: usize,
    /// Quantization-aware training: weights and input on the int8 grid in the forward pass.
    fake_quant: bool,
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
        Ok(Self { params: [w, b], backend: backend.clone(), activation, inputs, outputs, fake_quant: false })
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

    /// The weights the forward pass multiplies by: the parameter, or its int8-grid copy under
    /// quantization-aware training (saved for the input gradient, so it is computed once).
    fn forward_weight(&self) -> Result<Tensor> {
        if self.fake_quant {
            fake_quant::grid(self.backend.as_ref(), self.weight(), self.inputs)
        } else {
            Ok(self.weight().clone())
        }
    }

    /// The saved input and the pre-activation gradient of `grad_out`.
    fn dz(&self, saved: &Saved, grad_out: Tensor) -> Result<(Tensor, Tensor)> {
        let x = saved.get(0)?.clone();
        let dy = grad_out.reshape((x.dim(0)?, self.outputs))?;
        let dz = self.backend.activation_backward(self.activation, saved.get(1)?, dy)?;
        Ok((x, dz))
    }

    /// `dz · w` with the weights of the forward pass (the straight-through estimator under
    /// quantization-aware training: the rounding passes the gradient unchanged).
    fn input_grad(&self, dz: &Tensor, saved: &Saved, threads: usize) -> Result<Tensor> {
        let w = saved.tensors.get(2).unwrap_or(self.weight());
        self.backend.linear_input_grad(dz, w, threads)?.reshape(saved.input_dims.as_slice())
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
        let mut x = x.contiguous()?;
        if self.fake_quant {
            x = fake_quant::grid(self.backend.as_ref(), &x, x.elem_count())?;
        }
        let w = self.forward_weight()?;
        let (y, keep) = self.backend.linear_forward(&x, &w, &self.params[1].value, self.activation, ctx.threads)?;
        let saved = match ctx.train() {
            true if self.fake_quant => Saved::new(vec![x, keep, w], &input_dims),
            true => Saved::new(vec![x, keep], &input_dims),
            false => Saved::default(),
        };
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

    fn fake_quantize(&mut self) -> bool {
        self.fake_quant = true;
        true
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
