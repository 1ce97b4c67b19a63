//! The CUDA backend: parameters, gradients, optimizer state and activations live in one GPU's
//! memory; matrix products run in cuBLAS and everything else in Shoal's NVRTC kernels, all on one
//! stream. Host copies are made only where the engine asks for host values (losses, checkpoints,
//! metrics, collectives).

use std::sync::Arc;

use candle_core::{Device, Result, bail};
use shoal_common::spec::{Activation, PoolKind};

use super::buffer::{CudaBuffer, ptr};
use super::gemm::{self, ConvDims, GemmPlan, Slots};
use super::gpu::{Arg, Gpu, GpuError, MathMode};
use super::launch::{LaunchDims, elementwise, int_arg, per_column, per_row};
use super::source::{activation_code, adam_bias_terms};
use crate::backend::kernels::needs_preactivation;
use crate::backend::{AdamStep, Backend, ConvGeometry, ConvGrads, HOST, LossGrad, SgdStep, Tensor, candle_values};
use crate::collective::DeviceSpan;

/// Kernels and memory on one GPU.
pub struct CudaBackend {
    gpu: Arc<Gpu>,
}

fn int(what: &'static str, v: usize) -> Result<Arg> {
    Ok(Arg::Int(int_arg(what, v).map_err(candle_core::Error::wrap)?))
}

fn flag(b: bool) -> Arg {
    Arg::Int(i32::from(b))
}

impl CudaBackend {
    /// Opens GPU `ordinal` with the given product precision.
    pub fn open(ordinal: usize, math: MathMode) -> std::result::Result<Self, GpuError> {
        Ok(Self { gpu: Gpu::open(ordinal, math)? })
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// A tensor over fresh (uninitialised) memory: the caller writes every value.
    fn empty(&self, dims: &[usize]) -> Result<(Tensor, u64)> {
        let buffer = CudaBuffer::alloc(&self.gpu, dims.iter().product())?;
        let p = buffer.ptr();
        Ok((Tensor::on_device(Arc::new(buffer), dims)?, p))
    }

    fn launch(&self, name: &str, dims: LaunchDims, args: &[Arg]) -> Result<()> {
        self.gpu.launch(name, dims, args)
    }

    /// Runs a planned product on the engine's operands `(first, second)` into `c`.
    fn product(&self, (plan, slots): (GemmPlan, Slots), first: u64, second: u64, c: u64, beta: f32) -> Result<()> {
        let (a, b) = match slots {
            Slots::InOrder => (first, second),
            Slots::Swapped => (second, first),
        };
        self.gpu.gemm(&plan, a, b, c, beta, 1, [0; 3])
    }

    /// `z += b` per column (or channel) and `y = act(z)`; returns `y` and what the activation's
    /// backward reads, `z` where it needs the pre-activation.
    fn epilogue(
        &self,
        z: Tensor,
        zp: u64,
        b: &Tensor,
        act: Activation,
        channels: Option<(usize, usize)>,
    ) -> Result<(Tensor, Tensor)> {
        let keep_z = needs_preactivation(act);
        let (y, yp) = if keep_z { self.empty(z.dims())? } else { (z.clone(), zp) };
        let n = z.elem_count();
        let code = Arg::Int(activation_code(act));
        match channels {
            None => {
                let (rows, cols) = z.dims2()?;
                self.launch(
                    "bias_act_forward",
                    elementwise(n),
                    &[Arg::Ptr(zp), Arg::Ptr(ptr(b)?), Arg::Ptr(yp), int("rows", rows)?, int("columns", cols)?, code],
                )?;
            }
            Some((channels, hw)) => {
                let batch = z.dim(0)?;
                self.launch(
                    "channel_bias_act_forward",
                    elementwise(n),
                    &[
                        Arg::Ptr(zp),
                        Arg::Ptr(ptr(b)?),
                        Arg::Ptr(yp),
                        int("batch", batch)?,
                        int("channels", channels)?,
                        int("pixels", hw)?,
                        code,
                    ],
                )?;
            }
        }
        let saved = if keep_z { z } else { y.clone() };
        Ok((y, saved))
    }

    fn fill(&self, p: u64, n: usize, value: f32) -> Result<()> {
        self.launch("fill", elementwise(n), &[Arg::Ptr(p), int("values", n)?, Arg::Float(value)])
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        "cuda"
    }

    /// Host memory: the candle-op defaults cannot run on CUDA tensors, so every kernel is
    /// overridden here and a missed one fails with "in device memory" instead of computing on
    /// the wrong device.
    fn device(&self) -> &Device {
        &HOST
    }

    fn stream_handle(&self) -> Option<u64> {
        Some(self.gpu.stream_handle())
    }

    fn device_span(&self, t: &Tensor) -> Option<DeviceSpan> {
        ptr(t).ok().map(|ptr| DeviceSpan { ptr, len: t.elem_count() })
    }

    fn from_host(&self, data: Vec<f32>, dims: &[usize]) -> Result<Tensor> {
        if data.len() != dims.iter().product::<usize>() {
            bail!("{} values cannot have shape {dims:?}", data.len());
        }
        let (t, p) = self.empty(dims)?;
        self.gpu.copy_in(p, &data)?;
        Ok(t)
    }

    fn batch_from_host(&self, data: Vec<f32>, dims: &[usize]) -> Result<Tensor> {
        if data.len() != dims.iter().product::<usize>() {
            bail!("{} values cannot have shape {dims:?}", data.len());
        }
        Tensor::on_device(Arc::new(CudaBuffer::staged(&self.gpu, &data)?), dims)
    }

    fn from_host_tensor(&self, t: &candle_core::Tensor) -> Result<Tensor> {
        self.from_host(candle_values(t)?, t.dims())
    }

    fn zeros(&self, dims: &[usize]) -> Result<Tensor> {
        let (t, p) = self.empty(dims)?;
        self.fill(p, t.elem_count(), 0.0)?;
        Ok(t)
    }

    fn copy(&self, t: &Tensor) -> Result<Tensor> {
        let (out, p) = self.empty(t.dims())?;
        self.gpu.copy_within(p, ptr(t)?, t.elem_count())?;
        Ok(out)
    }

    fn write(&self, t: &mut Tensor, src: &[f32]) -> Result<()> {
        if src.len() != t.elem_count() {
            bail!("{} values cannot overwrite a tensor of shape {:?}", src.len(), t.dims());
        }
        self.gpu.copy_in(ptr(t)?, src)
    }

    fn rows(&self, t: &Tensor, start: usize, len: usize) -> Result<Tensor> {
        let rows = t.dim(0)?;
        if start + len > rows {
            bail!("rows {start}..{} of a tensor of {rows}", start + len);
        }
        let per = t.elem_count() / rows.max(1);
        let mut dims = t.dims().to_vec();
        dims[0] = len;
        let (out, p) = self.empty(&dims)?;
        self.gpu.copy_within(p, ptr(t)? + (start * per * 4) as u64, len * per)?;
        Ok(out)
    }

    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let out = self.copy(a)?;
        let n = check_same(a, b)?;
        self.launch(
            "accumulate",
            elementwise(n),
            &[Arg::Ptr(ptr(&out)?), Arg::Ptr(ptr(b)?), int("values", n)?, flag(false)],
        )?;
        Ok(out)
    }

