//! One conformance suite for every backend: the same inputs through every kernel, the results
//! copied to the host under names. Two backends agree when [`compare`] finds every result within
//! tolerance; the CPU backend is checked against the candle reference in its tests, and the CUDA
//! backend against the CPU backend where a GPU is present.

use std::sync::Arc;

use candle_core::Result;
use shoal_common::spec::{Activation, PoolKind};

use super::{AdamStep, Backend, ConvGeometry, Param, SgdStep, Tensor};
use crate::rng::Rng;

/// Deterministic, varied values.
fn seq(n: usize, k: f32) -> Vec<f32> {
    (0..n).map(|i| (i as f32 * k).sin()).collect()
}

/// Named results of one backend.
pub type Results = Vec<(String, Vec<f32>)>;

struct Recorder<'a> {
    b: &'a dyn Backend,
    out: Results,
}

impl Recorder<'_> {
    fn t(&self, data: Vec<f32>, dims: &[usize]) -> Result<Tensor> {
        self.b.from_host(data, dims)
    }

    fn keep(&mut self, name: impl Into<String>, t: &Tensor) -> Result<()> {
        let v = self.b.to_host(t)?;
        self.out.push((name.into(), v));
        Ok(())
    }

    fn value(&mut self, name: impl Into<String>, v: Vec<f32>) {
        self.out.push((name.into(), v));
    }
}

/// Runs every kernel of `b` on fixed inputs (odd sizes, every activation, both pooling kinds,
/// strided and padded convolutions) and returns the results.
pub fn run(b: &Arc<dyn Backend>) -> Result<Results> {
    let mut r = Recorder { b: b.as_ref(), out: Vec::new() };
    linear(&mut r)?;
    losses(&mut r)?;
    elementwise(&mut r)?;
    optimizers(&mut r, b)?;
    convolution(&mut r)?;
    pooling(&mut r)?;
    Ok(r.out)
}

fn linear(r: &mut Recorder<'_>) -> Result<()> {
    let (rows, inputs, outputs) = (5, 7, 3);
    for act in Activation::ALL {
        let x = r.t(seq(rows * inputs, 0.37), &[rows, inputs])?;
        let w = r.t(seq(outputs * inputs, 0.11), &[outputs, inputs])?;
        let bias = r.t(seq(outputs, 1.3), &[outputs])?;
        let (y, saved) = r.b.linear_forward(&x, &w, &bias, act, 1)?;
        r.keep(format!("linear {act:?} y"), &y)?;
        let dz = r.b.activation_backward(act, &saved, r.t(seq(rows * outputs, 0.9), &[rows, outputs])?)?;
        r.keep(format!("linear {act:?} dz"), &dz)?;
        r.keep(format!("linear {act:?} dx"), &r.b.linear_input_grad(&dz, &w, 1)?)?;
        let (mut gw, mut gb) = (r.b.zeros(&[outputs, inputs])?, r.b.zeros(&[outputs])?);
        for accumulate in [false, true] {
            r.b.linear_weight_grad(&x, &dz, &mut gw, accumulate, 1)?;
            r.b.bias_grad(&dz, &mut gb, accumulate)?;
        }
        r.keep(format!("linear {act:?} gw"), &gw)?;
        r.keep(format!("linear {act:?} gb"), &gb)?;
    }
    Ok(())
}

fn losses(r: &mut Recorder<'_>) -> Result<()> {
    let (rows, classes) = (5, 3);
    let logits = r.t(seq(rows * classes, 0.77).iter().map(|v| 3.0 * v).collect(), &[rows, classes])?;
    let ce = r.b.cross_entropy(&logits, &[0, 2, 1, 1, 0], 0.5)?;
    r.keep("cross-entropy grad", &ce.grad)?;
    r.value("cross-entropy sums", vec![ce.loss_sum as f32, ce.correct as f32]);
    let mse = r.b.squared_error(&logits, &seq(rows * classes, 0.2), 0.5)?;
    r.keep("squared-error grad", &mse.grad)?;
    r.value("squared-error sum", vec![mse.loss_sum as f32]);
    Ok(())
}

fn elementwise(r: &mut Recorder<'_>) -> Result<()> {
    let a = r.t(seq(12, 0.3), &[4, 3])?;
    let b = r.t(seq(12, 0.8), &[4, 3])?;
    r.keep("add", &r.b.add(&a, &b)?)?;
    r.keep("multiply", &r.b.multiply(&a, &b)?)?;
    r.keep("rows 1..3", &r.b.rows(&a, 1, 2)?)?;
    // Writes may land in place: only tensors that share no memory are written here.
    let mut source = r.b.copy(&a)?;
    let copy = r.b.copy(&source)?;
    r.b.write(&mut source, &seq(12, 0.1))?;
    r.keep("written", &source)?;
    r.keep("copy survives a write to its source", &copy)?;
    let mut acc = r.b.copy(&a)?;
    r.b.accumulate(&mut acc, &b, false)?;
    r.keep("accumulate", &acc)?;
    r.keep("dropout mask", &r.b.dropout_mask(&[4, 3], 0.6, &mut Rng::new(3))?)?;
    Ok(())
}

