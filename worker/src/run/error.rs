//! Why a job's run on this worker failed before or outside training, and whether restarting the
//! job (perhaps on other workers) can help. Failures of training itself are `TrainError`s.

use std::process::ExitStatus;
use std::time::Duration;

use shoal_common::JobId;
use shoal_common::spec::FieldError;
use shoal_train::{CollectiveError, TrainError};

/// The connection to other ranks (or servers) a rank could not make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    AllReduceRing,
    ParamServers,
    Pipeline,
    /// The ring between the same stage of pipeline replicas.
    StageRing {
        stage: usize,
    },
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AllReduceRing => f.write_str("join the all-reduce ring"),
            Self::ParamServers => f.write_str("reach the parameter servers"),
            Self::Pipeline => f.write_str("join the pipeline"),
            Self::StageRing { stage } => write!(f, "join the ring of stage {stage}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the assignment carried no job spec")]
    NoSpec { job: JobId },
    #[error("invalid job spec: {}", joined(errors))]
    InvalidSpec { job: JobId, errors: Vec<FieldError> },
    /// A path in the spec lies outside the folders this worker may read.
    #[error("{reason}")]
    PathNotAllowed { job: JobId, field: &'static str, reason: String },
    #[error("cannot load the dataset: {source}")]
    Dataset { job: JobId, source: Box<TrainError> },
    #[error("cannot {link}: {source}")]
    Join { job: JobId, rank: usize, link: Link, source: Box<CollectiveError> },
    #[error("the assignment lists {listed} peers for world size {world} (rank {rank})")]
    PeerCount { job: JobId, rank: usize, listed: usize, world: usize },
    #[error("{world} ranks do not divide into pipelines of {stages} stages")]
    Stages { job: JobId, world: usize, stages: usize },
    #[error("this worker was built without the `cuda` feature, so it cannot use the NCCL backend")]
    NoCuda { job: JobId },
    #[error("the NCCL backend needs a GPU, and none was reserved for this rank")]
    NoGpu { job: JobId, rank: usize },
    #[error("cannot create the NCCL unique id: {source}")]
    NcclId { job: JobId, source: Box<CollectiveError> },
    #[error("bad NCCL unique id from rank 0: {source}")]
    BadNcclId { job: JobId, rank: usize, source: Box<CollectiveError> },
    #[error("rank 0 did not publish the NCCL unique id within {timeout:?}")]
    NoNcclId { job: JobId, rank: usize, timeout: Duration },
    #[error("cannot join NCCL on GPU {gpu}: {source}")]
    NcclJoin { job: JobId, rank: usize, gpu: u32, source: Box<CollectiveError> },
    /// GPUs were reserved but this build cannot train on them (never silently on the CPU).
    #[error(
        "GPUs {gpus:?} were reserved, but this worker was built without the `cuda` feature and cannot train on them"
    )]
    NoCudaTraining { job: JobId, gpus: Vec<u32> },
    #[error("cannot train on GPU {gpu}: {reason}")]
    GpuOpen { job: JobId, gpu: u32, reason: String },
    #[error("the training thread panicked: {what}")]
    Panicked { job: JobId, what: String },
    #[error("no command to run")]
    NoCommand { job: JobId },
    #[error("cannot start `{program}`: {source}")]
    CommandStart { job: JobId, program: String, source: std::io::Error },
    #[error("waiting for the trial program: {source}")]
    CommandWait { job: JobId, source: std::io::Error },
    /// The external trial program failed; `last_err` is its last non-empty stderr line.
    #[error("the trial program `{program}` exited with {status}{}", colon(last_err))]
    CommandFailed { job: JobId, program: String, status: ExitStatus, last_err: String },
    /// An evaluation job's artifact, data or settings were bad, or its ranks could not merge.
    #[error("evaluation: {source}")]
    Evaluation { job: JobId, source: Box<crate::analysis::Failure> },
}

fn joined(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

fn colon(detail: &str) -> String {
    if detail.is_empty() { String::new() } else { format!(": {detail}") }
}

impl RunError {
    /// Whether the job may succeed when placed again: true when joining the other ranks failed
    /// for want of a peer, link, GPU or library here; false when the job itself is at fault.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Join { source, .. } => source.retryable(),
            Self::Evaluation { source, .. } => source.retryable(),
            Self::PeerCount { .. }
            | Self::Stages { .. }
            | Self::NoCuda { .. }
            | Self::NoGpu { .. }
            | Self::NcclId { .. }
            | Self::BadNcclId { .. }
            | Self::NoNcclId { .. }
            | Self::NcclJoin { .. }
            | Self::NoCudaTraining { .. }
            | Self::GpuOpen { .. } => true,
            _ => false,
        }
    }

    /// The job the failure belongs to.
    pub fn job(&self) -> &JobId {
        match self {
            Self::NoSpec { job }
            | Self::InvalidSpec { job, .. }
            | Self::PathNotAllowed { job, .. }
            | Self::Dataset { job, .. }
            | Self::Join { job, .. }
            | Self::PeerCount { job, .. }
            | Self::Stages { job, .. }
            | Self::NoCuda { job }
            | Self::NoGpu { job, .. }
            | Self::NcclId { job, .. }
            | Self::BadNcclId { job, .. }
            | Self::NoNcclId { job, .. }
            | Self::NcclJoin { job, .. }
            | Self::NoCudaTraining { job, .. }
            | Self::GpuOpen { job, .. }
            | Self::Panicked { job, .. }
            | Self::NoCommand { job }
            | Self::CommandStart { job, .. }
            | Self::CommandWait { job, .. }
            | Self::CommandFailed { job, .. }
            | Self::Evaluation { job, .. } => job,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_failures_keep_their_messages_and_say_whether_to_retry() {
        let job = JobId::new("job-a");
        let lost = CollectiveError::PeerLost {
            peer: shoal_train::Peer::unnamed(1),
            op: shoal_train::Op::AllReduce,
            detail: "connection closed".into(),
        };
        let err = RunError::Join { job: job.clone(), rank: 0, link: Link::AllReduceRing, source: Box::new(lost) };
        assert_eq!(err.to_string(), "cannot join the all-reduce ring: rank 1 left the all-reduce (connection closed)");
        assert!(err.retryable());
        assert_eq!(err.job(), &job);
        let bad = RunError::InvalidSpec {
            job: job.clone(),
            errors: vec![FieldError::new("model.kind", "unknown"), FieldError::new("training.steps", "must be > 0")],
        };
        assert!(bad.to_string().starts_with("invalid job spec: model.kind"), "{bad}");
        assert!(bad.to_string().contains("; training.steps"), "{bad}");
        assert!(!bad.retryable());
    }
}
