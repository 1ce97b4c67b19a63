//! Job specs: parsed from TOML job files into the wire message, then validated into a
//! [`TrainConfig`] with every default applied. Validation reports all bad fields at once.

mod config;
mod errors;
mod validate;

pub use config::{
    Activation, Backend, ColumnRef, DatasetConfig, DatasetSource, Duration, LayerConfig, ModelConfig, ModelKind,
    Normalize, OptimizerConfig, OptimizerKind, ParallelConfig, Partition, PipeSchedule, PipelineConfig, PoolKind,
    PsMode, Resources, Schedule, ScheduleKind, SyncKind, Task, TrainConfig, TrainingConfig,
};
pub use errors::{FieldError, SpecError};
pub use validate::validate;

use crate::proto::JobSpec;

/// Parses a TOML job file into the wire message. Syntax errors, wrong types and unknown keys fail
/// here (serde stops at the first); everything else is left to [`validate`], which reports all.
pub fn parse_toml(text: &str) -> Result<JobSpec, SpecError> {
    toml::from_str(text).map_err(|e| SpecError::Parse { message: e.to_string().trim().to_owned() })
}

/// Renders a spec back to TOML (saved next to checkpoints, shown by `shoal status`).
pub fn to_toml(spec: &JobSpec) -> String {
    toml::to_string_pretty(spec).unwrap_or_else(|e| format!("# spec could not be rendered: {e}\n"))
}

/// Parses and validates in one go.
pub fn load_toml(text: &str) -> Result<(JobSpec, TrainConfig), SpecError> {
    let spec = parse_toml(text)?;
    let config = validate(&spec).map_err(SpecError::Invalid)?;
    Ok((spec, config))
}
