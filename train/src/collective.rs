//! The interface between the step loop and whatever keeps data-parallel ranks in step (a TCP ring,
//! NCCL). Implementations live with the worker; the loop only needs these operations, which every
//! rank must call in the same order.

/// How values from all ranks combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Max,
}

/// A collective failed. The message names the rank (and its worker) that caused it, so that every
/// rank reports the same culprit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CollectiveError(pub String);

/// Not `Send`: an NCCL communicator must stay on the thread that created it, and so must this.
pub trait Collective {
    fn rank(&self) -> usize;

    fn world_size(&self) -> usize;

    /// Combines `buf` element-wise across ranks; every rank ends with the same bits.
    fn all_reduce(&mut self, buf: &mut [f32], op: ReduceOp) -> Result<(), CollectiveError>;

    /// Copies `buf` of rank `root` to every rank.
    fn broadcast(&mut self, buf: &mut [f32], root: usize) -> Result<(), CollectiveError>;

    /// Every rank's `value`, in rank order.
    fn all_gather_u64(&mut self, value: u64) -> Result<Vec<u64>, CollectiveError>;
}
