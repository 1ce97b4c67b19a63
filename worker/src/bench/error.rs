//! What can stop a benchmark, with the messages that `shoal bench` shows on stderr.

use shoal_train::{CollectiveError, TrainError};

/// A benchmark that could not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A `--sizes` entry that is not a positive size such as `4K`, `1M` or `16MiB`.
    #[error("bad size `{token}`")]
    BadSize { token: String },
    /// The data plane could not listen on loopback.
    #[error("cannot bind the data plane: {source}")]
    Bind { source: std::io::Error },
    /// The line of every rank's address could not be read from stdin.
    #[error("cannot read the peer list: {source}")]
    PeerList { source: std::io::Error },
    /// The peer list names another number of ranks than this run has; `role` is `peer` or `stage`.
    #[error("expected {expected} {role} addresses, got {got}")]
    PeerCount { role: &'static str, expected: usize, got: usize },
    /// A reference workload's job file does not parse or validate: a bug in `workloads`.
    #[error("bad reference spec {workload}: {reason}")]
    Workload { workload: &'static str, reason: String },
    /// A collective with the other ranks (or the parameter servers) failed; it names the peer.
    #[error(transparent)]
    Collective(#[from] CollectiveError),
    /// The training run failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// The training run of `rank` returned before its last step, although nothing asks it to stop.
    #[error("the benchmark run stopped early")]
    StoppedEarly { rank: usize },
    /// Stage `rank`'s summary has no pipeline statistics.
    #[error("no stage statistics")]
    NoStageStats { rank: usize },
    /// The device-resident all-reduce ran without a GPU backend or without a collective that sums
    /// device memory.
    #[error("the device-resident all-reduce needs a GPU backend and NCCL")]
    NotOnDevice,
    /// A flag's value is not one it takes; `expected` lists what it does take.
    #[error("{flag} `{value}`: expected {expected}")]
    BadFlag { flag: &'static str, value: String, expected: &'static str },
    /// `--backend nccl` or `--device cuda` on a worker built without the `cuda` feature.
    #[cfg(not(feature = "cuda"))]
    #[error("this shoal-worker was built without the `cuda` feature")]
    NoCuda,
    /// GPU `ordinal` could not be opened for training (no driver, cuBLAS or NVRTC, no such GPU).
    #[cfg(feature = "cuda")]
    #[error("cannot open GPU {ordinal}: {source}")]
    Gpu {
        ordinal: usize,
        #[source]
        source: shoal_train::backend::cuda::GpuError,
    },
    /// Two checkpoints that should hold the same model do not: a tensor is missing from one of
    /// them or has another shape.
    #[error("checkpoints differ in layout at `{tensor}`: {reason}")]
    Layout { tensor: String, reason: String },
    /// A tensor of a checkpoint could not be read back as f32 values.
    #[error("cannot read tensor `{tensor}`: {source}")]
    Tensor {
        tensor: String,
        #[source]
        source: candle_core::Error,
    },
    /// A run that should have written a checkpoint did not.
    #[error("the {what} run wrote no checkpoint")]
    NoCheckpoint { what: String },
    /// The scratch folder of a benchmark could not be made.
    #[error("cannot create a scratch folder: {source}")]
    Scratch { source: std::io::Error },
    /// A data file of a benchmark could not be written.
    #[error("cannot write {path}: {source}")]
    Write { path: std::path::PathBuf, source: std::io::Error },
    /// A command the benchmark times failed.
    #[error("`{command}` failed: {reason}")]
    Command { command: String, reason: String },
    /// NCCL could not set up the communicator of `rank`.
    #[cfg(feature = "cuda")]
    #[error("{reason}")]
    Nccl { rank: usize, reason: String },
}
