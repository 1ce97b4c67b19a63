//! Resolving a distillation job's `distill.teacher_job`: the finished job's final checkpoint and
//! model go into the spec, so workers need nothing from the coordinator to load the teacher.

use shoal_common::proto::{JobSpec, JobState};
use shoal_common::{JobId, spec};

use super::state_of;
use crate::error::CoordinatorError;
use crate::state::State;

const FIELD: &str = "distill.teacher_job";

impl State {
    /// Fills `distill.teacher`, `teacher_model` and `teacher_outputs` from the job named by
    /// `distill.teacher_job`, which must have succeeded and left a checkpoint.
    pub(in crate::state) fn resolve_teacher(&self, spec: &mut JobSpec) -> Result<(), CoordinatorError> {
        let Some(d) = spec.distill.as_mut() else { return Ok(()) };
        let name = d.teacher_job.trim().to_owned();
        if name.is_empty() || !d.teacher.trim().is_empty() {
            return Ok(());
        }
        let entry = self
            .jobs
            .get(&JobId::new(&name))
            .ok_or_else(|| CoordinatorError::invalid(FIELD, format!("no job `{name}` on this coordinator")))?;
        let state = state_of(&entry.row);
        if state != JobState::Succeeded {
            return Err(CoordinatorError::invalid(
                FIELD,
                format!("job {name} is {}; a teacher must have finished successfully", state.label()),
            ));
        }
        let teacher = entry.row.job.spec.clone().unwrap_or_default();
        if teacher.search.is_some() {
            return Err(CoordinatorError::invalid(
                FIELD,
                format!("job {name} is a search; name its best trial's job (`shoal best {name}`)"),
            ));
        }
        let cfg = spec::validate(&teacher).map_err(|e| {
            CoordinatorError::invalid(FIELD, format!("job {name}'s spec no longer validates: {}", e[0]))
        })?;
        if cfg.command.is_some() || cfg.evaluate.is_some() || cfg.parallel.pipeline.stages > 1 {
            return Err(CoordinatorError::invalid(
                FIELD,
                format!(
                    "job {name} has no single built-in model checkpoint (external trial, evaluation job or pipeline \
                     stages)"
                ),
            ));
        }
        if entry.row.last_checkpoint.is_empty() {
            return Err(CoordinatorError::invalid(FIELD, format!("job {name} left no checkpoint")));
        }
        d.teacher = entry.row.last_checkpoint.clone();
        d.teacher_model = teacher.model;
        d.teacher_outputs = spec::known_outputs(&cfg.dataset).unwrap_or(0) as i64;
        Ok(())
    }
}
