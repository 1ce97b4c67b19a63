//! Convolution and pooling, built from candle's own ops and differentiated by candle's autograd
//! inside the layer: the input is wrapped in a fresh variable, and backward runs candle's
//! `backward` on `sum(output · grad_output)`, which yields exactly the input and parameter
//! gradients.

use std::sync::Arc;

use candle_core::{Result, Tensor, Var};
use shoal_common::spec::{Activation, PoolKind};

use super::Param;
use super::layer::{Ctx, Layer, Saved};
use crate::backend::{Backend, activation};
use crate::rng::Rng;

/// Runs candle's autograd for one layer: returns the gradient of each of `wrt` given the output
/// gradient.
fn autograd(output: &Tensor, grad_out: &Tensor, wrt: &[&Tensor]) -> Result<Vec<Option<Tensor>>> {
    let grad_out = grad_out.reshape(output.shape())?;
    let surrogate = (output * grad_out)?.sum_all()?;
    let grads = surrogate.backward()?;
    Ok(wrt.iter().map(|t| grads.get(t).cloned()).collect())
}

/// 2-D convolution with a square kernel, zero padding, stride, bias and activation.
pub struct Conv2d {
    params: [Param; 2],
    activation: Activation,
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    /// PyTorch's default initialisation: uniform in ±1/√(in_channels·k²).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        activation: Activation,
        rng: &mut Rng,
        backend: &Arc<dyn Backend>,
    ) -> Result<Self> {
        let fan_in = in_channels * kernel * kernel;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.uniform_range(-bound, bound) as f32).collect() };
        let w_dims = [out_channels, in_channels, kernel, kernel];
        let w = Param::new(format!("{name}.weight"), draw(out_channels * fan_in), &w_dims, backend)?;
        let b = Param::new(format!("{name}.bias"), draw(out_channels), &[out_channels], backend)?;
        Ok(Self { params: [w, b], activation, in_channels, out_channels, kernel, stride, padding })
    }

    fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        let f = |n: usize| (n + 2 * self.padding - self.kernel) / self.stride + 1;
        (f(h), f(w))
    }
}

impl Layer for Conv2d {
    fn kind(&self) -> &'static str {
        "conv"
    }

    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<(Tensor, Saved)> {
        let input_dims = x.dims().to_vec();
        let (w, b) = (&self.params[0].value, &self.params[1].value);
        if ctx.train() {
            let input = Var::from_tensor(x)?;
            let z = input.conv2d(w.as_tensor(), self.padding, self.stride, 1, 1)?;
            let z = z.broadcast_add(&b.as_tensor().reshape((1, self.out_channels, 1, 1))?)?;
            let y = activation::forward(self.activation, &z)?;
            Ok((y.detach(), Saved::new(vec![input.as_tensor().clone(), y], &input_dims)))
        } else {
            let w = w.as_detached_tensor();
            let b = b.as_detached_tensor().reshape((1, self.out_channels, 1, 1))?;
            let z = x.conv2d(&w, self.padding, self.stride, 1, 1)?.broadcast_add(&b)?;
            Ok((activation::forward(self.activation, &z)?, Saved::default()))
        }
    }

    fn backward(
        &mut self,
        saved: Saved,
        grad_out: Tensor,
        need_input_grad: bool,
        _threads: usize,
    ) -> Result<Option<Tensor>> {
        let (input, output) = (saved.get(0)?, saved.get(1)?);
        let grads =
            autograd(output, &grad_out, &[input, self.params[0].value.as_tensor(), self.params[1].value.as_tensor()])?;
        for (param, grad) in self.params.iter_mut().zip(&grads[1..]) {
            if let Some(g) = grad {
                param.accumulate(g)?;
            }
        }
        Ok(if need_input_grad { grads[0].clone() } else { None })
    }

    fn params(&self) -> &[Param] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [Param] {
        &mut self.params
    }

    fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        let (h, w) = self.out_hw(input[1], input[2]);
        vec![self.out_channels, h, w]
    }

    fn macs(&self, input: &[usize]) -> u64 {
        let (h, w) = self.out_hw(input[1], input[2]);
        (h * w * self.out_channels * self.in_channels * self.kernel * self.kernel) as u64
    }
}

/// Max or average pooling over non-overlapping square windows.
pub struct Pool2d {
    kind: PoolKind,
    size: usize,
}

impl Pool2d {
    pub fn new(kind: PoolKind, size: usize) -> Self {
        Self { kind, size }
    }

    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        match self.kind {
            PoolKind::Max => x.max_pool2d(self.size),
            PoolKind::Avg => x.avg_pool2d(self.size),
        }
    }
}

impl Layer for Pool2d {
    fn kind(&self) -> &'static str {
        "pool"
    }

    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<(Tensor, Saved)> {
        let input_dims = x.dims().to_vec();
        if ctx.train() {
            let input = Var::from_tensor(x)?;
            let y = self.apply(input.as_tensor())?;
            Ok((y.detach(), Saved::new(vec![input.as_tensor().clone(), y], &input_dims)))
        } else {
            Ok((self.apply(x)?, Saved::default()))
        }
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
        let (input, output) = (saved.get(0)?, saved.get(1)?);
        Ok(autograd(output, &grad_out, &[input])?.remove(0))
    }

    fn params(&self) -> &[Param] {
        &[]
    }

    fn params_mut(&mut self) -> &mut [Param] {
        &mut []
    }

    fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        vec![input[0], input[1] / self.size, input[2] / self.size]
    }

    fn macs(&self, input: &[usize]) -> u64 {
        input.iter().product::<usize>() as u64
    }
}
