//! Checkpoints named in a job file, read on the submitting machine: the step directory a path
//! names, the job file saved beside it and the output width in its weights' header. A teacher
//! (`distill.teacher`) and a parent (`inherit.checkpoint`) are pinned to their step directory and
//! get their model from there, so the coordinator and workers can check the job against them
//! without reading the files again.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use shoal_common::proto::{DistillSpec, InheritSpec, JobSpec};
use shoal_common::spec::{self, FieldError};

const WEIGHTS: &str = "model.safetensors";
const JOB_FILE: &str = "job.toml";

/// A checkpoint read here.
struct Saved {
    /// Its step directory, absolute.
    dir: PathBuf,
    job: JobSpec,
}

/// Fills `teacher` (pinned), `teacher_model` and `teacher_outputs` from the checkpoint when it
/// can be read here. A path that cannot be read is an error only when `required` (the files may
/// exist on the workers alone).
pub fn resolve_teacher(d: &mut DistillSpec, base: &Path, required: bool) -> Result<(), FieldError> {
    if d.teacher.trim().is_empty() || d.teacher_model.is_some() {
        return Ok(());
    }
    let Some(saved) = read("distill.teacher", &base.join(d.teacher.trim()), required)? else { return Ok(()) };
    let width = output_width(&saved.dir.join(WEIGHTS)).map_err(|e| fail("distill.teacher", &saved.dir, e))?;
    d.teacher_outputs = width as i64;
    d.teacher_model = saved.job.model;
    d.teacher = saved.dir.display().to_string();
    Ok(())
}

/// Fills `inherit.model` (and pins `inherit.checkpoint`) from the parent's checkpoint.
pub fn resolve_parent(i: &mut InheritSpec, base: &Path, required: bool) -> Result<(), FieldError> {
    if i.checkpoint.trim().is_empty() || i.model.is_some() {
        return Ok(());
    }
    let Some(saved) = read("inherit.checkpoint", &base.join(i.checkpoint.trim()), required)? else { return Ok(()) };
    i.model = saved.job.model;
    i.checkpoint = saved.dir.display().to_string();
    Ok(())
}

fn fail(field: &str, dir: &Path, reason: String) -> FieldError {
    FieldError::new(field, format!("{}: {reason}", dir.display()))
}

/// The checkpoint at `named` (a step directory or a job's folder) and its job file.
fn read(field: &str, named: &Path, required: bool) -> Result<Option<Saved>, FieldError> {
    let Some(dir) = step_dir(named) else {
        if !required {
            return Ok(None);
        }
        return Err(FieldError::new(
            field,
            format!(
                "no checkpoint at {} (a step directory or a job's checkpoint folder; pass --no-path-check if it exists on the workers only)",
                named.display()
            ),
        ));
    };
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let text = std::fs::read_to_string(dir.join(JOB_FILE))
        .map_err(|e| fail(field, &dir, format!("cannot read {JOB_FILE}: {e}")))?;
    let job = spec::parse_toml(&text).map_err(|e| fail(field, &dir, format!("{JOB_FILE} is not a job file: {e}")))?;
    Ok(Some(Saved { dir, job }))
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

/// Rows of `output.weight` in a safetensors file. Its header is a little-endian u64 length and
/// that many bytes of JSON giving each tensor's shape; a sparsely stored weight keeps its shape
/// in the data of `output.weight.sparse_shape` (u32 values).
fn output_width(weights: &Path) -> Result<usize, String> {
    let mut file = std::fs::File::open(weights).map_err(|e| format!("{WEIGHTS}: {e}"))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| format!("{WEIGHTS}: cannot read the header: {e}"))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(format!("{WEIGHTS}: a header of {len} bytes is not plausible"));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(|e| format!("{WEIGHTS}: cannot read the header: {e}"))?;
    let json: serde_json::Value = serde_json::from_slice(&header).map_err(|e| format!("{WEIGHTS}: bad header: {e}"))?;
    if let Some(rows) = json["output.weight"]["shape"][0].as_u64() {
        return Ok(rows as usize);
    }
    let start = json["output.weight.sparse_shape"]["data_offsets"][0]
        .as_u64()
        .ok_or_else(|| format!("{WEIGHTS} has no `output.weight`"))?;
    let mut rows = [0u8; 4];
    file.seek(SeekFrom::Start(8 + len + start)).and_then(|_| file.read_exact(&mut rows)).map_err(|e| e.to_string())?;
    Ok(u32::from_le_bytes(rows) as usize)
}
