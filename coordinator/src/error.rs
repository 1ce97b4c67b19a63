//! Coordinator errors and their one mapping to gRPC statuses.

use shoal_common::spec::FieldError;
use tonic::Status;

use crate::store::StoreError;

/// Why the coordinator refused a request or could not carry it out.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("job `{job_id}` does not exist")]
    JobNotFound { job_id: String },
    #[error("worker `{worker_id}` is not registered (register it first)")]
    WorkerNotFound { worker_id: String },
    #[error("invalid job spec: {} field(s)", .0.len())]
    InvalidSpec(Vec<FieldError>),
    #[error("{field}: {reason}")]
    InvalidRequest { field: String, reason: String },
    #[error("job `{job_id}` already {state}")]
    AlreadyFinished { job_id: String, state: &'static str },
    #[error("worker refused: {reason}")]
    Incompatible { reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A worker opened a session but did not say hello in time.
    #[error("no hello within {}s of opening the session", waited.as_secs())]
    NoHello { waited: std::time::Duration },
    /// The coordinator stopped while a watcher followed this job.
    #[error("coordinator shutting down; watch again to resume")]
    WatchInterrupted { job_id: String },
}

impl CoordinatorError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidRequest { field: field.into(), reason: reason.into() }
    }

    /// Whether retrying the same request later can help.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Store(_) | Self::NoHello { .. } | Self::WatchInterrupted { .. })
    }
}

impl From<CoordinatorError> for Status {
    fn from(e: CoordinatorError) -> Self {
        match e {
            CoordinatorError::JobNotFound { .. } | CoordinatorError::WorkerNotFound { .. } => {
                Status::not_found(e.to_string())
            }
            CoordinatorError::InvalidSpec(fields) => shoal_common::status::invalid_fields(&fields),
            CoordinatorError::InvalidRequest { field, reason } => shoal_common::status::invalid_field(&field, reason),
            CoordinatorError::AlreadyFinished { .. } | CoordinatorError::Incompatible { .. } => {
                Status::failed_precondition(e.to_string())
            }
            CoordinatorError::NoHello { .. } => Status::deadline_exceeded(e.to_string()),
            CoordinatorError::WatchInterrupted { .. } => Status::unavailable(e.to_string()),
            CoordinatorError::Store(inner) => {
                tracing::error!(error = %inner, "database operation failed");
                Status::unavailable(format!("coordinator storage error: {inner}"))
            }
        }
    }
}
