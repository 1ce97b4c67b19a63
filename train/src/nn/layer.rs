//! The layer interface. Forward is a pure function of the input that hands back what backward will
//! need ([`Saved`]); backward consumes it, accumulates parameter gradients and returns the input
//! gradient. Keeping the saved activations outside the layer lets a pipeline stage keep several
//! micro-batches in flight, drop them to recompute later, and count their bytes.

use candle_core::{Result, Tensor, Var};

use super::cpu;
use crate::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Keep what backward needs; dropout active.
    Train,
    /// Inference: nothing saved, dropout off.
    Eval,
}

/// Per-call settings of a forward pass.
pub struct Ctx {
    pub mode: Mode,
    /// Matmul threads (the job's CPU reservation).
    pub threads: usize,
    /// Dropout masks; seeded per step so a resumed job draws the same masks.
    pub rng: Rng,
    /// Use the fused CPU kernels where they apply (tests turn this off to compare against plain
    /// candle ops).
    pub fused: bool,
}

impl Ctx {
    pub fn new(mode: Mode, threads: usize, rng: Rng) -> Self {
        Self { mode, threads: threads.max(1), rng, fused: true }
    }

    pub fn train(&self) -> bool {
        self.mode == Mode::Train
    }
}

/// What a layer's forward kept for its backward. Dropping it frees those activations.
#[derive(Default)]
pub struct Saved {
    pub tensors: Vec<Tensor>,
    /// Shape of the layer's input, to give the input gradient the same shape.
    pub input_dims: Vec<usize>,
}

impl Saved {
    pub fn new(tensors: Vec<Tensor>, input_dims: &[usize]) -> Self {
        Self { tensors, input_dims: input_dims.to_vec() }
    }

    /// Bytes of activation memory held.
    pub fn bytes(&self) -> usize {
        self.tensors.iter().map(|t| t.elem_count() * t.dtype().size_in_bytes()).sum()
    }

    pub(crate) fn get(&self, i: usize) -> Result<&Tensor> {
        self.tensors.get(i).ok_or_else(|| {
            candle_core::Error::Msg("backward called without the activations of a training forward".into())
        })
    }
}

/// What a layer needs to finish a backward pass later (its input and the pre-activation
/// gradient, for a linear layer).
pub struct Deferred {
    pub tensors: Vec<Tensor>,
}

/// A trainable tensor and its gradient.
pub struct Param {
    /// Stable name (`layers.0.weight`), used in checkpoints.
    pub name: String,
    pub value: Var,
    pub grad: Tensor,
    /// False after `zero_grad`: the next gradient overwrites instead of adding (no zeroing pass).
    pub grad_valid: bool,
}

impl Param {
    pub fn new(name: String, value: Tensor) -> Result<Self> {
        let grad = value.zeros_like()?;
        Ok(Self { name, value: Var::from_tensor(&value)?, grad, grad_valid: false })
    }

    pub fn elem_count(&self) -> usize {
        self.value.elem_count()
    }

    /// Adds `g` to the gradient (or sets it, after `zero_grad`).
    pub fn accumulate(&mut self, g: &Tensor) -> Result<()> {
        let g = g.reshape(self.grad.shape())?;
        if cpu::is_cpu_f32(&self.grad) && cpu::is_cpu_f32(&g) {
            let overwrite = !self.grad_valid;
            cpu::update_with(&self.grad, &g.contiguous()?, |dst, src| {
                if overwrite {
                    dst.copy_from_slice(src);
                } else {
                    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                }
                Ok(())
            })?;
        } else if self.grad_valid {
            self.grad = (&self.grad + g)?;
        } else {
            self.grad = g.copy()?;
        }
        self.grad_valid = true;
        Ok(())
    }

    pub fn zero_grad(&mut self) {
        self.grad_valid = false;
    }
}

/// One layer of a sequential network.
pub trait Layer: Send {
    /// Short kind for logs and partitions ("linear", "conv", ...).
    fn kind(&self) -> &'static str;

    /// Computes the output; in training mode also what backward needs.
    fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<(Tensor, Saved)>;

    /// Accumulates parameter gradients from `grad_out` and returns the input gradient when asked.
    fn backward(
        &mut self,
        saved: Saved,
        grad_out: Tensor,
        need_input_grad: bool,
        threads: usize,
    ) -> Result<Option<Tensor>>;

    /// Backward with the input gradient first: returns it at once and, where the layer can, leaves
    /// the parameter gradients for [`Layer::finish_backward`]. A pipeline stage sends the input
    /// gradient to its neighbour in between, taking the parameter gradients off the critical path.
    fn backward_input_first(
        &mut self,
        saved: Saved,
        grad_out: Tensor,
        threads: usize,
    ) -> Result<(Option<Tensor>, Option<Deferred>)> {
        Ok((self.backward(saved, grad_out, true, threads)?, None))
    }

    /// Accumulates the parameter gradients left by [`Layer::backward_input_first`].
    fn finish_backward(&mut self, deferred: Deferred, threads: usize) -> Result<()> {
        let _ = (deferred, threads);
        Ok(())
    }

    fn params(&self) -> &[Param];

    fn params_mut(&mut self) -> &mut [Param];

    /// Per-sample output shape for a per-sample input shape.
    fn output_dims(&self, input: &[usize]) -> Vec<usize>;

    /// Multiply-accumulates per sample of the forward pass, for balancing pipeline stages.
    fn macs(&self, input: &[usize]) -> u64;
}
