//! A shard's state on disk, next to the job's checkpoint: values and optimizer moments as
//! safetensors, version and per-worker clocks as JSON.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::shard::ShardState;

/// Why a shard's state could not be saved or loaded. Messages name the file where the
/// underlying library does not.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{source}")]
    Tensor { source: candle_core::Error },
    #[error("{source}")]
    SaveTensors { path: PathBuf, source: candle_core::Error },
    #[error("{}: {source}", path.display())]
    LoadTensors { path: PathBuf, source: candle_core::Error },
    #[error("{source}")]
    EncodeClocks { source: serde_json::Error },
    #[error("{}: {source}", path.display())]
    DecodeClocks { path: PathBuf, source: serde_json::Error },
    #[error("{source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
}

fn state_paths(dir: &Path, shard: u32) -> (PathBuf, PathBuf) {
    (dir.join(format!("ps-shard-{shard}.safetensors")), dir.join(format!("ps-shard-{shard}.json")))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Clocks {
    version: u64,
    updates: u64,
    clocks: Vec<u64>,
}

/// Writes shard `shard`'s state into `dir`; returns the tensors' path.
pub(crate) fn save_state(dir: &Path, shard: u32, state: &ShardState) -> Result<PathBuf, CheckpointError> {
    let (tensors, meta) = state_paths(dir, shard);
    let t =
        |v: &[f32]| Tensor::from_slice(v, v.len(), &Device::Cpu).map_err(|source| CheckpointError::Tensor { source });
    let mut map = HashMap::from([("values".to_owned(), t(&state.values)?)]);
    if !state.first.is_empty() {
        map.insert("first_moment".into(), t(&state.first)?);
    }
    if !state.second.is_empty() {
        map.insert("second_moment".into(), t(&state.second)?);
    }
    candle_core::safetensors::save(&map, &tensors)
        .map_err(|source| CheckpointError::SaveTensors { path: tensors.clone(), source })?;
    let clocks = Clocks { version: state.version, updates: state.updates, clocks: state.clocks.clone() };
    let body = serde_json::to_vec(&clocks).map_err(|source| CheckpointError::EncodeClocks { source })?;
    std::fs::write(&meta, body).map_err(|source| CheckpointError::Write { path: meta.clone(), source })?;
    Ok(tensors)
}

/// Reads back what [`save_state`] wrote for shard `shard` in `dir`.
pub(crate) fn load_state(dir: &Path, shard: u32) -> Result<ShardState, CheckpointError> {
    let (tensors, meta) = state_paths(dir, shard);
    let map = candle_core::safetensors::load(&tensors, &Device::Cpu)
        .map_err(|source| CheckpointError::LoadTensors { path: tensors.clone(), source })?;
    let vec = |name: &str| -> Result<Vec<f32>, CheckpointError> {
        map.get(name)
            .map_or(Ok(Vec::new()), |t| t.to_vec1::<f32>().map_err(|source| CheckpointError::Tensor { source }))
    };
    let body = std::fs::read(&meta).map_err(|source| CheckpointError::Read { path: meta.clone(), source })?;
    let clocks: Clocks =
        serde_json::from_slice(&body).map_err(|source| CheckpointError::DecodeClocks { path: meta.clone(), source })?;
    Ok(ShardState {
        values: vec("values")?,
        first: vec("first_moment")?,
        second: vec("second_moment")?,
        version: clocks.version,
        updates: clocks.updates,
        clocks: clocks.clocks,
    })
}