    fn multiply(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let out = self.copy(x)?;
        let n = check_same(x, mask)?;
        self.launch("multiply", elementwise(n), &[Arg::Ptr(ptr(&out)?), Arg::Ptr(ptr(mask)?), int("values", n)?])?;
        Ok(out)
    }

    fn linear_forward(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        act: Activation,
        _threads: usize,
    ) -> Result<(Tensor, Tensor)> {
        let (rows, inputs) = x.dims2()?;
        let (outputs, _) = w.dims2()?;
        let (z, zp) = self.empty(&[rows, outputs])?;
        self.product(gemm::linear_forward(rows, inputs, outputs), ptr(x)?, ptr(w)?, zp, 0.0)?;
        self.epilogue(z, zp, b, act, None)
    }

    fn activation_backward(&self, act: Activation, saved: &Tensor, grad: Tensor) -> Result<Tensor> {
        let n = check_same(saved, &grad)?;
        if act != Activation::Identity {
            self.launch(
                "activation_backward",
                elementwise(n),
                &[Arg::Ptr(ptr(saved)?), Arg::Ptr(ptr(&grad)?), int("values", n)?, Arg::Int(activation_code(act))],
            )?;
        }
        grad.reshape(saved.dims())
    }

    fn linear_input_grad(&self, dz: &Tensor, w: &Tensor, _threads: usize) -> Result<Tensor> {
        let (rows, outputs) = dz.dims2()?;
        let (_, inputs) = w.dims2()?;
        let (dx, p) = self.empty(&[rows, inputs])?;
        self.product(gemm::linear_input_grad(rows, inputs, outputs), ptr(dz)?, ptr(w)?, p, 0.0)?;
        Ok(dx)
    }

