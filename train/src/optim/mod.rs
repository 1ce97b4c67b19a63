//! Optimizers over a model's parameters: SGD (momentum, Nesterov) and AdamW, driven by the job's
//! learning-rate schedule. State lives in host buffers; on CPU the update runs in place in the
//! parameter tensor.

pub mod rules;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use shoal_common::spec::{OptimizerConfig, OptimizerKind};

use crate::error::{Result, TrainError};
use crate::nn::{Param, cpu};

struct Slot {
    name: String,
    /// Momentum buffer (SGD) or first moment (AdamW).
    first: Vec<f32>,
    /// Second moment (AdamW only).
    second: Vec<f32>,
}

pub struct Optimizer {
    config: OptimizerConfig,
    total_steps: u64,
    steps_done: u64,
    slots: Vec<Slot>,
}

impl Optimizer {
    pub fn new<'a>(config: OptimizerConfig, total_steps: u64, params: impl Iterator<Item = &'a Param>) -> Self {
        let slots = params
            .map(|p| {
                let n = p.elem_count();
                let (first, second) = match config.kind {
                    OptimizerKind::Sgd { momentum, .. } if momentum > 0.0 => (vec![0.0; n], Vec::new()),
                    OptimizerKind::Sgd { .. } => (Vec::new(), Vec::new()),
                    OptimizerKind::AdamW { .. } => (vec![0.0; n], vec![0.0; n]),
                };
                Slot { name: p.name.clone(), first, second }
            })
            .collect();
        Self { config, total_steps, steps_done: 0, slots }
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
            let kind = self.config.kind;
            let mut apply = |w: &mut [f32], g: &[f32]| -> candle_core::Result<()> {
                match kind {
                    OptimizerKind::Sgd { momentum, nesterov } => {
                        rules::sgd(w, g, &mut slot.first, lr as f32, momentum as f32, nesterov, wd, first_step)
                    }
                    OptimizerKind::AdamW { beta1, beta2, eps } => {
                        let s = rules::AdamStep {
                            lr: lr as f32,
                            beta1: beta1 as f32,
                            beta2: beta2 as f32,
                            eps: eps as f32,
                            weight_decay: wd,
                            t,
                        };
                        rules::adamw(w, g, &mut slot.first, &mut slot.second, &s);
                    }
                }
                Ok(())
            };
            let value = p.value.as_tensor();
            if cpu::is_cpu_f32(value) && cpu::is_cpu_f32(&p.grad) {
                cpu::update_with(value, &p.grad.contiguous()?, apply)?;
            } else {
                // Other devices: update a host copy and write it back.
                let mut w = cpu::to_vec(value)?;
                let g = cpu::to_vec(&p.grad)?;
                apply(&mut w, &g)?;
                p.value.set(&Tensor::from_vec(w, value.shape(), &Device::Cpu)?.to_device(value.device())?)?;
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

    /// Optimizer state by name, for checkpoints.
    pub fn named_state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for slot in &self.slots {
            if !slot.first.is_empty() {
                out.insert(
                    format!("{}.first_moment", slot.name),
                    Tensor::from_slice(&slot.first, slot.first.len(), &Device::Cpu)?,
                );
            }
            if !slot.second.is_empty() {
                out.insert(
                    format!("{}.second_moment", slot.name),
                    Tensor::from_slice(&slot.second, slot.second.len(), &Device::Cpu)?,
                );
            }
        }
        Ok(out)
    }

    /// Restores state saved by [`Self::named_state`] after `steps_done` steps.
    pub fn load_state(
        &mut self,
        state: &HashMap<String, Tensor>,
        steps_done: u64,
        origin: &std::path::Path,
    ) -> Result<()> {
        for slot in &mut self.slots {
            for (suffix, buf) in [("first_moment", &mut slot.first), ("second_moment", &mut slot.second)] {
                if buf.is_empty() {
                    continue;
                }
                let key = format!("{}.{suffix}", slot.name);
                let t = state
                    .get(&key)
                    .ok_or_else(|| TrainError::checkpoint(origin, format!("optimizer state `{key}` is missing")))?;
                let values = cpu::to_vec(t)?;
                if values.len() != buf.len() {
                    return Err(TrainError::checkpoint(
                        origin,
                        format!("optimizer state `{key}` has {} values, expected {}", values.len(), buf.len()),
                    ));
                }
                buf.copy_from_slice(&values);
            }
        }
        self.steps_done = steps_done;
        Ok(())
    }
}
