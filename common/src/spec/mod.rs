//! Job specs: parsed from TOML job files into the wire message, then validated into a
//! [`TrainConfig`] with every default applied. Validation reports all bad fields at once.

mod config;
mod errors;
mod shape;
mod validate;

pub use config::{
    Activation, Backend, Calibration, CellOp, ColumnRef, ColumnarFormat, CommandConfig, DatasetConfig, DatasetSource,
    DistillConfig, Duration, EvaluateConfig, InheritConfig, LayerConfig, ModelConfig, ModelKind, Normalize,
    OptimizerConfig, OptimizerKind, ParallelConfig, Partition, PipeSchedule, PipelineConfig, PoolKind, Precision,
    PruneConfig, PruneMethod, PruneSchedule, PsMode, QuantizeConfig, Resources, Schedule, ScheduleKind, SyncKind, Task,
    TrainConfig, TrainingConfig, cell_edges, cell_nodes,
};
pub use errors::{FieldError, FieldErrors, SpecError};
pub use shape::{DataShape, ModelShape, ShapeError, infer_shape};
/// The validated form of one `dataset.transforms` entry (shoal-analysis's own type).
pub use shoal_analysis::reduce::TransformSpec;
pub use validate::{consumer_of, known_outputs, prunable_unit, validate};

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

/// `[parallelism]` by hand: `data` is a count or an elastic range `"MIN..MAX"`.
mod parallelism_serde {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::proto::ParallelismSpec;

    #[derive(Deserialize, Serialize)]
    #[serde(untagged)]
    enum Ranks {
        Count(i64),
        Range(String),
    }

    #[derive(Deserialize, Serialize, Default)]
    #[serde(default, deny_unknown_fields)]
    struct Raw {
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<Ranks>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pipeline: Option<i64>,
    }

    impl<'de> Deserialize<'de> for ParallelismSpec {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let raw = Raw::deserialize(d)?;
            let (data_min, data) = match raw.data {
                None => (None, None),
                Some(Ranks::Count(n)) => (None, Some(n)),
                Some(Ranks::Range(text)) => {
                    let parsed = text
                        .split_once("..")
                        .and_then(|(a, b)| Some((a.trim().parse::<i64>().ok()?, b.trim().parse::<i64>().ok()?)));
                    let Some((min, max)) = parsed else {
                        return Err(serde::de::Error::custom(format!(
                            "parallelism.data: `{text}` is neither a number of ranks nor a range \"MIN..MAX\""
                        )));
                    };
                    (Some(min), Some(max))
                }
            };
            Ok(ParallelismSpec { data, pipeline: raw.pipeline, data_min })
        }
    }

    impl Serialize for ParallelismSpec {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let data = match (self.data_min, self.data) {
                (Some(min), Some(max)) => Some(Ranks::Range(format!("{min}..{max}"))),
                (_, Some(n)) => Some(Ranks::Count(n)),
                (_, None) => None,
            };
            Raw { data, pipeline: self.pipeline }.serialize(s)
        }
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
