//! Errors of the training engine: [`TrainError`] for a run, and [`CollectiveError`] for the
//! operations that keep ranks in step. This module depends on nothing else in the crate.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What a collective error was caused by, shareable because a broken link hands the same error to
/// every later call.
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// The dataset could not be loaded or does not match the spec; `field` is the spec path.
    #[error("{field}: {reason}")]
    Dataset { field: String, reason: String },
    /// The job's feature transforms could not be fitted on its training split.
    #[error("{}", transforms_message(source))]
    Transforms {
        #[source]
        source: shoal_analysis::AnalysisError,
    },
    /// The model does not fit the data (for example a CNN on data without an image shape).
    #[error("model.{field}: {reason}")]
    Shape { field: String, reason: String },
    /// A checkpoint could not be written or read.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint { path: PathBuf, reason: String },
    /// The loss became NaN or infinite.
    #[error("distill.teacher {}: {reason}", path.display())]
    Teacher { path: PathBuf, reason: String },

    #[error("quantize {}: {reason}", path.display())]
    Quantize { path: PathBuf, reason: String },

    #[error("training diverged at step {step}: loss is {loss}")]
    Diverged { step: u64, loss: f64 },
    /// The background data loader's thread could not be started.
    #[error("data loader failed: cannot start the loader thread: {source}")]
    LoaderSpawn {
        #[source]
        source: std::io::Error,
    },
    /// The background data loader ended before the run took its last batch.
    #[error("data loader failed: the loader thread stopped early")]
    LoaderStopped,
    /// A flat parameter vector (from a peer or a parameter server) is shorter than the model.
    #[error("parameter vector too short: {len} values, the model needs at least {needed}")]
    ParamVector { needed: usize, len: usize },
    /// The run was cancelled or interrupted where its caller needed it to complete.
    #[error("the run stopped before its last step")]
    StoppedEarly,
    /// A collective operation with the other ranks failed; the message names the culprit.
    #[error(transparent)]
    Collective(#[from] CollectiveError),
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

    /// Whether the job may succeed when restarted (from its checkpoint, perhaps elsewhere): true
    /// for failures of peers and links, false for failures of the job itself.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Collective(e) if e.retryable())
    }
}

/// A fitting error as the job file's field: those naming a transform (`dataset.transforms[1]...`)
/// as they are, the others (about the data as a whole) under `dataset.transforms`.
fn transforms_message(e: &shoal_analysis::AnalysisError) -> String {
    let text = e.to_string();
    if text.starts_with(shoal_analysis::reduce::TRANSFORMS_FIELD) {
        text
    } else {
        format!("{}: fitting on the training split: {text}", shoal_analysis::reduce::TRANSFORMS_FIELD)
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// One rank of a job, as the others name it: `rank 2 (worker w-2 on host-a)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub rank: usize,
    /// Empty when only the rank is known.
    pub worker: String,
    pub host: String,
}

impl Peer {
    /// A rank known by number only.
    pub fn unnamed(rank: usize) -> Self {
        Self { rank, worker: String::new(), host: String::new() }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.worker.is_empty() {
            write!(f, "rank {}", self.rank)
        } else {
            write!(f, "rank {} (worker {} on {})", self.rank, self.worker, self.host)
        }
    }
}

/// One parameter-server shard and the server holding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardServer {
    pub shard: u32,
    pub node: String,
    pub host: String,
    pub addr: String,
}

impl std::fmt::Display for ShardServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "parameter server shard {} ({} on {} at {})", self.shard, self.node, self.host, self.addr)
    }
}

/// The exchange during which a collective failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    AllReduce,
    Broadcast,
    /// Activations and gradients between neighbouring pipeline stages.
    Pipeline,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Self::AllReduce => "all-reduce",
            Self::Broadcast => "broadcast",
            Self::Pipeline => "pipeline",
        }
    }

    /// " the all-reduce", as in "failed the all-reduce"; nothing for a pipeline link, whose
    /// errors name only the neighbour.
    fn object(self) -> String {
        match self {
            Self::Pipeline => String::new(),
            op => format!(" the {}", op.name()),
        }
    }

    /// " during the all-reduce"; nothing for a pipeline link.
    fn during(self) -> String {
        match self {
            Self::Pipeline => String::new(),
            op => format!(" during the {}", op.name()),
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a parameter server failed a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsFault {
    Unreachable,
    NoAnswer,
    Refused,
}

impl std::fmt::Display for PsFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unreachable => "is unreachable",
            Self::NoAnswer => "did not answer in time",
            Self::Refused => "refused the request",
        })
    }
}

