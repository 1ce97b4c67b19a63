//! A distillation job's teacher, read on the submitting machine: the step directory it names, the
//! model from the job file saved beside it and its output width from the weights' header. The
//! coordinator and workers then check the student against it without reading the files again.

use std::path::{Path, PathBuf};

use shoal_common::proto::DistillSpec;
use shoal_common::spec::{self, FieldError};

const WEIGHTS: &str = "model.safetensors";
const JOB_FILE: &str = "job.toml";

/// Fills `teacher` (made absolute and pinned to a step directory), `teacher_model` and
/// `teacher_outputs` from the checkpoint when it can be read here. A path that cannot be read is
/// an error only when `required` (the files may exist on the workers alone).
pub fn resolve(d: &mut DistillSpec, base: &Path, required: bool) -> Result<(), FieldError> {
    if d.teacher.trim().is_empty() || d.teacher_model.is_some() {
        return Ok(());
    }
    let named = base.join(d.teacher.trim());
    let Some(dir) = step_dir(&named) else {
        if required {
            return Err(FieldError::new(
                "distill.teacher",
                format!(
                    "no checkpoint at {} (a step directory or a job's checkpoint folder; pass --no-path-check if it exists on the workers only)",
                    named.display()
                ),
            ));
        }
        return Ok(());
    };
    let fail = |reason: String| FieldError::new("distill.teacher", format!("{}: {reason}", dir.display()));
    let text = std::fs::read_to_string(dir.join(JOB_FILE)).map_err(|e| fail(format!("cannot read {JOB_FILE}: {e}")))?;
    let job = spec::parse_toml(&text).map_err(|e| fail(format!("{JOB_FILE} is not a job file: {e}")))?;
    d.teacher_outputs = output_width(&dir.join(WEIGHTS)).map_err(|e| fail(format!("{WEIGHTS}: {e}")))? as i64;
    d.teacher_model = job.model;
    d.teacher = std::path::absolute(&dir).unwrap_or(dir).display().to_string();
    Ok(())
}

/// `path` itself when it holds weights, else its newest `step-*` directory.
fn step_dir(path: &Path) -> Option<PathBuf> {
    if path.join(WEIGHTS).is_file() {
        return Some(path.to_path_buf());
    }
    let mut steps: Vec<PathBuf> = std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-")))
        .filter(|p| p.join(WEIGHTS).is_file())
        .collect();
    steps.sort();
    steps.pop()
}

/// Rows of `output.weight` in a safetensors file: its header is a little-endian u64 length and
/// that many bytes of JSON naming each tensor's shape.
fn output_width(weights: &Path) -> Result<usize, String> {
    use std::io::Read;
    let mut file = std::fs::File::open(weights).map_err(|e| e.to_string())?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| format!("cannot read the header: {e}"))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(format!("header of {len} bytes is not plausible"));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(|e| format!("cannot read the header: {e}"))?;
    let json: serde_json::Value = serde_json::from_slice(&header).map_err(|e| format!("bad header: {e}"))?;
    json["output.weight"]["shape"][0].as_u64().map(|n| n as usize).ok_or_else(|| "has no `output.weight`".into())
}
