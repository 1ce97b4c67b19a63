//! `AnalysisError`: what went wrong, naming the option or column at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// A file that cannot be read or parsed; `field` is the option that named it.
    #[error("{field} {}: {reason}", path.display())]
    File { field: String, path: PathBuf, reason: String },
    /// A column that is missing, of the wrong kind, or holds a bad value.
    #[error("column `{column}`: {reason}")]
    Column { column: String, reason: String },
    /// An option or combination of inputs that cannot be analysed.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

impl AnalysisError {
    pub fn column(column: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Column { column: column.into(), reason: reason.into() }
    }

    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }
}

pub type Result<T, E = AnalysisError> = std::result::Result<T, E>;
