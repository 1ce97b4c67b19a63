//! Checkpoints: one directory per saved step holding the weights and optimizer state
//! (safetensors), the job spec (TOML), the fitted feature transforms when the job has any (JSON)
//! and a small state record. Written under a temporary name and renamed, so a crash never leaves a
//! half-written checkpoint that looks complete.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use shoal_analysis::reduce::Pipeline;
use shoal_common::spec::{ModelConfig, load_toml};

use crate::backend::HOST;
use crate::error::{Result, TrainError};

const FORMAT: u32 = 1;
/// The weights, dense or (after pruning) partly in [`crate::sparse`] form.
pub const MODEL_FILE: &str = "model.safetensors";
/// The optimizer's state (empty in a compressed artifact).
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STATE_FILE: &str = "state.json";
/// The job file saved beside the weights.
pub const SPEC_FILE: &str = "job.toml";
/// The job's feature transforms as fitted on its training split (only for jobs that have some):
/// the model's inputs are their outputs.
pub const TRANSFORMS_FILE: &str = "transforms.json";

/// Where training stood when the checkpoint was taken.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    pub format: u32,
    /// Optimizer steps completed.
    pub step: u64,
    pub epoch: u64,
    pub job_name: String,
}

/// A checkpoint read back from disk.
pub struct Loaded {
    pub state: CheckpointState,
    pub model: HashMap<String, Tensor>,
    pub optimizer: HashMap<String, Tensor>,
    /// How many model tensors were stored sparsely (see [`crate::sparse`]).
    pub sparse_tensors: usize,
    /// The fitted feature transforms, when the job has any.
    pub transforms: Option<Pipeline>,
}

fn step_dir_name(step: u64) -> String {
    format!("step-{step:010}")
}

/// Writes a checkpoint for `step` under `root`, with the fitted `transforms` when the job has
/// any, and keeps only the newest `keep` ones.
pub fn save(
    root: &Path,
    state: &CheckpointState,
    model: &HashMap<String, Tensor>,
    optimizer: &HashMap<String, Tensor>,
    spec_toml: &str,
    transforms: Option<&Pipeline>,
    keep: usize,
) -> Result<PathBuf> {
    let final_dir = root.join(step_dir_name(state.step));
    let tmp = root.join(format!(".tmp-{}", step_dir_name(state.step)));
    let io = |e: std::io::Error| TrainError::checkpoint(&final_dir, e);
    std::fs::create_dir_all(root).map_err(io)?;
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io)?;
    }
    std::fs::create_dir_all(&tmp).map_err(io)?;
    candle_core::safetensors::save(model, tmp.join(MODEL_FILE)).map_err(|e| TrainError::checkpoint(&final_dir, e))?;
    candle_core::safetensors::save(optimizer, tmp.join(OPTIMIZER_FILE))
        .map_err(|e| TrainError::checkpoint(&final_dir, e))?;
    std::fs::write(tmp.join(SPEC_FILE), spec_toml).map_err(io)?;
    if let Some(p) = transforms {
        write_transforms(&tmp, p).map_err(|e| TrainError::checkpoint(&final_dir, e))?;
    }
    let json = serde_json::to_vec_pretty(state).map_err(|e| TrainError::checkpoint(&final_dir, e))?;
    std::fs::write(tmp.join(STATE_FILE), json).map_err(io)?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(io)?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(io)?;
    prune(root, keep);
    Ok(final_dir)
}

