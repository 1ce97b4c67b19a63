//! Fully connected layer with its activation fused in: `y = act(x · wᵀ + b)`, weights in PyTorch's
//! (outputs, inputs) layout. On CPU it runs the fused kernels; elsewhere plain candle ops.

use candle_core::{Result, Tensor};
use shoal_common::spec::Activation;

use super::kernels::{self, Dims};
use super::layer::{Ctx, Deferred, Layer, Param, Saved};
use super::{activation, cpu};
use crate::rng::Rng;

pub struct Linear {
    params: [Param; 2],
    activation: Activation,
    inputs: usize,
    outputs: usize,
}

impl Linear {
    /// PyTorch's default initialisation: weights and bias uniform in ±1/√inputs.
    pub fn new(name: &str, inputs: usize, outputs: usize, activation: Activation, rng: &mut Rng) -> Result<Self> {
        let bound = 1.0 / (inputs as f64).sqrt();
        let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.uniform_range(-bound, bound) as f32).collect() };
        let w = Tensor::from_vec(draw(outputs * inputs), (outputs, inputs), &candle_core::Device::Cpu)?;
        let b = Tensor::from_vec(draw(outputs), outputs, &candle_core::Device::Cpu)?;
        Ok(Self {
            params: [Param::new(format!("{name}.weight"), w)?, Param::new(format!("{name}.bias"), b)?],
            activation,
            inputs,
            outputs,
        })
    }

    fn weight(&self) -> &Tensor {
        self.params[0].value.as_tensor()
    }

    fn bias(&self) -> &Tensor {
        self.params[1].value.as_tensor()
    }

    /// Adds `xᵀ·dz` and the column sums of `dz` to the weight and bias gradients (fused kernels).
    fn accumulate_param_grads(&mut self, x: &Tensor, dz: &Tensor, d: Dims, threads: usize) -> Result<()> {
        let [w, b] = &mut self.params;
        for p in [&mut *w, &mut *b] {
            if !p.grad_valid {
                p.grad = p.grad.contiguous()?;
            }
        }
        let (acc_w, acc_b) = (w.grad_valid, b.grad_valid);
        cpu::update_with2(&w.grad, x, dz, |gw, xs, dzs| kernels::linear_weight_grad(xs, dzs, gw, d, acc_w, threads))?;
        cpu::update_with(&b.grad, dz, |gb, dzs| kernels::bias_grad(dzs, gb, acc_b))?;
        w.grad_valid = true;
        b.grad_valid = true;
        Ok(())
    }

    fn fused(&self, x: &Tensor, ctx: &Ctx) -> bool {
        ctx.fused && cpu::is_cpu_f32(x) && cpu::is_cpu_f32(self.weight())
    }
}

impl Layer for Linear {
    fn kind(&self) -> &'static str {
        "linear"
    }

    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<(Tensor, Saved)> {
        let input_dims = x.dims().to_vec();
        let x = if x.rank() == 2 { x.clone() } else { x.flatten_from(1)? };
        let rows = x.dim(0)?;
        let d = Dims { rows, inputs: self.inputs, outputs: self.outputs };
        if self.fused(&x, ctx) {
            let x = x.contiguous()?;
            let z = cpu::build((rows, self.outputs), |z| {
                cpu::read2(&x, self.weight(), |xs, w| {
                    cpu::read(self.bias(), |b| kernels::linear_forward(xs, w, b, z, d, ctx.threads))
                })
            })?;
            if kernels::needs_preactivation(self.activation) {
                let y = z.copy()?;
                cpu::update(&y, |v| {
                    kernels::activate(self.activation, v);
                    Ok(())
                })?;
                let saved = if ctx.train() { Saved::new(vec![x, z], &input_dims) } else { Saved::default() };
                Ok((y, saved))
            } else {
                cpu::update(&z, |v| {
                    kernels::activate(self.activation, v);
                    Ok(())
                })?;
                let saved = if ctx.train() { Saved::new(vec![x, z.clone()], &input_dims) } else { Saved::default() };
                Ok((z, saved))
            }
        } else {
            let z = x.matmul(&self.weight().t()?)?.broadcast_add(self.bias())?;
            let y = activation::forward(self.activation, &z)?;
            let saved = if ctx.train() { Saved::new(vec![x, z, y.clone()], &input_dims) } else { Saved::default() };
            Ok((y, saved))
        }
    }

    fn backward_input_first(
        &mut self,
        saved: Saved,
        grad_out: Tensor,
        threads: usize,
    ) -> Result<(Option<Tensor>, Option<Deferred>)> {
        let x = saved.get(0)?.clone();
        let rows = x.dim(0)?;
        let dy = grad_out.reshape((rows, self.outputs))?;
        if saved.tensors.len() != 2 || !cpu::is_cpu_f32(&dy) {
            return Ok((self.backward(saved, dy, true, threads)?, None));
        }
        let d = Dims { rows, inputs: self.inputs, outputs: self.outputs };
        let dz = dy.contiguous()?;
        let act = self.activation;
        if act != Activation::Identity {
            cpu::update_with(&dz, saved.get(1)?, |g, s| kernels::activation_backward(act, s, g))?;
        }
        let dx = cpu::build((rows, self.inputs), |dx| {
            cpu::read2(&dz, self.weight(), |dzs, w| kernels::linear_input_grad(dzs, w, dx, d, threads))
        })?;
        Ok((Some(dx.reshape(saved.input_dims.as_slice())?), Some(Deferred { tensors: vec![x, dz] })))
    }

    fn finish_backward(&mut self, deferred: Deferred, threads: usize) -> Result<()> {
        let [x, dz] = deferred.tensors.as_slice() else {
            candle_core::bail!("a deferred linear backward needs its input and pre-activation gradient")
        };
        let d = Dims { rows: x.dim(0)?, inputs: self.inputs, outputs: self.outputs };
        self.accumulate_param_grads(x, dz, d, threads)
    }

    fn backward(
        &mut self,
        saved: Saved,
        grad_out: Tensor,
        need_input_grad: bool,
        threads: usize,
    ) -> Result<Option<Tensor>> {
        let x = saved.get(0)?;
        let rows = x.dim(0)?;
        let d = Dims { rows, inputs: self.inputs, outputs: self.outputs };
        let dy = grad_out.reshape((rows, self.outputs))?;
        let fused = saved.tensors.len() == 2 && cpu::is_cpu_f32(&dy);
        let dz = if fused {
            // The incoming gradient is ours to reuse: turn it into dz in place.
            let dz = dy.contiguous()?;
            let act = self.activation;
            if act != Activation::Identity {
                cpu::update_with(&dz, saved.get(1)?, |g, s| kernels::activation_backward(act, s, g))?;
            }
            self.accumulate_param_grads(x, &dz, d, threads)?;
            dz
        } else {
            let (z, y) = (saved.get(1)?, saved.get(2)?);
            let dz = activation::backward(self.activation, z, y, &dy)?;
            let gw = dz.t()?.matmul(x)?;
            let gb = dz.sum(0)?;
            self.params[0].accumulate(&gw)?;
            self.params[1].accumulate(&gb)?;
            dz
        };
        if !need_input_grad {
            return Ok(None);
        }
        let dx = if fused {
            cpu::build((rows, self.inputs), |dx| {
                cpu::read2(&dz, self.weight(), |dzs, w| kernels::linear_input_grad(dzs, w, dx, d, threads))
            })?
        } else {
            dz.matmul(self.weight())?
        };
        Ok(Some(dx.reshape(saved.input_dims.as_slice())?))
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
