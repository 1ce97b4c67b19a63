//! Compiles `proto/*.proto` with protox (pure Rust, so no `protoc` to install) and generates the
//! prost messages and tonic services, plus the encoded descriptor set that server reflection serves.

use std::path::PathBuf;

use prost::Message;

const FILES: &[&str] = &["spec.proto", "job.proto", "worker.proto", "param_server.proto"];

/// Spec messages are also read from TOML job files, so they derive serde: every field optional
/// (missing = proto default) and unknown keys rejected.
const SERDE_MESSAGES: &[&str] = &[
    "shoal.v1.JobSpec",
    "shoal.v1.ModelSpec",
    "shoal.v1.LayerSpec",
    "shoal.v1.DatasetSpec",
    "shoal.v1.TransformSpec",
    "shoal.v1.OptimizerSpec",
    "shoal.v1.ScheduleSpec",
    "shoal.v1.TrainingSpec",
    "shoal.v1.ResourceSpec",
    "shoal.v1.AllReduceSpec",
    "shoal.v1.PsSpec",
    "shoal.v1.PipelineSpec",
    "shoal.v1.InheritSpec",
    "shoal.v1.CommandSpec",
    "shoal.v1.DistillSpec",
    "shoal.v1.PruneSpec",
    "shoal.v1.QuantizeSpec",
    "shoal.v1.EvaluateSpec",
    "shoal.v1.SearchSpec",
    "shoal.v1.SearchParam",
    "shoal.v1.SearchCondition",
    "shoal.v1.SearchArch",
    "shoal.v1.AshaSpec",
    "shoal.v1.CurveStopSpec",
    "shoal.v1.FidelitySpec",
];

/// Fields holding JSON literals on the wire that TOML files write as plain values.
const JSON_VALUE_FIELDS: &[&str] = &["shoal.v1.SearchParam.values", "shoal.v1.SearchCondition.values"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    for file in FILES {
        println!("cargo:rerun-if-changed={}", proto_dir.join(file).display());
    }
    let fds = protox::compile(FILES, [&proto_dir])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("shoal_descriptor.bin"), fds.encode_to_vec())?;

    let mut builder = tonic_prost_build::configure();
    for message in SERDE_MESSAGES {
        builder = builder.type_attribute(
            message,
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default, deny_unknown_fields)]",
        );
    }
    for field in JSON_VALUE_FIELDS {
        builder = builder.field_attribute(field, "#[serde(with = \"crate::spec::json_values\")]");
    }
    builder.compile_fds(fds)?;
    Ok(())
}