/// A collective failed. Every variant names the rank (and worker), server or stage at fault, so
/// that every rank reports the same culprit.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CollectiveError {
    /// No link could be opened to `peer`.
    #[error("cannot connect to {peer} at {addr}: {source}")]
    Connect { peer: Peer, addr: String, source: Cause },
    /// `peer` did not open its link to this rank in time.
    #[error("{peer} did not connect within {timeout:?}: {source}")]
    Accept { peer: Peer, timeout: Duration, source: Cause },
    /// An opened link to `peer` could not be configured.
    #[error("cannot set up the link to {peer}: {source}")]
    LinkSetup { peer: Peer, source: Cause },
    /// The link to `peer` broke: it died or closed.
    #[error("{peer} left the {op} ({detail})")]
    PeerLost { peer: Peer, op: Op, detail: String },
    /// `peer` sent nothing, not even a keep-alive, for `waited`.
    #[error("{peer} sent nothing for {:.0}s{} (dead, stalled or unreachable)", waited.as_secs_f64(), op.during())]
    Timeout { peer: Peer, op: Op, waited: Duration },
    /// `peer` stopped reading what this rank sends.
    #[error("{peer} stopped reading for {:.0}s (stalled)", waited.as_secs_f64())]
    Stalled { peer: Peer, waited: Duration },
    /// `peer` keeps its link alive but sends no data.
    #[error("{peer} is alive but sent no pipeline data for {:.0}s", waited.as_secs_f64())]
    Idle { peer: Peer, waited: Duration },
    /// Another rank broke the collective and said why; `by` is the culprit it named (for a
    /// pipeline, the neighbour that relayed the abort).
    #[error("{by} failed{}: {reason}", op.object())]
    Aborted { by: Peer, op: Op, reason: String },
    /// This rank itself could not go on (a local error or a protocol violation on its links).
    #[error("{me} could not finish the {op}: {detail}")]
    Local { me: Peer, op: Op, detail: String },
    /// A pipeline stage asked for a neighbour it does not have.
    #[error("stage {} of {stages} has no {side} neighbour", stage + 1)]
    NoNeighbour { stage: usize, stages: usize, side: &'static str },
    /// Pipeline stages disagree on what comes next.
    #[error("pipeline protocol error: {detail}")]
    Protocol { detail: String },
    /// A parameter server failed a call.
    #[error("{server} {fault}: {detail}")]
    ParamServer { server: ShardServer, fault: PsFault, detail: String },
    /// A parameter server did not accept a connection in time.
    #[error("{server} did not accept a connection within {timeout:?}")]
    PsConnectTimeout { server: ShardServer, timeout: Duration },
    /// A parameter server's address or TLS settings are unusable.
    #[error("{server}: {detail}")]
    PsEndpoint { server: ShardServer, detail: String },
    /// A parameter server sent a malformed chunk.
    #[error("{server}: {detail}")]
    PsChunk { server: ShardServer, detail: String },
    /// A parameter server holds a shard of another size than this worker laid out.
    #[error("{server} holds {holds} values, this worker expects {expects}")]
    PsShardSize { server: ShardServer, holds: u64, expects: usize },
    /// The model's parameter count changed after the shards were laid out.
    #[error("the model has {len} parameters, not the {before} laid out before")]
    PsLayout { len: usize, before: usize },
    /// The assignment named no parameter-server shards.
    #[error("the job has no parameter-server shards")]
    NoShards,
    /// The parameter-server client's runtime could not start.
    #[error("cannot start the parameter-server client: {source}")]
    PsRuntime { source: Cause },
    /// A background exchange task died.
    #[error("{task} task failed: {source}")]
    Task { task: &'static str, source: Cause },
    /// CUDA or NCCL cannot be loaded on this machine.
    #[error("NCCL cannot be loaded on this machine (is libnccl.so on LD_LIBRARY_PATH?)")]
    NcclUnavailable,
    /// A GPU could not be opened.
    #[error("cannot open GPU {gpu}: {source}")]
    OpenGpu { gpu: usize, source: Cause },
    /// A CUDA call around a collective failed.
    #[error("{action} failed on rank {rank}: {source}")]
    Cuda { rank: usize, action: &'static str, source: Cause },
    /// An NCCL call failed (`call` is the NCCL operation).
    #[error("NCCL {call} failed on rank {rank}: {source}")]
    Nccl { rank: usize, call: &'static str, source: Cause },
    /// An NCCL collective did not complete in time; the communicator was aborted.
    #[error("NCCL {op} did not complete within {waited:?} on rank {rank}: another rank died or stalled")]
    NcclTimeout { rank: usize, op: Op, waited: Duration },
    /// The NCCL communicator was closed by an earlier failure.
    #[error("the NCCL communicator is closed")]
    NcclClosed { rank: usize },
    /// A relayed NCCL unique id has the wrong size.
    #[error("expected 128 bytes, got {len}")]
    BadNcclId { len: usize },
}

impl CollectiveError {
    /// Whether restarting the job (from its checkpoint, on the same or other workers) can help:
    /// true when a peer, link or server failed, false when the job's own set-up is at fault.
    pub fn retryable(&self) -> bool {
        !matches!(self, Self::NoNeighbour { .. } | Self::Protocol { .. } | Self::PsLayout { .. } | Self::NoShards)
    }

    /// The rank named as the cause, where one is.
    pub fn culprit(&self) -> Option<&Peer> {
        match self {
            Self::Connect { peer, .. }
            | Self::Accept { peer, .. }
            | Self::LinkSetup { peer, .. }
            | Self::PeerLost { peer, .. }
            | Self::Timeout { peer, .. }
            | Self::Stalled { peer, .. }
            | Self::Idle { peer, .. } => Some(peer),
            Self::Aborted { by, .. } => Some(by),
            Self::Local { me, .. } => Some(me),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(rank: usize) -> Peer {
        Peer { rank, worker: format!("w{rank}"), host: "h".into() }
    }

    #[test]
    fn messages_name_the_culprit_as_before() {
        let waited = Duration::from_secs(10);
        let cases = [
            (
                CollectiveError::Timeout { peer: peer(1), op: Op::AllReduce, waited },
                "rank 1 (worker w1 on h) sent nothing for 10s during the all-reduce (dead, stalled or unreachable)",
            ),
            (
                CollectiveError::Timeout { peer: peer(1), op: Op::Pipeline, waited },
                "rank 1 (worker w1 on h) sent nothing for 10s (dead, stalled or unreachable)",
            ),
            (
                CollectiveError::Aborted { by: peer(2), op: Op::Broadcast, reason: "x".into() },
                "rank 2 (worker w2 on h) failed the broadcast: x",
            ),
            (
                CollectiveError::Aborted { by: peer(2), op: Op::Pipeline, reason: "x".into() },
                "rank 2 (worker w2 on h) failed: x",
            ),
            (
                CollectiveError::PeerLost {
                    peer: Peer::unnamed(3),
                    op: Op::Pipeline,
                    detail: "connection closed".into(),
                },
                "rank 3 left the pipeline (connection closed)",
            ),
            (CollectiveError::NoNeighbour { stage: 0, stages: 2, side: "Prev" }, "stage 1 of 2 has no Prev neighbour"),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn peer_failures_are_retryable_set_up_errors_are_not() {
        let lost = CollectiveError::PeerLost { peer: peer(1), op: Op::AllReduce, detail: "gone".into() };
        assert!(lost.retryable());
        assert_eq!(lost.culprit().map(|p| p.rank), Some(1));
        assert!(TrainError::from(lost).retryable());
        assert!(!CollectiveError::Protocol { detail: "x".into() }.retryable());
        assert!(!TrainError::Diverged { step: 1, loss: f64::NAN }.retryable());
    }
}
