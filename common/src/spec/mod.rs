//! Job specs: parsed from TOML job files into the wire message, then validated into a
//! [`TrainConfig`] with every default applied. Validation reports all bad fields at once.

mod config;
mod errors;
mod validate;

pub use config::{
    Activation, Backend, CellOp, ColumnRef, CommandConfig, DatasetConfig, DatasetSource, Duration, InheritConfig,
    LayerConfig, ModelConfig, ModelKind, Normalize, OptimizerConfig, OptimizerKind, ParallelConfig, Partition,
    PipeSchedule, PipelineConfig, PoolKind, PsMode, Resources, Schedule, ScheduleKind, SyncKind, Task, TrainConfig,
    TrainingConfig, cell_edges, cell_nodes,
};
pub use errors::{FieldError, SpecError};
pub use validate::validate;

use crate::proto::JobSpec;

/// Search parameter values: JSON literals on the wire, plain values (numbers, strings, booleans,
/// arrays) in TOML job files.
pub mod json_values {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(values: &[String], s: S) -> Result<S::Ok, S::Error> {
        let parsed: Vec<serde_json::Value> = values
            .iter()
            .map(|v| serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.clone())))
            .collect();
        parsed.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        let values = Vec::<serde_json::Value>::deserialize(d)?;
        Ok(values.iter().map(|v| v.to_string()).collect())
    }
}

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
