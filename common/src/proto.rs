//! The generated `shoal.v1` protocol: messages, clients and servers.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("shoal.v1");

/// Encoded `FileDescriptorSet` of every Shoal proto file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/shoal_descriptor.bin"));

/// How the notice of a written checkpoint starts ("checkpoint at step 40: /path"); the
/// dashboard lists a job's checkpoints from these notices.
pub const CHECKPOINT_NOTICE: &str = "checkpoint at step ";

impl JobState {
    /// Finished for good: succeeded, failed or cancelled.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::Cancelled)
    }

    /// Lower-case name for people ("running").
    pub fn label(self) -> &'static str {
        match self {
            JobState::Unspecified => "unknown",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parses a lower-case state name as `label` writes it.
    pub fn from_label(label: &str) -> Option<Self> {
        [Self::Queued, Self::Running, Self::Succeeded, Self::Failed, Self::Cancelled]
            .into_iter()
            .find(|s| s.label() == label)
    }
}

impl WorkerState {
    /// Lower-case name for people ("ready").
    pub fn label(self) -> &'static str {
        match self {
            WorkerState::Unspecified => "unknown",
            WorkerState::Ready => "ready",
            WorkerState::Disconnected => "disconnected",
            WorkerState::Draining => "draining",
            WorkerState::Lost => "lost",
            WorkerState::Left => "left",
        }
    }
}