/// Replaces the weights of the checkpoint `dir` (and its job file, when given) by a compressed
/// model. The optimizer state is dropped: it belongs to the model before compression.
pub fn rewrite(dir: &Path, model: &HashMap<String, Tensor>, spec_toml: Option<&str>) -> Result<()> {
    let fail = |e: String| TrainError::checkpoint(dir, e);
    let replace = |file: &str, write: &dyn Fn(&Path) -> Result<()>| -> Result<()> {
        let tmp = dir.join(format!(".tmp-{file}"));
        write(&tmp)?;
        std::fs::rename(&tmp, dir.join(file)).map_err(|e| fail(e.to_string()))
    };
    replace(MODEL_FILE, &|p| candle_core::safetensors::save(model, p).map_err(|e| fail(e.to_string())))?;
    let empty: HashMap<String, Tensor> = HashMap::new();
    replace(OPTIMIZER_FILE, &|p| candle_core::safetensors::save(&empty, p).map_err(|e| fail(e.to_string())))?;
    if let Some(text) = spec_toml {
        replace(SPEC_FILE, &|p| std::fs::write(p, text).map_err(|e| fail(e.to_string())))?;
    }
    Ok(())
}

/// Writes `transforms` into the folder `dir` as [`TRANSFORMS_FILE`].
fn write_transforms(dir: &Path, transforms: &Pipeline) -> std::result::Result<(), String> {
    let json = serde_json::to_vec(transforms).map_err(|e| format!("{TRANSFORMS_FILE}: {e}"))?;
    std::fs::write(dir.join(TRANSFORMS_FILE), json).map_err(|e| format!("{TRANSFORMS_FILE}: {e}"))
}

/// The fitted transforms saved in the checkpoint or artifact folder `dir`, `None` when it holds
/// none. The file is checked as it is read (every step consistent with the next).
pub fn transforms(dir: &Path) -> Result<Option<Pipeline>> {
    let path = dir.join(TRANSFORMS_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TrainError::checkpoint(dir, format!("cannot read {TRANSFORMS_FILE}: {e}"))),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| TrainError::checkpoint(dir, format!("bad {TRANSFORMS_FILE}: {e}")))
}

/// Copies the transforms of the checkpoint `from` (if it has any) into the artifact folder `to`,
/// so that an artifact made from a checkpoint prepares its inputs as the checkpoint did.
pub fn copy_transforms(from: &Path, to: &Path) -> Result<()> {
    match transforms(from)? {
        Some(p) => write_transforms(to, &p).map_err(|e| TrainError::checkpoint(to, e)),
        None => Ok(()),
    }
}

/// The step directory `path` names: itself when it holds weights, else the newest checkpoint
/// under it (a job's checkpoint folder), else `path` as given (for its error to name).
pub fn step_dir(path: &Path) -> PathBuf {
    if path.join(MODEL_FILE).exists() { path.to_path_buf() } else { latest(path).unwrap_or_else(|| path.to_path_buf()) }
}

/// The model section of the job file saved with the checkpoint `dir`.
pub fn model_of(dir: &Path) -> Result<ModelConfig> {
    let path = dir.join(SPEC_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| TrainError::checkpoint(dir, format!("cannot read its job file {}: {e}", path.display())))?;
    let (_, cfg) =
        load_toml(&text).map_err(|e| TrainError::checkpoint(dir, format!("its job file is not valid: {e}")))?;
    Ok(cfg.model)
}

/// Checkpoint directories under `root`, oldest first.
pub fn list(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-"))
                && p.join(STATE_FILE).exists()
        })
        .collect();
    dirs.sort();
    dirs
}

/// The newest complete checkpoint under `root`.
pub fn latest(root: &Path) -> Option<PathBuf> {
    list(root).pop()
}

fn prune(root: &Path, keep: usize) {
    let dirs = list(root);
    if dirs.len() > keep.max(1) {
        for old in &dirs[..dirs.len() - keep.max(1)] {
            if let Err(e) = std::fs::remove_dir_all(old) {
                tracing::warn!(path = %old.display(), error = %e, "could not prune an old checkpoint");
            }
        }
    }
}

