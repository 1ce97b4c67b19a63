//! Parameter-server errors and their one mapping to gRPC statuses.

use std::fmt;
use std::time::Duration;

use shoal_common::spec::FieldError;
use tonic::Status;

use crate::checkpoint::CheckpointError;
use crate::key::ShardId;
use crate::shard::ShardError;

/// Everything a push, pull, init or save can refuse, and why a node cannot join its coordinator.
#[derive(Debug, thiserror::Error)]
pub enum ParamServerError {
    /// A streamed call (`init`, `push`) whose first message never came.
    #[error("{call}: empty stream")]
    EmptyStream { call: &'static str },
    #[error("{field}: required")]
    MissingField { field: &'static str },
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: &'static str },
    #[error("invalid job spec: {} field(s)", fields.len())]
    InvalidSpec { fields: Vec<FieldError> },
    /// A chunk that does not fit the tensor it belongs to.
    #[error("{reason}")]
    BadChunk { shard: ShardId, reason: String },
    #[error("{shard}: the shard has {expected} values but the push has {got}")]
    PushSize { shard: ShardId, expected: usize, got: usize },
    #[error("job {} has finished ({reason}); {shard} is gone", shard.job_id)]
    JobEnded { shard: ShardId, reason: String },
    #[error("this parameter server holds no {shard}")]
    NoShard { shard: ShardId },
    #[error("no {shard} was created within {waited:?}")]
    NotCreated { shard: ShardId, waited: Duration },
    #[error("{shard}: {source}")]
    Shard { shard: ShardId, source: ShardError },
    #[error("{shard}: {blocked}; waited {waited:?}")]
    PullTimedOut { shard: ShardId, blocked: Blocked, waited: Duration },
    #[error("cannot resume {shard} from its checkpoint: {source}")]
    Resume { shard: ShardId, source: Box<CheckpointError> },
    #[error("cannot save the shard: {source}")]
    Save { shard: ShardId, source: Box<CheckpointError> },
    /// The blocking task that writes a shard's state panicked or was cancelled.
    #[error("{source}")]
    SaveTask { shard: ShardId, source: tokio::task::JoinError },
    /// The push/pull address could not be bound.
    #[error("{source}")]
    Listen { addr: String, source: std::io::Error },
    /// The push/pull endpoint's TLS settings were refused.
    #[error("tls: {source}")]
    ServerTls { source: tonic::transport::Error },
    /// TLS towards the coordinator could not be set up.
    #[error("{reason}")]
    CoordinatorTls { reason: String },
    /// The coordinator refused to register this node (for good: retrying cannot help).
    #[error("{reason}")]
    Refused { coordinator: String, reason: String },
}

/// Why a pull could not be granted: the slowest worker is too far behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// The pulling worker's rank and the step it wants to take.
    pub worker: u32,
    pub step: u64,
    /// The slowest worker's rank and how many steps it has pushed.
    pub slowest: usize,
    pub clock: u64,
    /// How far ahead a worker may run (stale-synchronous mode), if bounded that way.
    pub staleness: Option<u64>,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { worker, step, slowest, clock, staleness } = self;
        match staleness {
            Some(staleness) => write!(
                f,
                "worker rank {slowest} has pushed only {clock} steps, and rank {worker} may not take step {step} \
                 more than {staleness} ahead of it"
            ),
            None => write!(f, "worker rank {slowest} has pushed only {clock} steps, so step {step} cannot be taken"),
        }
    }
}

impl From<ParamServerError> for Status {
    fn from(e: ParamServerError) -> Self {
        use ParamServerError as E;
        match &e {
            E::InvalidSpec { fields } => shoal_common::status::invalid_fields(fields),
            E::EmptyStream { .. }
            | E::MissingField { .. }
            | E::InvalidField { .. }
            | E::BadChunk { .. }
            | E::PushSize { .. }
            | E::Shard { source: ShardError::WrongSize { .. } | ShardError::UnknownWorker { .. }, .. } => {
                Status::invalid_argument(e.to_string())
            }
            E::NoShard { .. } | E::NotCreated { .. } => Status::not_found(e.to_string()),
            E::JobEnded { .. }
            | E::Resume { .. }
            | E::Shard { source: ShardError::NotInitialised | ShardError::Finished { .. }, .. } => {
                Status::failed_precondition(e.to_string())
            }
            E::PullTimedOut { .. } => Status::deadline_exceeded(e.to_string()),
            E::Save { .. } => Status::unavailable(e.to_string()),
            // The rest concern starting the node, never a request; they map for completeness.
            E::SaveTask { .. } | E::Listen { .. } | E::ServerTls { .. } | E::CoordinatorTls { .. } => {
                Status::internal(e.to_string())
            }
            E::Refused { .. } => Status::failed_precondition(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn shard() -> ShardId {
        ShardId { job_id: "job-p".into(), attempt: 1, shard: 7 }
    }

    fn status(e: ParamServerError) -> (Code, String) {
        let s = Status::from(e);
        (s.code(), s.message().to_owned())
    }

    #[test]
    fn statuses_keep_their_codes_and_messages() {
        let at = "shard 7 of job job-p (attempt 1)";
        assert_eq!(
            status(ParamServerError::MissingField { field: "key" }),
            (Code::InvalidArgument, "key: required".into())
        );
        assert_eq!(
            status(ParamServerError::NoShard { shard: shard() }),
            (Code::NotFound, format!("this parameter server holds no {at}"))
        );
        assert_eq!(
            status(ParamServerError::JobEnded { shard: shard(), reason: "succeeded".into() }),
            (Code::FailedPrecondition, format!("job job-p has finished (succeeded); {at} is gone"))
        );
        let wrong = ShardError::WrongSize { expected: 4, got: 3 };
        assert_eq!(
            status(ParamServerError::Shard { shard: shard(), source: wrong }),
            (Code::InvalidArgument, format!("{at}: shard has 4 values but the push has 3"))
        );
        let early = ShardError::NotInitialised;
        assert_eq!(status(ParamServerError::Shard { shard: shard(), source: early }).0, Code::FailedPrecondition);
        let blocked = Blocked { worker: 0, step: 6, slowest: 1, clock: 3, staleness: Some(2) };
        let waited = Duration::from_secs(1);
        assert_eq!(
            status(ParamServerError::PullTimedOut { shard: shard(), blocked, waited }),
            (
                Code::DeadlineExceeded,
                format!(
                    "{at}: worker rank 1 has pushed only 3 steps, and rank 0 may not take step 6 more than 2 ahead \
                     of it; waited 1s"
                )
            )
        );
        let blocked = Blocked { worker: 0, step: 6, slowest: 1, clock: 3, staleness: None };
        assert_eq!(
            status(ParamServerError::PullTimedOut { shard: shard(), blocked, waited }).1,
            format!("{at}: worker rank 1 has pushed only 3 steps, so step 6 cannot be taken; waited 1s")
        );
    }
}