    fn linear_weight_grad(
        &self,
        x: &Tensor,
        dz: &Tensor,
        gw: &mut Tensor,
        accumulate: bool,
        _threads: usize,
    ) -> Result<()> {
        let (rows, inputs) = x.dims2()?;
        let outputs = dz.dim(1)?;
        let beta = if accumulate { 1.0 } else { 0.0 };
        self.product(gemm::linear_weight_grad(rows, inputs, outputs), ptr(x)?, ptr(dz)?, ptr(gw)?, beta)
    }

    fn bias_grad(&self, dz: &Tensor, gb: &mut Tensor, accumulate: bool) -> Result<()> {
        let (rows, cols) = dz.dims2()?;
        self.launch(
            "column_sum",
            per_column(cols),
            &[Arg::Ptr(ptr(dz)?), Arg::Ptr(ptr(gb)?), int("rows", rows)?, int("columns", cols)?, flag(accumulate)],
        )
    }

    fn accumulate(&self, dst: &mut Tensor, src: &Tensor, overwrite: bool) -> Result<()> {
        let n = check_same(dst, src)?;
        self.launch(
            "accumulate",
            elementwise(n),
            &[Arg::Ptr(ptr(dst)?), Arg::Ptr(ptr(src)?), int("values", n)?, flag(overwrite)],
        )
    }

    fn conv2d_forward(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        geometry: ConvGeometry,
        act: Activation,
        train: bool,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let shape = ConvShape::of(x, w, geometry)?;
        let (cols, cp) = self.empty(&[shape.batch, shape.dims.cols_per_image()])?;
        self.launch("im2col", elementwise(cols.elem_count()), &shape.args(ptr(x)?, cp)?)?;
        let (z, zp) = self.empty(&[shape.batch, shape.dims.out_channels, shape.oh, shape.ow])?;
        let (plan, _) = gemm::conv_forward(shape.dims);
        // Engine operands (w, cols), swapped into BLAS's (A, B) = (cols, w). Per image, A strides
        // over the columns and C over the outputs; the kernel is shared.
        let strides = [shape.dims.cols_per_image(), 0, shape.dims.out_per_image()];
        self.gpu.gemm(&plan, cp, ptr(w)?, zp, 0.0, shape.batch, strides)?;
        let (y, keep) = self.epilogue(z, zp, b, act, Some((shape.dims.out_channels, shape.dims.pixels)))?;
        let saved = if train { vec![x.clone(), cols, keep, w.clone()] } else { Vec::new() };
        Ok((y, saved))
    }

    fn conv2d_backward(
        &self,
        saved: &[Tensor],
        grad_out: Tensor,
        geometry: ConvGeometry,
        act: Activation,
        need_input_grad: bool,
    ) -> Result<ConvGrads> {
        let [x, cols, keep, w] = saved else { bail!("conv backward without its forward's tensors") };
        let shape = ConvShape::of(x, w, geometry)?;
        let d = shape.dims;
        let dz = self.activation_backward(act, keep, grad_out)?;
        let dzp = ptr(&dz)?;
        let cp = ptr(cols)?;
        let (weight, gwp) = self.empty(w.dims())?;
        let (plan, _) = gemm::conv_weight_grad(d);
        for n in 0..shape.batch {
            // Engine operands (dy, cols), swapped into BLAS's (A, B) = (cols, dy).
            let (a, b) = (cp + (n * d.cols_per_image() * 4) as u64, dzp + (n * d.out_per_image() * 4) as u64);
            self.gpu.gemm(&plan, a, b, gwp, if n == 0 { 0.0 } else { 1.0 }, 1, [0; 3])?;
        }
        let (bias, gbp) = self.empty(&[d.out_channels])?;
        self.launch(
            "channel_sum",
            per_column(d.out_channels),
            &[
                Arg::Ptr(dzp),
                Arg::Ptr(gbp),
                int("batch", shape.batch)?,
                int("channels", d.out_channels)?,
                int("pixels", d.pixels)?,
                flag(false),
            ],
        )?;
        let input = if need_input_grad {
            let (dcols, dcp) = self.empty(cols.dims())?;
            let (plan, _) = gemm::conv_cols_grad(d);
            // Engine operands (w, dy), swapped into (A, B) = (dy, w); the kernel is shared.
            let strides = [d.out_per_image(), 0, d.cols_per_image()];
            self.gpu.gemm(&plan, dzp, ptr(w)?, dcp, 0.0, shape.batch, strides)?;
            let (dx, dxp) = self.empty(x.dims())?;
            self.launch("col2im", elementwise(dx.elem_count()), &shape.args(dcp, dxp)?)?;
            drop(dcols);
            Some(dx)
        } else {
            None
        };
        Ok(ConvGrads { input, weight, bias })
    }

