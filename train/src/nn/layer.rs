//! The layer interface. Forward is a pure function of the input that hands back what backward will
//! need ([`Saved`]); backward consumes it, accumulates parameter gradients and returns the input
//! gradient. Keeping the saved activations outside the layer lets a pipeline stage keep several
//! micro-batches in flight, drop them to recompute later, and count their bytes.

use candle_core::Result;

use super::Param;
use crate::backend::Tensor;
use crate::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Keep what backward needs; dropout active.
    Train,
    /// Inference: nothing saved, dropout off.
    Eval,
    /// Keep what backward needs, dropout off: the gradient of a trained model's outputs with
    /// respect to its inputs (integrated gradients).
    Attribute,
}

/// Per-call settings of a forward pass.
pub struct Ctx {
    pub mode: Mode,
    /// Matmul threads (the job's CPU reservation).
    pub threads: usize,
    /// Dropout masks; seeded per step so a resumed job draws the same masks.
    pub rng: Rng,
}

impl Ctx {
    pub fn new(mode: Mode, threads: usize, rng: Rng) -> Self {
        Self { mode, threads: threads.max(1), rng }
    }

    /// Whether layers keep what backward needs.
    pub fn train(&self) -> bool {
        self.mode != Mode::Eval
    }

    /// Whether dropout drops.
    pub fn dropout(&self) -> bool {
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
        self.tensors.iter().map(Tensor::bytes).sum()
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

    /// Switches on fake quantization for quantization-aware training; false for a layer that has
    /// no int8 form (it then computes in fp32 as before).
    fn fake_quantize(&mut self) -> bool {
        false
    }

    fn params(&self) -> &[Param];

    fn params_mut(&mut self) -> &mut [Param];

    /// Per-sample output shape for a per-sample input shape.
    fn output_dims(&self, input: &[usize]) -> Vec<usize>;

    /// Multiply-accumulates per sample of the forward pass, for balancing pipeline stages.
    fn macs(&self, input: &[usize]) -> u64;
}
