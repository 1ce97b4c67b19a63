//! Errors of the training engine.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// The dataset could not be loaded or does not match the spec; `field` is the spec path.
    #[error("{field}: {reason}")]
    Dataset { field: String, reason: String },
    /// The model does not fit the data (for example a CNN on data without an image shape).
    #[error("model.{field}: {reason}")]
    Shape { field: String, reason: String },
    /// A checkpoint could not be written or read.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint { path: PathBuf, reason: String },
    /// The loss became NaN or infinite.
    #[error("training diverged at step {step}: loss is {loss}")]
    Diverged { step: u64, loss: f64 },
    /// The background data loader failed.
    #[error("data loader failed: {0}")]
    Loader(String),
    /// A collective operation with the other ranks failed; the message names the culprit.
    #[error(transparent)]
    Collective(#[from] crate::collective::CollectiveError),
    /// Ranks that must hold identical parameters do not.
    #[error("ranks diverged at step {step}: {detail}")]
    RanksDiverged { step: u64, detail: String },
}

impl TrainError {
    pub fn dataset(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Dataset { field: field.into(), reason: reason.into() }
    }

    pub fn checkpoint(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Self::Checkpoint { path: path.into(), reason: reason.to_string() }
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