    fn pool_forward(&self, x: &Tensor, kind: PoolKind, size: usize, train: bool) -> Result<(Tensor, Vec<Tensor>)> {
        let [batch, channels, h, w] = *x.dims() else { bail!("pooling needs NCHW input, got {:?}", x.dims()) };
        let (y, yp) = self.empty(&[batch, channels, h / size, w / size])?;
        let name = match kind {
            PoolKind::Max => "max_pool_forward",
            PoolKind::Avg => "avg_pool_forward",
        };
        let args = [
            Arg::Ptr(ptr(x)?),
            Arg::Ptr(yp),
            int("planes", batch * channels)?,
            int("height", h)?,
            int("width", w)?,
            int("size", size)?,
        ];
        self.launch(name, elementwise(y.elem_count()), &args)?;
        let saved = if train { vec![x.clone(), y.clone()] } else { Vec::new() };
        Ok((y, saved))
    }

    fn pool_backward(&self, saved: &[Tensor], grad_out: &Tensor, kind: PoolKind, size: usize) -> Result<Tensor> {
        let [x, y] = saved else { bail!("pool backward without its forward's tensors") };
        let [batch, channels, h, w] = *x.dims() else { bail!("pooling needs NCHW input, got {:?}", x.dims()) };
        check_same(y, grad_out)?;
        let (dx, dxp) = self.empty(x.dims())?;
        let shape = [int("planes", batch * channels)?, int("height", h)?, int("width", w)?, int("size", size)?];
        let mut args = match kind {
            PoolKind::Max => vec![Arg::Ptr(ptr(x)?), Arg::Ptr(ptr(y)?), Arg::Ptr(ptr(grad_out)?), Arg::Ptr(dxp)],
            PoolKind::Avg => vec![Arg::Ptr(ptr(grad_out)?), Arg::Ptr(dxp)],
        };
        args.extend(shape);
        let name = match kind {
            PoolKind::Max => "max_pool_backward",
            PoolKind::Avg => "avg_pool_backward",
        };
        self.launch(name, elementwise(dx.elem_count()), &args)?;
        Ok(dx)
    }

    fn cross_entropy(&self, logits: &Tensor, labels: &[u32], scale: f32) -> Result<LossGrad> {
        let (rows, classes) = logits.dims2()?;
        if labels.len() != rows {
            bail!("{rows} rows of logits but {} labels", labels.len());
        }
        if let Some(&bad) = labels.iter().find(|&&l| l as usize >= classes) {
            bail!("label {bad} is out of range for {classes} classes");
        }
        let (_labels, lp) = self.gpu.upload(labels)?;
        let (grad, gp) = self.empty(logits.dims())?;
        let (_loss, lossp) = self.gpu.alloc::<f32>(rows)?;
        let (_correct, cp) = self.gpu.alloc::<i32>(rows)?;
        self.launch(
            "softmax_cross_entropy",
            per_row(rows),
            &[
                Arg::Ptr(ptr(logits)?),
                Arg::Ptr(lp),
                Arg::Ptr(gp),
                Arg::Ptr(lossp),
                Arg::Ptr(cp),
                int("rows", rows)?,
                int("classes", classes)?,
                Arg::Float(scale),
            ],
        )?;
        let (mut loss, mut correct) = (vec![0f32; rows], vec![0i32; rows]);
        self.gpu.copy_out(lossp, &mut loss)?;
        self.gpu.copy_out(cp, &mut correct)?;
        let loss_sum = loss.iter().map(|&l| f64::from(l)).sum();
        Ok(LossGrad { grad, loss_sum, correct: correct.iter().filter(|&&c| c != 0).count() })
    }

