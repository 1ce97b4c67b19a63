//! A skip connection around a layer that keeps the width of its input: `y = f(x) + x`. The
//! wrapped layer runs unchanged (fused kernels and split backward included); the wrapper only adds
//! the input to the output, and the output gradient to the input gradient.

use std::sync::Arc;

use candle_core::Result;

use super::Param;
use super::layer::{Ctx, Deferred, Layer, Saved};
use crate::backend::{Backend, Tensor};

pub struct Residual<L> {
    inner: L,
    backend: Arc<dyn Backend>,
}

impl<L: Layer> Residual<L> {
    /// Wraps `inner`, whose output must have the shape of its input (checked by the caller, which
    /// knows the layer's index for the error). The sums run on `backend`, where the layer's
    /// tensors live.
    pub fn new(inner: L, backend: &Arc<dyn Backend>) -> Self {
        Self { inner, backend: backend.clone() }
    }

    /// `grad_out` for the wrapped layer, and the copy that flows along the skip. Layers may turn
    /// the gradient they are given into their own in place (the fused linear backward does), so
    /// the skip needs a copy of its own.
    fn split(&self, grad_out: Tensor) -> Result<(Tensor, Tensor)> {
        let skip = self.backend.copy(&grad_out)?;
        Ok((grad_out, skip))
    }

    fn join(&self, dx: Tensor, skip: &Tensor) -> Result<Tensor> {
        self.backend.add(&dx, skip)
    }
}

impl<L: Layer> Layer for Residual<L> {
    fn kind(&self) -> &'static str {
        "residual"
    }

    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<(Tensor, Saved)> {
        let (y, saved) = self.inner.forward(x, ctx)?;
        // A new tensor: `y` may share storage with what the inner layer saved.
        let out = self.backend.add(&y, x)?;
        Ok((out, saved))
    }

    fn backward(
        &mut self,
        saved: Saved,
        grad_out: Tensor,
        need_input_grad: bool,
        threads: usize,
    ) -> Result<Option<Tensor>> {
        if !need_input_grad {
            return self.inner.backward(saved, grad_out, false, threads);
        }
        let (grad_out, skip) = self.split(grad_out)?;
        match self.inner.backward(saved, grad_out, true, threads)? {
            Some(dx) => Ok(Some(self.join(dx, &skip)?)),
            None => Ok(None),
        }
    }

    fn backward_input_first(
        &mut self,
        saved: Saved,
        grad_out: Tensor,
        threads: usize,
    ) -> Result<(Option<Tensor>, Option<Deferred>)> {
        let (grad_out, skip) = self.split(grad_out)?;
        let (dx, deferred) = self.inner.backward_input_first(saved, grad_out, threads)?;
        Ok((dx.map(|dx| self.join(dx, &skip)).transpose()?, deferred))
    }

    fn finish_backward(&mut self, deferred: Deferred, threads: usize) -> Result<()> {
        self.inner.finish_backward(deferred, threads)
    }

    fn params(&self) -> &[Param] {
        self.inner.params()
    }

    fn params_mut(&mut self) -> &mut [Param] {
        self.inner.params_mut()
    }

    fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        self.inner.output_dims(input)
    }

    fn macs(&self, input: &[usize]) -> u64 {
        self.inner.macs(input)
    }
}

#[cfg(test)]
mod tests {
    use shoal_common::spec::Activation;

    use std::sync::Arc;

    use super::*;
    use crate::backend::{self, Backend, to_host_vec};
    use crate::nn::cell::tests::{Path, check_gradients, random};
    use crate::nn::{Linear, Mode};
    use crate::rng::Rng;

    fn skip_linear_on(activation: Activation, backend: &Arc<dyn Backend>) -> Residual<Linear> {
        Residual::new(Linear::new("layers.2", 4, 4, activation, &mut Rng::new(6), backend).expect("linear"), backend)
    }

    fn skip_linear(activation: Activation) -> Residual<Linear> {
        skip_linear_on(activation, &backend::cpu())
    }

    #[test]
    fn a_skip_linear_adds_its_input() {
        // Reference: the plain linear layer with the same weights, plus the input.
        let x = random((3, 4), 1);
        for b in [backend::cpu(), backend::reference()] {
            let plain = Linear::new("layers.2", 4, 4, Activation::Tanh, &mut Rng::new(6), &b).expect("linear");
            let skip = skip_linear_on(Activation::Tanh, &b);
            let mut ctx = Ctx::new(Mode::Train, 1, Rng::new(0));
            let y = to_host_vec(&plain.forward(&x, &mut ctx).expect("plain").0).expect("y");
            let got = to_host_vec(&skip.forward(&x, &mut ctx).expect("skip").0).expect("got");
            let xs = to_host_vec(&x).expect("x");
            for ((g, y), x) in got.iter().zip(&y).zip(&xs) {
                assert!((g - (y + x)).abs() <= 1e-6, "{}: {g} vs {y} + {x}", b.name());
            }
            assert_eq!(skip.params().len(), 2);
            assert_eq!(skip.params()[0].name, "layers.2.weight");
        }
    }

    #[test]
    fn skip_linear_gradients_match_finite_differences() {
        let x = random((3, 4), 2);
        // Tanh runs the fused kernels on the output, gelu on the pre-activation; the reference
        // backend runs plain candle ops.
        for act in [Activation::Tanh, Activation::Gelu, Activation::Identity] {
            for b in [backend::cpu(), backend::reference()] {
                let mut layer = skip_linear_on(act, &b);
                for path in [Path::Whole, Path::Split] {
                    check_gradients(&mut layer, &x, path);
                }
            }
        }
    }

    #[test]
    fn the_split_backward_leaves_the_parameter_gradients_for_later() {
        let x = random((3, 4), 3);
        let mut layer = skip_linear(Activation::Relu);
        let mut ctx = Ctx::new(Mode::Train, 1, Rng::new(0));
        let (y, saved) = layer.forward(&x, &mut ctx).expect("forward");
        let (dx, deferred) = layer
            .backward_input_first(saved, y.host().and_then(|y| y.ones_like()).expect("ones").into(), 1)
            .expect("backward");
        assert!(dx.is_some());
        assert!(layer.params().iter().all(|p| !p.grad_valid), "parameter gradients came early");
        layer.finish_backward(deferred.expect("deferred"), 1).expect("finish");
        assert!(layer.params().iter().all(|p| p.grad_valid));
    }
}