fn optimizers(r: &mut Recorder<'_>, b: &Arc<dyn Backend>) -> Result<()> {
    let mut p = Param::new("w".into(), seq(6, 0.5), &[2, 3], b)?;
    let mut q = Param::new("b".into(), seq(2, 0.7), &[2], b)?;
    b.scatter_grads(&mut [&mut p, &mut q].into_iter(), &seq(8, 0.3))?;
    for (nesterov, first) in [(true, true), (false, false)] {
        let mut buf = b.zeros(&[6])?;
        let sgd = SgdStep { lr: 0.1, momentum: 0.9, nesterov, weight_decay: 0.01, first };
        b.sgd_update(&mut p.value, &p.grad, Some(&mut buf), &sgd)?;
        r.keep(format!("sgd nesterov={nesterov} buffer"), &buf)?;
    }
    b.sgd_update(
        &mut p.value,
        &p.grad,
        None,
        &SgdStep { lr: 0.1, momentum: 0.0, nesterov: false, weight_decay: 0.0, first: true },
    )?;
    let (mut m, mut v) = (b.zeros(&[2])?, b.zeros(&[2])?);
    for t in 1..=3 {
        let adam = AdamStep { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1, t };
        b.adamw_update(&mut q.value, &q.grad, &mut m, &mut v, &adam)?;
    }
    r.keep("adamw m", &m)?;
    r.keep("adamw v", &v)?;
    let mut flat = Vec::new();
    b.gather_values(&mut [&p, &q].into_iter(), &mut flat)?;
    b.gather_grads(&mut [&p, &q].into_iter(), &mut flat)?;
    r.value("flat values and grads", flat);
    let sum = b.checksum(&mut [&p, &q].into_iter())?;
    r.value("checksum", vec![(sum % 1_000_003) as f32]);
    Ok(())
}

fn convolution(r: &mut Recorder<'_>) -> Result<()> {
    // Sizes where every stride lands on the last padded row and column (candle's strided
    // backward rejects the others).
    let (batch, channels, h, w, out, k) = (2, 2, 7, 5, 3, 3);
    for (stride, padding, act) in [(1, 1, Activation::Relu), (1, 0, Activation::Tanh), (2, 1, Activation::Gelu)] {
        let geometry = ConvGeometry { stride, padding };
        let x = r.t(seq(batch * channels * h * w, 0.41), &[batch, channels, h, w])?;
        let wt = r.t(seq(out * channels * k * k, 0.23), &[out, channels, k, k])?;
        let bias = r.t(seq(out, 0.9), &[out])?;
        let (y, saved) = r.b.conv2d_forward(&x, &wt, &bias, geometry, act, true)?;
        let name = format!("conv s{stride} p{padding} {act:?}");
        r.keep(format!("{name} y"), &y)?;
        let dy = r.t(seq(y.elem_count(), 0.57), y.dims())?;
        let g = r.b.conv2d_backward(&saved, dy, geometry, act, true)?;
        r.keep(format!("{name} gw"), &g.weight)?;
        r.keep(format!("{name} gb"), &g.bias)?;
        if let Some(dx) = g.input {
            r.keep(format!("{name} dx"), &dx)?;
        }
    }
    Ok(())
}

fn pooling(r: &mut Recorder<'_>) -> Result<()> {
    let (batch, channels, h, w) = (2, 3, 6, 4);
    for kind in [PoolKind::Max, PoolKind::Avg] {
        let x = r.t(seq(batch * channels * h * w, 0.61), &[batch, channels, h, w])?;
        let (y, saved) = r.b.pool_forward(&x, kind, 2, true)?;
        r.keep(format!("{kind:?} pool y"), &y)?;
        let dy = r.t(seq(y.elem_count(), 0.33), y.dims())?;
        r.keep(format!("{kind:?} pool dx"), &r.b.pool_backward(&saved, &dy, kind, 2)?)?;
    }
    Ok(())
}

/// Every result of `got` against `want`: the first that differs by more than `tol` relative
/// (with an absolute floor of `tol`), or that is missing.
pub fn compare(got: &Results, want: &Results, tol: f32) -> std::result::Result<(), String> {
    if got.len() != want.len() {
        let names = |r: &Results| r.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        return Err(format!("{} results vs {}: {:?} vs {:?}", got.len(), want.len(), names(got), names(want)));
    }
    for ((name, g), (wname, w)) in got.iter().zip(want) {
        if name != wname || g.len() != w.len() {
            return Err(format!("`{name}` ({} values) vs `{wname}` ({} values)", g.len(), w.len()));
        }
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            if (a - b).abs() > tol * (1.0 + b.abs()) || a.is_nan() != b.is_nan() {
                return Err(format!("`{name}`[{i}]: {a} vs {b}"));
            }
        }
    }
    Ok(())
}
