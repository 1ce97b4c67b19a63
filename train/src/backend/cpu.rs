//! The CPU backend: tensors in host memory, with the fused slice kernels working in place on
//! their storage (matmul, bias and activation in one pass; gradients accumulated into their
//! buffers; optimizer moments updated where they lie).

use candle_core::{Device, Result};
use shoal_common::spec::Activation;

use super::kernels::{self, Dims};
use super::{AdamStep, Backend, HOST, LossGrad, SgdStep, Tensor, rules, storage};
use crate::rng::Rng;

/// Fused kernels on host memory. Holds `f32` tensors only.
pub struct CpuBackend;

/// Makes a tensor about to be written in place contiguous (a no-op when it already is) and hands
/// back its host tensor.
fn host_mut(t: &mut Tensor) -> Result<&candle_core::Tensor> {
    if !t.host()?.is_contiguous() {
        *t = t.contiguous()?;
    }
    t.host()
}

/// The row-major product shape of `x` (rows×inputs) times `w`ᵀ (w: outputs×inputs).
fn dims(x: &Tensor, w: &Tensor) -> Result<Dims> {
    let (rows, inputs) = x.dims2()?;
    let (outputs, _) = w.dims2()?;
    Ok(Dims { rows, inputs, outputs })
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn device(&self) -> &Device {
        &HOST
    }

    fn read_host(&self, t: &Tensor, f: &mut dyn FnMut(&[f32])) -> Result<()> {
        storage::read(t.host()?, |v| {
            f(v);
            Ok(())
        })
    }

    fn write(&self, t: &mut Tensor, src: &[f32]) -> Result<()> {
        storage::update(host_mut(t)?, |v| {
            v.copy_from_slice(src);
            Ok(())
        })
    }

    fn linear_forward(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        act: Activation,
        threads: usize,
    ) -> Result<(Tensor, Tensor)> {
        let d = dims(x, w)?;
        let (x, w, b) = (x.host()?, w.host()?, b.host()?);
        let z = storage::build((d.rows, d.outputs), |z| {
            storage::read2(x, w, |xs, ws| storage::read(b, |bs| kernels::linear_forward(xs, ws, bs, z, d, threads)))
        })?;
        let activate = |v: &mut [f32]| {
            kernels::activate(act, v);
            Ok(())
        };
        if kernels::needs_preactivation(act) {
            let y = z.copy()?;
            storage::update(&y, activate)?;
            Ok((y.into(), z.into()))
        } else {
            storage::update(&z, activate)?;
            Ok((z.clone().into(), z.into()))
        }
    }

    fn activation_backward(&self, act: Activation, saved: &Tensor, grad: Tensor) -> Result<Tensor> {
        // The incoming gradient is ours to reuse: turn it into dz in place.
        let dz = grad.contiguous()?;
        if act != Activation::Identity {
            storage::update_with(dz.host()?, saved.host()?, |g, s| kernels::activation_backward(act, s, g))?;
        }
        Ok(dz)
    }

    fn linear_input_grad(&self, dz: &Tensor, w: &Tensor, threads: usize) -> Result<Tensor> {
        let (rows, outputs) = dz.dims2()?;
        let (_, inputs) = w.dims2()?;
        let d = Dims { rows, inputs, outputs };
        let dx = storage::build((rows, inputs), |dx| {
            storage::read2(dz.host()?, w.host()?, |dzs, ws| kernels::linear_input_grad(dzs, ws, dx, d, threads))
        })?;
        Ok(dx.into())
    }

    fn linear_weight_grad(
        &self,
        x: &Tensor,
        dz: &Tensor,
        gw: &mut Tensor,
        accumulate: bool,
        threads: usize,
    ) -> Result<()> {
        let d = dims(x, gw)?;
        storage::update_with2(host_mut(gw)?, x.host()?, dz.host()?, |g, xs, dzs| {
            kernels::linear_weight_grad(xs, dzs, g, d, accumulate, threads)
        })
    }

    fn bias_grad(&self, dz: &Tensor, gb: &mut Tensor, accumulate: bool) -> Result<()> {
        storage::update_with(host_mut(gb)?, dz.host()?, |g, dzs| kernels::bias_grad(dzs, g, accumulate))
    }

    fn accumulate(&self, dst: &mut Tensor, src: &Tensor, overwrite: bool) -> Result<()> {
        let src = src.contiguous()?;
        storage::update_with(host_mut(dst)?, src.host()?, |d, s| {
            if overwrite {
                d.copy_from_slice(s);
            } else {
                d.iter_mut().zip(s).for_each(|(d, s)| *d += s);
            }
            Ok(())
        })
    }

    fn dropout_mask(&self, dims: &[usize], keep: f64, rng: &mut Rng) -> Result<Tensor> {
        let scale = (1.0 / keep) as f32;
        let mask = storage::build(dims, |m| {
            m.iter_mut().for_each(|v| *v = if rng.uniform() < keep { scale } else { 0.0 });
            Ok(())
        })?;
        Ok(mask.into())
    }

    fn cross_entropy(&self, logits: &Tensor, labels: &[u32], scale: f32) -> Result<LossGrad> {
        let (rows, classes) = logits.dims2()?;
        let (mut loss_sum, mut correct) = (0.0, 0);
        let grad = storage::build((rows, classes), |g| {
            storage::read(logits.host()?, |o| {
                (loss_sum, correct) = kernels::softmax_cross_entropy(o, labels, classes, scale, g)?;
                Ok(())
            })
        })?;
        Ok(LossGrad { grad: grad.into(), loss_sum, correct })
    }

    fn squared_error(&self, pred: &Tensor, targets: &[f32], scale: f32) -> Result<LossGrad> {
        let mut loss_sum = 0.0;
        let grad = storage::build(pred.dims(), |g| {
            storage::read(pred.host()?, |p| {
                loss_sum = kernels::squared_error(p, targets, scale, g)?;
                Ok(())
            })
        })?;
        Ok(LossGrad { grad: grad.into(), loss_sum, correct: 0 })
    }

    fn sgd_update(&self, w: &mut Tensor, g: &Tensor, momentum: Option<&mut Tensor>, s: &SgdStep) -> Result<()> {
        let g = g.contiguous()?;
        let (w, g) = (host_mut(w)?, g.host()?);
        match momentum {
            Some(buf) => {
                let buf = host_mut(buf)?;
                storage::update_with(w, g, |ws, gs| {
                    storage::update(buf, |bs| {
                        s.apply(ws, gs, bs);
                        Ok(())
                    })
                })
            }
            None => storage::update_with(w, g, |ws, gs| {
                s.apply(ws, gs, &mut []);
                Ok(())
            }),
        }
    }

    fn adamw_update(&self, w: &mut Tensor, g: &Tensor, m: &mut Tensor, v: &mut Tensor, s: &AdamStep) -> Result<()> {
        let g = g.contiguous()?;
        let (w, g, m, v) = (host_mut(w)?, g.host()?, host_mut(m)?, host_mut(v)?);
        storage::update_with(w, g, |ws, gs| {
            storage::update(m, |ms| {
                storage::update(v, |vs| {
                    rules::adamw(ws, gs, ms, vs, s);
                    Ok(())
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::{Param, conformance, reference};

    fn seq(n: usize, k: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * k).sin()).collect()
    }

    /// Runs the conformance suite on the CPU backend and on plain candle ops (the reference) and
    /// compares every result.
    #[test]
    fn cpu_kernels_agree_with_the_candle_reference() {
        let cpu: Arc<dyn Backend> = Arc::new(CpuBackend);
        let got = conformance::run(&cpu).expect("cpu");
        let want = conformance::run(&reference()).expect("reference");
        assert!(got.len() > 60, "{} results", got.len());
        conformance::compare(&got, &want, 1e-5).expect("the CPU backend agrees with candle");
    }

    #[test]
    fn optimizer_updates_and_flat_buffers_agree_with_the_candle_reference() {
        let backends: [Arc<dyn Backend>; 2] = [Arc::new(CpuBackend), reference()];
        let out: Vec<Vec<f32>> = backends
            .iter()
            .map(|b| {
                let mut p = Param::new("w".into(), seq(6, 0.5), &[2, 3], b).expect("param");
                let mut q = Param::new("b".into(), seq(2, 0.7), &[2], b).expect("param");
                b.scatter_grads(&mut [&mut p, &mut q].into_iter(), &seq(8, 0.3)).expect("scatter");
                let mut buf = b.zeros(&[6]).expect("buf");
                let sgd = SgdStep { lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.01, first: true };
                b.sgd_update(&mut p.value, &p.grad, Some(&mut buf), &sgd).expect("sgd");
                let (mut m, mut v) = (b.zeros(&[2]).expect("m"), b.zeros(&[2]).expect("v"));
                let adam = AdamStep { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1, t: 1 };
                b.adamw_update(&mut q.value, &q.grad, &mut m, &mut v, &adam).expect("adamw");
                let mut flat = Vec::new();
                b.gather_values(&mut [&p, &q].into_iter(), &mut flat).expect("values");
                b.gather_grads(&mut [&p, &q].into_iter(), &mut flat).expect("grads");
                flat.extend(b.to_host(&buf).expect("buf"));
                flat.extend(b.to_host(&m).expect("m"));
                let sum = b.checksum(&mut [&p, &q].into_iter()).expect("checksum");
                flat.push((sum % 1000) as f32);
                flat
            })
            .collect();
        assert_eq!(out[0], out[1], "bit-identical updates and flat buffers");
    }
}
