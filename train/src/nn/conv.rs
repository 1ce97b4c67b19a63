//! Convolution and pooling layers. The backend runs both passes (candle's ops and autograd on the
//! host); the layers own the parameters and the shapes.

use std::sync::Arc;

use candle_core::Result;
use shoal_common::spec::{Activation, PoolKind};

use super::Param;
use super::layer::{Ctx, Layer, Saved};
use crate::backend::{Backend, ConvGeometry, Tensor};
use crate::rng::Rng;

/// 2-D convolution with a square kernel, zero padding, stride, bias and activation.
pub struct Conv2d {
    params: [Param; 2],
    backend: Arc<dyn Backend>,
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
        Ok(Self {
            params: [w, b],
            backend: backend.clone(),
            activation,
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
        })
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
        let geometry = ConvGeometry { stride: self.stride, padding: self.padding };
        let (w, b) = (&self.params[0].value, &self.params[1].value);
        let (y, keep) = self.backend.conv2d_forward(x, w, b, geometry, self.activation, ctx.train())?;
        Ok((y, Saved::new(keep, x.dims())))
    }

    fn backward(
        &mut self,
        saved: Saved,
        grad_out: Tensor,
        need_input_grad: bool,
        _threads: usize,
    ) -> Result<Option<Tensor>> {
        let geometry = ConvGeometry { stride: self.stride, padding: self.padding };
        let grads =
            self.backend.conv2d_backward(&saved.tensors, grad_out, geometry, self.activation, need_input_grad)?;
        self.params[0].accumulate(&grads.weight)?;
        self.params[1].accumulate(&grads.bias)?;
        Ok(grads.input)
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
    backend: Arc<dyn Backend>,
}

impl Pool2d {
    pub fn new(kind: PoolKind, size: usize, backend: &Arc<dyn Backend>) -> Self {
        Self { kind, size, backend: backend.clone() }
    }
}

impl Layer for Pool2d {
    fn kind(&self) -> &'static str {
        "pool"
    }

    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<(Tensor, Saved)> {
        let (y, keep) = self.backend.pool_forward(x, self.kind, self.size, ctx.train())?;
        Ok((y, Saved::new(keep, x.dims())))
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
        Ok(Some(self.backend.pool_backward(&saved.tensors, &grad_out, self.kind, self.size)?))
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