    fn squared_error(&self, pred: &Tensor, targets: &[f32], scale: f32) -> Result<LossGrad> {
        let (rows, cols) = pred.dims2()?;
        if targets.len() != rows * cols {
            bail!("{} predictions but {} targets", rows * cols, targets.len());
        }
        let (_targets, tp) = self.gpu.upload(targets)?;
        let (grad, gp) = self.empty(pred.dims())?;
        let (_loss, lossp) = self.gpu.alloc::<f32>(rows)?;
        self.launch(
            "squared_error",
            per_row(rows),
            &[
                Arg::Ptr(ptr(pred)?),
                Arg::Ptr(tp),
                Arg::Ptr(gp),
                Arg::Ptr(lossp),
                int("rows", rows)?,
                int("columns", cols)?,
                Arg::Float(scale),
            ],
        )?;
        let mut loss = vec![0f32; rows];
        self.gpu.copy_out(lossp, &mut loss)?;
        Ok(LossGrad { grad, loss_sum: loss.iter().map(|&l| f64::from(l)).sum(), correct: 0 })
    }

    fn sgd_update(&self, w: &mut Tensor, g: &Tensor, momentum: Option<&mut Tensor>, s: &SgdStep) -> Result<()> {
        let n = check_same(w, g)?;
        let (buf, has) = match momentum {
            Some(b) => (ptr(b)?, true),
            None => (0, false),
        };
        self.launch(
            "sgd",
            elementwise(n),
            &[
                Arg::Ptr(ptr(w)?),
                Arg::Ptr(ptr(g)?),
                Arg::Ptr(buf),
                int("values", n)?,
                Arg::Float(s.lr),
                Arg::Float(s.momentum),
                flag(s.nesterov),
                Arg::Float(s.weight_decay),
                flag(s.first),
                flag(has),
            ],
        )
    }

    fn adamw_update(&self, w: &mut Tensor, g: &Tensor, m: &mut Tensor, v: &mut Tensor, s: &AdamStep) -> Result<()> {
        let n = check_same(w, g)?;
        let (step_size, bias2_sqrt) = adam_bias_terms(s);
        self.launch(
            "adamw",
            elementwise(n),
            &[
                Arg::Ptr(ptr(w)?),
                Arg::Ptr(ptr(g)?),
                Arg::Ptr(ptr(m)?),
                Arg::Ptr(ptr(v)?),
                int("values", n)?,
                Arg::Float(s.lr),
                Arg::Float(s.beta1),
                Arg::Float(s.beta2),
                Arg::Float(s.eps),
                Arg::Float(s.weight_decay),
                Arg::Float(step_size),
                Arg::Float(bias2_sqrt),
            ],
        )
    }
}

/// The element count two tensors share, or an error naming both shapes.
fn check_same(a: &Tensor, b: &Tensor) -> Result<usize> {
    if a.elem_count() != b.elem_count() {
        bail!("tensors of shapes {:?} and {:?} differ in size", a.dims(), b.dims());
    }
    Ok(a.elem_count())
}

/// A convolution's sizes, from its input (NCHW) and kernel (out, in, k, k).
struct ConvShape {
    batch: usize,
    channels: usize,
    h: usize,
    w: usize,
    k: usize,
    oh: usize,
    ow: usize,
    geometry: ConvGeometry,
    dims: ConvDims,
}

impl ConvShape {
    fn of(x: &Tensor, w: &Tensor, geometry: ConvGeometry) -> Result<Self> {
        let [batch, channels, h, wd] = *x.dims() else { bail!("convolution needs NCHW input, got {:?}", x.dims()) };
        let [out_channels, in_channels, k, k2] = *w.dims() else { bail!("convolution kernel of shape {:?}", w.dims()) };
        if in_channels != channels || k != k2 {
            bail!("kernel {:?} does not fit input {:?}", w.dims(), x.dims());
        }
        let ConvGeometry { stride, padding } = geometry;
        let out = |n: usize| (n + 2 * padding).checked_sub(k).map(|v| v / stride + 1);
        let (Some(oh), Some(ow)) = (out(h), out(wd)) else {
            bail!("kernel {k} is larger than the padded input {h}x{wd}")
        };
        let dims = ConvDims { out_channels, patch: channels * k * k, pixels: oh * ow };
        Ok(Self { batch, channels, h, w: wd, k, oh, ow, geometry, dims })
    }

    /// The argument list shared by im2col and col2im: `(src, dst, batch, channels, h, w, k,
    /// stride, pad, oh, ow)`.
    fn args(&self, src: u64, dst: u64) -> Result<Vec<Arg>> {
        Ok(vec![
            Arg::Ptr(src),
            Arg::Ptr(dst),
            int("batch", self.batch)?,
            int("channels", self.channels)?,
            int("height", self.h)?,
            int("width", self.w)?,
            int("kernel", self.k)?,
            int("stride", self.geometry.stride)?,
            int("padding", self.geometry.padding)?,
            int("output height", self.oh)?,
            int("output width", self.ow)?,
        ])
    }
}
