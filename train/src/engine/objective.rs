//! What a micro-batch's loss is. The default is the labels' loss; a job kind that trains on
//! something else (a teacher's outputs, a penalty on the weights) is one new [`Objective`], and the
//! step loop and every cooperation strategy stay as they are.

use crate::backend::{Backend, Tensor};
use crate::error::{Result, TrainError};
use crate::model::Model;
use crate::nn::loss::{LossOutput, Targets, loss_and_grad};

/// The loss of one micro-batch and its gradient with respect to the model's output.
///
/// A distillation job, for instance, keeps a teacher model in its objective: `loss` runs the
/// teacher's forward pass on `input`, adds a term pulling `output` towards the teacher's outputs
/// to the labels' loss, and returns the sum with the summed gradient. The loop neither knows nor
/// cares (see the `a_custom_objective_plugs_into_the_loop` test in `trainer.rs`).
pub trait Objective {
    /// `input` is what the model (in a pipeline: the last stage) was given, `output` what it
    /// produced. The returned gradient must be that of `scale · Σ_rows loss`.
    /// Kernels run on `backend`, the model's.
    fn loss(
        &mut self,
        backend: &dyn Backend,
        input: &Tensor,
        output: &Tensor,
        targets: &Targets,
        scale: f32,
    ) -> Result<LossOutput>;

    /// Called before every optimizer step with the number of steps done, and once more after the
    /// last one: a job kind that constrains the parameters themselves (pruning masks) applies
    /// them here. Every rank calls it at the same points with the same parameters.
    fn constrain(&mut self, _model: &mut Model, _done: u64) -> Result<()> {
        Ok(())
    }
}

/// The default objective: cross-entropy against class labels, mean squared error against values.
#[derive(Clone, Copy, Debug, Default)]
pub struct Labels;

impl Objective for Labels {
    fn loss(
        &mut self,
        backend: &dyn Backend,
        _input: &Tensor,
        output: &Tensor,
        targets: &Targets,
        scale: f32,
    ) -> Result<LossOutput> {
        Ok(loss_and_grad(backend, output, targets, scale)?)
    }
}

/// The objective's loss for optimizer step `step` (0-based), failing when it is not finite.
pub fn checked_loss(
    objective: &mut dyn Objective,
    backend: &dyn Backend,
    input: &Tensor,
    output: &Tensor,
    targets: &Targets,
    scale: f32,
    step: u64,
) -> Result<LossOutput> {
    let loss = objective.loss(backend, input, output, targets, scale)?;
    if !loss.mean().is_finite() {
        return Err(TrainError::Diverged { step: step + 1, loss: loss.mean() });
    }
    Ok(loss)
}
