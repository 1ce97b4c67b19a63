//! The compute backend seam: where tensors live and which kernels run on them. Layers, losses,
//! optimizers and the flat gradient buffers reach memory and kernels only through [`Backend`];
//! nothing above this module names a device.
//!
//! [`CpuBackend`] is the production implementation (fused slice kernels on host memory);
//! [`CandleBackend`] runs the trait's default methods, plain candle ops on any candle device, and
//! is the reference the fused kernels are tested against. A new backend (say CUDA) implements
//! [`Backend::name`] and [`Backend::device`], gets correct candle-op kernels from the defaults, and
//! overrides the ones it can fuse. Parameters, gradients and optimizer moments are tensors on the
//! backend's device; host copies are made only for checkpoints, metrics and collectives.

pub mod activation;
pub mod conformance;
mod cpu;
pub mod cuda;
mod generic;
pub mod kernels;
mod param;
pub mod pool;
pub mod rules;
#[cfg(test)]
pub(crate) mod spanned;
mod storage;
mod tensor;

use std::sync::Arc;

use candle_core::{DType, Device, Result, Var};
use shoal_common::spec::{Activation, PoolKind};

pub use self::cpu::CpuBackend;
pub use self::generic::CandleBackend;
pub use self::param::Param;
pub use self::rules::AdamStep;
pub use self::tensor::{DeviceBuffer, Tensor};
use crate::collective::DeviceSpan;
use crate::rng::Rng;

/// Host memory, where checkpoints, datasets and collective buffers live whatever the backend.
pub const HOST: Device = Device::Cpu;

/// The production backend: fused kernels on host memory.
pub fn cpu() -> Arc<dyn Backend> {
    Arc::new(CpuBackend)
}

/// Plain candle ops on host memory: the reference the fused kernels must agree with.
pub fn reference() -> Arc<dyn Backend> {
    Arc::new(CandleBackend::new(HOST))
}

/// A host copy of a tensor's values as flat `f32`, wherever they live (metrics, tests).
pub fn to_host_vec(t: &Tensor) -> Result<Vec<f32>> {
    t.to_host_vec()
}

/// A host copy of a candle tensor's values as flat `f32` (checkpoints, morphs).
pub fn candle_values(t: &candle_core::Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()
}

/// Geometry of a convolution with a square kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub stride: usize,
    pub padding: usize,
}

/// Gradients of a convolution's backward pass.
pub struct ConvGrads {
    /// Of the input, when asked for.
    pub input: Option<Tensor>,
    pub weight: Tensor,
    pub bias: Tensor,
}

/// Runs candle's autograd on host tensors: the gradient of each of `wrt` given the output
/// gradient, through the surrogate `sum(output · grad_out)`.
fn autograd(
    output: &candle_core::Tensor,
    grad_out: &candle_core::Tensor,
    wrt: &[&candle_core::Tensor],
) -> Result<Vec<Option<Tensor>>> {
    let grad_out = grad_out.reshape(output.shape())?;
    let surrogate = (output * grad_out)?.sum_all()?;
    let grads = surrogate.backward()?;
    Ok(wrt.iter().map(|t| grads.get(t).cloned().map(Tensor::from)).collect())
}

/// One SGD step's settings (PyTorch's definition: coupled weight decay, momentum without
/// dampening, optional Nesterov).
#[derive(Clone, Copy, Debug)]
pub struct SgdStep {
    pub lr: f32,
    pub momentum: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
    /// The first step initialises the momentum buffer with the gradient.
    pub first: bool,
}

impl SgdStep {
    fn apply(&self, w: &mut [f32], g: &[f32], buf: &mut [f32]) {
        rules::sgd(w, g, buf, self.lr, self.momentum, self.nesterov, self.weight_decay, self.first);
    }
}

impl std::fmt::Debug for dyn Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Backend({})", self.name())
    }
}

/// The loss kernels' result: the gradient of `scale · Σ_rows loss` with respect to the output.
pub struct LossGrad {
    pub grad: Tensor,
    /// Sum over rows of the per-row loss (sum of squared errors for regression).
    pub loss_sum: f64,
    /// Rows whose argmax is the label (classification only).
    pub correct: usize,
}

