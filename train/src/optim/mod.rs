//! Optimizers over a model's parameters: SGD (momentum, Nesterov) and AdamW, driven by the job's
//! learning-rate schedule. Their state lives next to the parameters, in backend tensors, and the
//! backend applies the update (in place on CPU).

use std::collections::HashMap;
use std::sync::Arc;

use shoal_common::spec::{OptimizerConfig, OptimizerKind};

pub use crate::backend::rules;
use crate::backend::{AdamStep, Backend, SgdStep, Tensor};
use crate::error::{Result, TrainError};
use crate::nn::Param;

/// Per-parameter state, flat tensors of the parameter's size.
enum State {
    /// Plain SGD keeps nothing.
    Stateless,
    /// SGD's momentum buffer (saved as the first moment).
    Momentum(Tensor),
    AdamW {
        first: Tensor,
        second: Tensor,
    },
}

/// Checkpoint names of the state tensors, by suffix.
const FIRST: &str = "first_moment";
const SECOND: &str = "second_moment";

struct Slot {
    name: String,
    state: State,
    backend: Arc<dyn Backend>,
}

impl Slot {
    /// The state tensors with their checkpoint suffixes.
    fn tensors(&self) -> Vec<(&'static str, &Tensor)> {
        match &self.state {
            State::Stateless => Vec::new(),
            State::Momentum(buf) => vec![(FIRST, buf)],
            State::AdamW { first, second } => vec![(FIRST, first), (SECOND, second)],
        }
    }

    fn tensors_mut(&mut self) -> Vec<(&'static str, &mut Tensor)> {
        match &mut self.state {
            State::Stateless => Vec::new(),
            State::Momentum(buf) => vec![(FIRST, buf)],
            State::AdamW { first, second } => vec![(FIRST, first), (SECOND, second)],
        }
    }
}

pub struct Optimizer {
    config: OptimizerConfig,
    total_steps: u64,
    steps_done: u64,
    slots: Vec<Slot>,
}

impl Optimizer {
    /// State for every parameter, allocated on the parameter's backend.
    pub fn new<'a>(config: OptimizerConfig, total_steps: u64, params: impl Iterator<Item = &'a Param>) -> Result<Self> {
        let slots = params
            .map(|p| -> Result<Slot> {
                let zeros = || p.backend().zeros(&[p.elem_count()]);
                let state = match config.kind {
                    OptimizerKind::Sgd { momentum, .. } if momentum > 0.0 => State::Momentum(zeros()?),
                    OptimizerKind::Sgd { .. } => State::Stateless,
                    OptimizerKind::AdamW { .. } => State::AdamW { first: zeros()?, second: zeros()? },
                };
                Ok(Slot { name: p.name.clone(), state, backend: p.backend().clone() })
            })
            .collect::<Result<_>>()?;
        Ok(Self { config, total_steps, steps_done: 0, slots })
    }

    /// Optimizer steps applied so far.
    pub fn steps_done(&self) -> u64 {
        self.steps_done
    }

    /// Learning rate of the next step.
    pub fn lr(&self) -> f64 {
        self.config.schedule.lr_at(self.config.lr, self.steps_done, self.total_steps)
    }

    /// Applies one update from the parameters' gradients and returns the learning rate used.
    /// Parameters without a gradient this step are left alone.
    pub fn step<'a>(&mut self, params: impl Iterator<Item = &'a mut Param>) -> Result<f64> {
        let lr = self.lr();
        let first_step = self.steps_done == 0;
        let t = self.steps_done + 1;
        let wd = self.config.weight_decay as f32;
        for (p, slot) in params.zip(self.slots.iter_mut()) {
            if p.name != slot.name {
                return Err(TrainError::checkpoint(
                    "optimizer",
                    format!("parameter order changed: `{}` vs `{}`", p.name, slot.name),
                ));
            }
            if !p.grad_valid {
                continue;
            }
            let backend = &slot.backend;
            match (self.config.kind, &mut slot.state) {
                (OptimizerKind::Sgd { momentum, nesterov }, state) => {
                    let s = SgdStep {
                        lr: lr as f32,
                        momentum: momentum as f32,
                        nesterov,
                        weight_decay: wd,
                        first: first_step,
                    };
                    let buf = match state {
                        State::Momentum(buf) => Some(buf),
                        _ => None,
                    };
                    backend.sgd_update(&mut p.value, &p.grad, buf, &s)?;
                }
                (OptimizerKind::AdamW { beta1, beta2, eps }, State::AdamW { first, second }) => {
                    let s = AdamStep {
                        lr: lr as f32,
                        beta1: beta1 as f32,
                        beta2: beta2 as f32,
                        eps: eps as f32,
                        weight_decay: wd,
                        t,
                    };
                    backend.adamw_update(&mut p.value, &p.grad, first, second, &s)?;
                }
                (OptimizerKind::AdamW { .. }, _) => {
                    return Err(TrainError::checkpoint("optimizer", format!("`{}` has no AdamW moments", p.name)));
                }
            }
        }
        self.steps_done += 1;
        Ok(lr)
    }

    /// Counts a step applied elsewhere (by parameter servers); returns its learning rate.
    pub fn skip(&mut self) -> f64 {
        let lr = self.lr();
        self.steps_done += 1;
        lr
    }

    /// Optimizer state by name, in host memory, for checkpoints: `{param}.first_moment` and
    /// `.second_moment`, flat. Host state is shared with the live state, not copied: save it
    /// before the next step.
    pub fn named_state(&self) -> Result<HashMap<String, candle_core::Tensor>> {
        let mut out = HashMap::new();
        for slot in &self.slots {
            for (suffix, t) in slot.tensors() {
                out.insert(format!("{}.{suffix}", slot.name), t.to_host_tensor()?);
            }
        }
        Ok(out)
    }

    /// Restores state saved by [`Self::named_state`] after `steps_done` steps.
    pub fn load_state(
        &mut self,
        state: &HashMap<String, candle_core::Tensor>,
        steps_done: u64,
        origin: &std::path::Path,
    ) -> Result<()> {
        for slot in &mut self.slots {
            let (name, backend) = (slot.name.clone(), slot.backend.clone());
            for (suffix, buf) in slot.tensors_mut() {
                let key = format!("{name}.{suffix}");
                let t = state
                    .get(&key)
                    .ok_or_else(|| TrainError::checkpoint(origin, format!("optimizer state `{key}` is missing")))?;
                if t.elem_count() != buf.elem_count() {
                    return Err(TrainError::checkpoint(
                        origin,
                        format!("optimizer state `{key}` has {} values, expected {}", t.elem_count(), buf.elem_count()),
                    ));
                }
                *buf = backend.from_host_tensor(&t.flatten_all()?)?;
            }
        }
        self.steps_done = steps_done;
        Ok(())
    }
}
