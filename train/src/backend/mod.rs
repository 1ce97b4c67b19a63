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
mod cpu;
pub mod cuda;
mod generic;
pub mod kernels;
mod param;
pub mod rules;
mod storage;

use std::sync::Arc;

use candle_core::{DType, Device, Result, Tensor, Var};
use shoal_common::spec::Activation;

pub use self::cpu::CpuBackend;
pub use self::generic::CandleBackend;
pub use self::param::Param;
pub use self::rules::AdamStep;
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

/// A host copy of any tensor's values as flat `f32` (checkpoints, metrics, tests).
pub fn to_host_vec(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()
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

/// The loss kernels' result: the gradient of `scale · Σ_rows loss` with respect to the output.
pub struct LossGrad {
    pub grad: Tensor,
    /// Sum over rows of the per-row loss (sum of squared errors for regression).
    pub loss_sum: f64,
    /// Rows whose argmax is the label (classification only).
    pub correct: usize,
}

/// Memory and kernels for one kind of device. Object-safe: models hold an `Arc<dyn Backend>`.
/// Tensors handed to a backend's kernels are its own (made by it or by candle ops on its device);
/// all are `f32`. Kernels that take a tensor by value may overwrite it in place.
pub trait Backend: Send + Sync {
    /// Short name for logs ("cpu").
    fn name(&self) -> &'static str;

    /// Where this backend's tensors live.
    fn device(&self) -> &Device;

    // Memory.

    /// A backend tensor holding `data` (row-major) with shape `dims`.
    #[allow(clippy::wrong_self_convention)] // a conversion into this backend's memory
    fn from_host(&self, data: Vec<f32>, dims: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(data, dims, self.device())
    }

    /// A fresh backend tensor with the values of a host tensor (a checkpoint's, a morph's).
    #[allow(clippy::wrong_self_convention)] // a conversion into this backend's memory
    fn from_host_tensor(&self, t: &Tensor) -> Result<Tensor> {
        t.to_dtype(DType::F32)?.to_device(self.device())?.copy()
    }

    fn zeros(&self, dims: &[usize]) -> Result<Tensor> {
        Tensor::zeros(dims, DType::F32, self.device())
    }

    /// Runs `f` on the tensor's values in host memory: borrowed where the backend can, copied
    /// otherwise.
    fn read_host(&self, t: &Tensor, f: &mut dyn FnMut(&[f32])) -> Result<()> {
        f(&to_host_vec(t)?);
        Ok(())
    }

    /// The tensor's values copied to host memory.
    fn to_host(&self, t: &Tensor) -> Result<Vec<f32>> {
        to_host_vec(t)
    }

    /// Overwrites a tensor's values from host memory (in place where the backend can).
    fn write(&self, t: &mut Tensor, src: &[f32]) -> Result<()> {
        *t = self.from_host(src.to_vec(), t.dims())?;
        Ok(())
    }

    /// Overwrites a variable's values from host memory.
    fn write_var(&self, v: &Var, src: &[f32]) -> Result<()> {
        v.set(&self.from_host(src.to_vec(), v.dims())?)
    }

    // Flat buffers: parameters and gradients laid end to end in model order, the layout that
    // collectives and parameter servers exchange.

    /// Appends the parameters' values to `out`.
    fn gather_values(&self, params: &mut dyn Iterator<Item = &Param>, out: &mut Vec<f32>) -> Result<()> {
        for p in params {
            self.read_host(p.value.as_tensor(), &mut |v| out.extend_from_slice(v))?;
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
            self.write_var(&p.value, part(src, offset, n)?)?;
            offset += n;
        }
        Ok(())
    }

    /// FNV-1a over the bits of every value: equal across ranks iff the parameters are (up to
    /// collisions).
    fn checksum(&self, params: &mut dyn Iterator<Item = &Param>) -> Result<u64> {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for p in params {
            self.read_host(p.value.as_tensor(), &mut |v| {
                for x in v {
                    h = (h ^ u64::from(x.to_bits())).wrapping_mul(0x100_0000_01b3);
                }
            })?;
        }
        Ok(h)
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
        let z = x.matmul(&w.t()?)?.broadcast_add(b)?;
        let y = activation::forward(act, &z)?;
        let saved = if kernels::needs_preactivation(act) { z } else { y.clone() };
        Ok((y, saved))
    }

    /// Turns the output gradient into the pre-activation gradient `dz`, given what
    /// [`Backend::linear_forward`] saved. May reuse `grad`'s memory.
    fn activation_backward(&self, act: Activation, saved: &Tensor, grad: Tensor) -> Result<Tensor> {
        activation::backward(act, saved, saved, &grad)
    }

    /// Input gradient of a linear layer: `dx = dz · w`.
    fn linear_input_grad(&self, dz: &Tensor, w: &Tensor, threads: usize) -> Result<Tensor> {
        let _ = threads;
        dz.matmul(w)
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
        self.accumulate(gw, &dz.t()?.matmul(x)?, !accumulate)
    }

    /// Bias gradient `gb (+)= Σ_rows dz`.
    fn bias_grad(&self, dz: &Tensor, gb: &mut Tensor, accumulate: bool) -> Result<()> {
        self.accumulate(gb, &dz.sum(0)?, !accumulate)
    }

    /// `dst += src`, or `dst = src` with `overwrite` (same shapes).
    fn accumulate(&self, dst: &mut Tensor, src: &Tensor, overwrite: bool) -> Result<()> {
        *dst = if overwrite { src.copy()? } else { (&*dst + src)? };
        Ok(())
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
    fn sgd_update(&self, w: &Var, g: &Tensor, momentum: Option<&mut Tensor>, s: &SgdStep) -> Result<()> {
        let (mut wv, gv) = (self.to_host(w.as_tensor())?, self.to_host(g)?);
        match momentum {
            Some(buf) => {
                let mut bv = self.to_host(buf)?;
                s.apply(&mut wv, &gv, &mut bv);
                self.write(buf, &bv)?;
            }
            None => s.apply(&mut wv, &gv, &mut []),
        }
        self.write_var(w, &wv)
    }

    /// One AdamW step on `w` with moments `m` and `v`.
    fn adamw_update(&self, w: &Var, g: &Tensor, m: &mut Tensor, v: &mut Tensor, s: &AdamStep) -> Result<()> {
        let (mut wv, gv) = (self.to_host(w.as_tensor())?, self.to_host(g)?);
        let (mut mv, mut vv) = (self.to_host(m)?, self.to_host(v)?);
        rules::adamw(&mut wv, &gv, &mut mv, &mut vv, s);
        self.write(m, &mv)?;
        self.write(v, &vv)?;
        self.write_var(w, &wv)
    }
}

/// `n` values of a flat buffer from `offset`.
fn part(src: &[f32], offset: usize, n: usize) -> Result<&[f32]> {
    src.get(offset..offset + n).ok_or_else(|| {
        candle_core::Error::Msg(format!("flat buffer of {} values is too short for {}", src.len(), offset + n))
    })
}