/// Memory and kernels for one kind of device. Object-safe: models hold an `Arc<dyn Backend>`.
/// Tensors handed to a backend's kernels are its own (made by it or by its kernels); all are
/// `f32`. Kernels that take a tensor by value may overwrite it in place.
///
/// The default methods run plain candle ops on host tensors placed on [`Backend::device`]; a
/// device backend overrides every one of them.
pub trait Backend: Send + Sync {
    /// Short name for logs ("cpu").
    fn name(&self) -> &'static str;

    /// The candle device the default methods compute on.
    fn device(&self) -> &Device;

    // Device collectives.

    /// The handle of the stream this backend's kernels run on (a `CUstream`), for a device
    /// collective to order its work after; `None` for host memory.
    fn stream_handle(&self) -> Option<u64> {
        None
    }

    /// Where a tensor of this backend lives in device memory; `None` for host memory.
    fn device_span(&self, t: &Tensor) -> Option<DeviceSpan> {
        let _ = t;
        None
    }

    // Memory.

    /// A backend tensor holding `data` (row-major) with shape `dims`.
    #[allow(clippy::wrong_self_convention)] // a conversion into this backend's memory
    fn from_host(&self, data: Vec<f32>, dims: &[usize]) -> Result<Tensor> {
        Ok(candle_core::Tensor::from_vec(data, dims, self.device())?.into())
    }

    /// A batch of inputs streamed in by the loader or the evaluation: like [`Backend::from_host`],
    /// but a device backend copies it from pinned memory on a stream of its own, overlapping the
    /// step that is computing.
    fn batch_from_host(&self, data: Vec<f32>, dims: &[usize]) -> Result<Tensor> {
        self.from_host(data, dims)
    }

    /// A fresh backend tensor with the values of a host tensor (a checkpoint's, a morph's).
    #[allow(clippy::wrong_self_convention)] // a conversion into this backend's memory
    fn from_host_tensor(&self, t: &candle_core::Tensor) -> Result<Tensor> {
        Ok(t.to_dtype(DType::F32)?.to_device(self.device())?.copy()?.into())
    }

    fn zeros(&self, dims: &[usize]) -> Result<Tensor> {
        Ok(candle_core::Tensor::zeros(dims, DType::F32, self.device())?.into())
    }