/// Reads a checkpoint directory into host memory (models copy the tensors to their backend).
pub fn load(dir: &Path) -> Result<Loaded> {
    let state_raw = std::fs::read(dir.join(STATE_FILE))
        .map_err(|e| TrainError::checkpoint(dir, format!("cannot read {STATE_FILE}: {e}")))?;
    let state: CheckpointState = serde_json::from_slice(&state_raw)
        .map_err(|e| TrainError::checkpoint(dir, format!("bad {STATE_FILE}: {e}")))?;
    if state.format != FORMAT {
        return Err(TrainError::checkpoint(
            dir,
            format!("format {} is not supported (this build reads {FORMAT})", state.format),
        ));
    }
    let mut model = candle_core::safetensors::load(dir.join(MODEL_FILE), &HOST)
        .map_err(|e| TrainError::checkpoint(dir, format!("{MODEL_FILE}: {e}")))?;
    let sparse_tensors =
        crate::sparse::decode_all(&mut model).map_err(|e| TrainError::checkpoint(dir, format!("{MODEL_FILE}: {e}")))?;
    let optimizer = candle_core::safetensors::load(dir.join(OPTIMIZER_FILE), &HOST)
        .map_err(|e| TrainError::checkpoint(dir, format!("{OPTIMIZER_FILE}: {e}")))?;
    let transforms = transforms(dir)?;
    Ok(Loaded { state, model, optimizer, sparse_tensors, transforms })
}

impl CheckpointState {
    pub fn new(step: u64, epoch: u64, job_name: &str) -> Self {
        Self { format: FORMAT, step, epoch, job_name: job_name.to_owned() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_and_prune() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Tensor::new(&[1f32, 2.0, 3.0], &HOST).expect("tensor");
        let model: HashMap<String, Tensor> = [("w".to_owned(), t)].into();
        for step in [10, 20, 30] {
            save(
                dir.path(),
                &CheckpointState::new(step, 1, "job"),
                &model,
                &HashMap::new(),
                "name = \"job\"\n",
                None,
                2,
            )
            .expect("save");
        }
        let dirs = list(dir.path());
        assert_eq!(dirs.len(), 2);
        let newest = latest(dir.path()).expect("latest");
        assert!(newest.ends_with("step-0000000030"));
        let loaded = load(&newest).expect("load");
        assert_eq!(loaded.state.step, 30);
        assert_eq!(loaded.model["w"].to_vec1::<f32>().expect("vec"), vec![1.0, 2.0, 3.0]);
        assert!(load(dir.path()).is_err());
    }

    #[test]
    fn transforms_stay_through_a_rewrite_and_go_with_an_artifact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let x = [1f32, 2.0, 3.0, 5.0, 4.0, 1.0];
        let fitted =
            Pipeline::fit(&[shoal_analysis::reduce::TransformSpec::Standardize {}], &x, 3, 2, None, 0).expect("fit");
        let t = Tensor::new(&[1f32, 2.0], &HOST).expect("tensor");
        let model: HashMap<String, Tensor> = [("w".to_owned(), t)].into();
        let state = CheckpointState::new(5, 1, "job");
        let step = save(dir.path(), &state, &model, &HashMap::new(), "", Some(&fitted), 1).expect("save");
        assert_eq!(load(&step).expect("load").transforms.as_ref(), Some(&fitted));
        // Pruning rewrites the weights in place; the transforms are the model's inputs still.
        rewrite(&step, &model, None).expect("rewrite");
        assert_eq!(transforms(&step).expect("read"), Some(fitted.clone()));
        let artifact = dir.path().join("int8");
        std::fs::create_dir_all(&artifact).expect("mkdir");
        copy_transforms(&step, &artifact).expect("copy");
        assert_eq!(transforms(&artifact).expect("read"), Some(fitted));
        std::fs::write(artifact.join(TRANSFORMS_FILE), "{\"inputs\": 0, \"steps\": []}").expect("write");
        let err = transforms(&artifact).expect_err("bad file");
        assert!(err.to_string().contains("bad transforms.json: pipeline.inputs: must be at least 1"), "{err}");
        let plain =
            save(dir.path(), &CheckpointState::new(6, 1, "job"), &model, &HashMap::new(), "", None, 1).expect("save");
        assert_eq!(load(&plain).expect("load").transforms, None);
    }
}