    /// A copy with memory of its own.
    fn copy(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.host()?.copy()?.into())
    }

    /// Runs `f` on the tensor's values in host memory: borrowed where the backend can, copied
    /// otherwise.
    fn read_host(&self, t: &Tensor, f: &mut dyn FnMut(&[f32])) -> Result<()> {
        f(&t.to_host_vec()?);
        Ok(())
    }

    /// The tensor's values copied to host memory.
    fn to_host(&self, t: &Tensor) -> Result<Vec<f32>> {
        t.to_host_vec()
    }

    /// Overwrites a tensor's values from host memory (in place where the backend can).
    fn write(&self, t: &mut Tensor, src: &[f32]) -> Result<()> {
        *t = self.from_host(src.to_vec(), t.dims())?;
        Ok(())
    }

    // Flat buffers: parameters and gradients laid end to end in model order, the layout that
    // collectives and parameter servers exchange.

    /// Appends the parameters' values to `out`.
    fn gather_values(&self, params: &mut dyn Iterator<Item = &Param>, out: &mut Vec<f32>) -> Result<()> {
        for p in params {
            self.read_host(&p.value, &mut |v| out.extend_from_slice(v))?;
        }
        Ok(())
    }

    /// Appends the gradients to `out`, zeros where a parameter has none this step.
    fn gather_grads(&self, params: &mut dyn Iterator<Item = &Param>, out: &mut Vec<f32>) -> Result<()> {
        for p in params {
            if p.grad_valid {
                self.read_host(&p.grad, &mut |g| out.extend_from_slice(g))?;
            } else {
                out.resize(out.len() + p.elem_count(), 0.0);
            }
        }
        Ok(())
    }

    /// Sets the gradients from `src` (laid out as [`Backend::gather_grads`] makes it) and marks
    /// them valid. `src` must hold at least all their values.
    fn scatter_grads(&self, params: &mut dyn Iterator<Item = &mut Param>, src: &[f32]) -> Result<()> {
        let mut offset = 0;
        for p in params {
            let n = p.elem_count();
            self.write(&mut p.grad, part(src, offset, n)?)?;
            p.grad_valid = true;
            offset += n;
        }
        Ok(())
    }

    /// Sets the parameters' values from `src` (laid out as [`Backend::gather_values`] makes it).
    fn scatter_values(&self, params: &mut dyn Iterator<Item = &mut Param>, src: &[f32]) -> Result<()> {
        let mut offset = 0;
        for p in params {
            let n = p.elem_count();
            self.write(&mut p.value, part(src, offset, n)?)?;
            offset += n;
        }
        Ok(())
    }

    /// FNV-1a over the bits of every value: equal across ranks iff the parameters are (up to
    /// collisions).
    fn checksum(&self, params: &mut dyn Iterator<Item = &Param>) -> Result<u64> {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for p in params {
            self.read_host(&p.value, &mut |v| {
                for x in v {
                    h = (h ^ u64::from(x.to_bits())).wrapping_mul(0x100_0000_01b3);
                }
            })?;
        }
        Ok(h)
    }

    /// Rows `start..start + len` of a tensor (along its first dimension), in a new tensor.
    fn rows(&self, t: &Tensor, start: usize, len: usize) -> Result<Tensor> {
        Ok(t.host()?.narrow(0, start, len)?.contiguous()?.into())
    }

    // Elementwise.

    /// `a + b` (same shapes) in a new tensor.
    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        Ok((a.host()? + b.host()?.reshape(a.dims())?)?.into())
    }

    /// `x · mask` elementwise (same element counts), in a new tensor of `x`'s shape.
    fn multiply(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        Ok((x.host()? * mask.host()?.reshape(x.dims())?)?.into())
    }

    // Layer kernels. `x` is rows×inputs, `w` outputs×inputs (PyTorch layout), `dz` rows×outputs.

    /// `y = act(x · wᵀ + b)`. Returns `y` and what [`Backend::activation_backward`] needs: the
    /// pre-activation `z` where [`kernels::needs_preactivation`], `y` otherwise.
    fn linear_forward(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        act: Activation,
        threads: usize,
    ) -> Result<(Tensor, Tensor)> {
        let _ = threads;
        let z = x.host()?.matmul(&w.host()?.t()?)?.broadcast_add(b.host()?)?;
        let y = activation::forward(act, &z)?;
        let saved = if kernels::needs_preactivation(act) { z } else { y.clone() };
        Ok((y.into(), saved.into()))
    }

    /// Turns the output gradient into the pre-activation gradient `dz`, given what
    /// [`Backend::linear_forward`] saved. May reuse `grad`'s memory.
    fn activation_backward(&self, act: Activation, saved: &Tensor, grad: Tensor) -> Result<Tensor> {
        let s = saved.host()?;
        Ok(activation::backward(act, s, s, &grad.host()?.reshape(s.dims())?)?.into())
    }

    /// Input gradient of a linear layer: `dx = dz · w`.
    fn linear_input_grad(&self, dz: &Tensor, w: &Tensor, threads: usize) -> Result<Tensor> {
        let _ = threads;
        Ok(dz.host()?.matmul(w.host()?)?.into())
    }

    /// Weight gradient `gw (+)= dzᵀ · x`: added with `accumulate`, else overwritten.
    fn linear_weight_grad(
        &self,
        x: &Tensor,
        dz: &Tensor,
        gw: &mut Tensor,
        accumulate: bool,
        threads: usize,
    ) -> Result<()> {
        let _ = threads;
        self.accumulate(gw, &dz.host()?.t()?.matmul(x.host()?)?.into(), !accumulate)
    }

    /// Bias gradient `gb (+)= Σ_rows dz`.
    fn bias_grad(&self, dz: &Tensor, gb: &mut Tensor, accumulate: bool) -> Result<()> {
        self.accumulate(gb, &dz.host()?.sum(0)?.into(), !accumulate)
    }

    /// `dst += src`, or `dst = src` with `overwrite` (same element counts).
    fn accumulate(&self, dst: &mut Tensor, src: &Tensor, overwrite: bool) -> Result<()> {
        let src = src.host()?.reshape(dst.dims())?;
        *dst = if overwrite { src.copy()? } else { (dst.host()? + src)? }.into();
        Ok(())
    }

    /// `y = act(conv(x, w) + b)` on NCHW input with an (out, in, k, k) kernel. In training also
    /// returns what [`Backend::conv2d_backward`] needs.
    fn conv2d_forward(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        geometry: ConvGeometry,
        act: Activation,
        train: bool,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let ConvGeometry { stride, padding } = geometry;
        let bias = |b: &candle_core::Tensor| b.reshape((1, b.elem_count(), 1, 1));
        if !train {
            let z = x.host()?.conv2d(w.host()?, padding, stride, 1, 1)?.broadcast_add(&bias(b.host()?)?)?;
            return Ok((activation::forward(act, &z)?.into(), Vec::new()));
        }
        // Fresh variables, so autograd in backward reaches exactly these inputs.
        let (input, wv, bv) =
            (Var::from_tensor(x.host()?)?, Var::from_tensor(w.host()?)?, Var::from_tensor(b.host()?)?);
        let z = input.conv2d(&wv, padding, stride, 1, 1)?.broadcast_add(&bias(&bv)?)?;
        let y = activation::forward(act, &z)?;
        let saved = [input.as_tensor(), &y, wv.as_tensor(), bv.as_tensor()].map(|t| Tensor::from(t.clone()));
        Ok((y.detach().into(), saved.into()))
    }

    /// Gradients of a convolution from what its training forward (with the same geometry and
    /// activation) saved. May reuse `grad_out`'s memory.
    fn conv2d_backward(
        &self,
        saved: &[Tensor],
        grad_out: Tensor,
        geometry: ConvGeometry,
        act: Activation,
        need_input_grad: bool,
    ) -> Result<ConvGrads> {
        let _ = (geometry, act);
        let [input, output, w, b] = saved else { candle_core::bail!("conv backward without its forward's tensors") };
        let (input, w, b) = (input.host()?, w.host()?, b.host()?);
        let mut grads = autograd(output.host()?, grad_out.host()?, &[input, w, b])?.into_iter();
        let mut next = |what: &str| {
            grads
                .next()
                .flatten()
                .ok_or_else(|| candle_core::Error::Msg(format!("conv backward gave no {what} gradient")))
        };
        let input = next("input");
        Ok(ConvGrads {
            weight: next("weight")?,
            bias: next("bias")?,
            input: if need_input_grad { Some(input?) } else { None },
        })
    }

    /// Pooling over non-overlapping `size`×`size` windows of NCHW input, as [`pool`] defines it.
    /// In training also returns what [`Backend::pool_backward`] needs.
    fn pool_forward(&self, x: &Tensor, kind: PoolKind, size: usize, train: bool) -> Result<(Tensor, Vec<Tensor>)> {
        let d = pool_dims(x, size)?;
        let mut dims = x.dims().to_vec();
        (dims[2], dims[3]) = (d.h / size, d.w / size);
        let y = self.from_host(pool::forward(kind, d, &self.to_host(x)?), &dims)?;
        let saved = if train { vec![x.clone(), y.clone()] } else { Vec::new() };
        Ok((y, saved))
    }

    /// The input gradient of a pooling layer from what its training forward (of the same kind and
    /// size) saved.
    fn pool_backward(&self, saved: &[Tensor], grad_out: &Tensor, kind: PoolKind, size: usize) -> Result<Tensor> {
        let [input, _] = saved else { candle_core::bail!("pool backward without its forward's tensors") };
        let d = pool_dims(input, size)?;
        if grad_out.elem_count() != d.out_len() {
            candle_core::bail!("pool backward got {} gradients for {} outputs", grad_out.elem_count(), d.out_len());
        }
        let dx = pool::backward(kind, d, &self.to_host(input)?, &self.to_host(grad_out)?);
        self.from_host(dx, input.dims())
    }

    /// Inverted-dropout mask of shape `dims`: `1/keep` with probability `keep`, else 0, drawn from
    /// `rng` in row-major order (so every backend draws the same masks).
    fn dropout_mask(&self, dims: &[usize], keep: f64, rng: &mut Rng) -> Result<Tensor> {
        let n = dims.iter().product();
        let scale = (1.0 / keep) as f32;
        let mask = (0..n).map(|_| if rng.uniform() < keep { scale } else { 0.0 }).collect();
        self.from_host(mask, dims)
    }

    // Loss kernels, on a rows×width output.

    /// Softmax cross-entropy against one label per row; the gradient is `scale · (softmax − onehot)`.
    fn cross_entropy(&self, logits: &Tensor, labels: &[u32], scale: f32) -> Result<LossGrad> {
        let classes = logits.dim(1)?;
        let host = self.to_host(logits)?;
        let mut grad = vec![0f32; host.len()];
        let (loss_sum, correct) = kernels::softmax_cross_entropy(&host, labels, classes, scale, &mut grad)?;
        Ok(LossGrad { grad: self.from_host(grad, logits.dims())?, loss_sum, correct })
    }

    /// Squared error against row-major targets; the gradient is `scale · 2 (pred − target)`.
    fn squared_error(&self, pred: &Tensor, targets: &[f32], scale: f32) -> Result<LossGrad> {
        let host = self.to_host(pred)?;
        let mut grad = vec![0f32; host.len()];
        let loss_sum = kernels::squared_error(&host, targets, scale, &mut grad)?;
        Ok(LossGrad { grad: self.from_host(grad, pred.dims())?, loss_sum, correct: 0 })
    }

    // Optimizer updates on backend-owned state (moments are flat tensors of the parameter's size).

    /// One SGD step on `w`; `momentum` is the buffer (None without momentum).
    fn sgd_update(&self, w: &mut Tensor, g: &Tensor, momentum: Option<&mut Tensor>, s: &SgdStep) -> Result<()> {
        let (mut wv, gv) = (self.to_host(w)?, self.to_host(g)?);
        match momentum {
            Some(buf) => {
                let mut bv = self.to_host(buf)?;
                s.apply(&mut wv, &gv, &mut bv);
                self.write(buf, &bv)?;
            }
            None => s.apply(&mut wv, &gv, &mut []),
        }
        self.write(w, &wv)
    }

    /// One AdamW step on `w` with moments `m` and `v`.
    fn adamw_update(&self, w: &mut Tensor, g: &Tensor, m: &mut Tensor, v: &mut Tensor, s: &AdamStep) -> Result<()> {
        let (mut wv, gv) = (self.to_host(w)?, self.to_host(g)?);
        let (mut mv, mut vv) = (self.to_host(m)?, self.to_host(v)?);
        rules::adamw(&mut wv, &gv, &mut mv, &mut vv, s);
        self.write(m, &mv)?;
        self.write(v, &vv)?;
        self.write(w, &wv)
    }
}

/// The pooling sizes of an NCHW tensor.
fn pool_dims(x: &Tensor, size: usize) -> Result<pool::PoolDims> {
    match *x.dims() {
        [batch, channels, h, w] if size > 0 => Ok(pool::PoolDims { planes: batch * channels, h, w, size }),
        ref d => candle_core::bail!("pooling by {size} needs NCHW input, got {d:?}"),
    }
}

/// `n` values of a flat buffer from `offset`.
fn part(src: &[f32], offset: usize, n: usize) -> Result<&[f32]> {
    src.get(offset..offset + n).ok_or_else(|| {
        candle_core::Error::Msg(format!("flat buffer of {} values is too short for {}", src.len(), offset + n))
    })
}
