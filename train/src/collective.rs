//! The interface between the step loop and whatever keeps data-parallel ranks in step (a TCP ring,
//! NCCL). Implementations live with the worker; the loop only needs these operations, which every
//! rank must call in the same order.

/// Re-exported so that `collective::CollectiveError` keeps naming the failure of these operations.
pub use crate::error::CollectiveError;

/// How values from all ranks combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Max,
}

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

    /// The part of this collective that sums device memory where it lives (NCCL), if it has one.
    /// Host collectives (the TCP ring) have none.
    fn on_device(&mut self) -> Option<&mut dyn DeviceCollective> {
        None
    }
}

/// `len` contiguous `f32` values in the memory of one GPU, by address (a `CUdeviceptr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceSpan {
    pub ptr: u64,
    pub len: usize,
}

/// Sums in device memory, queued on a stream of the collective's own so that communication
/// overlaps the compute still queued on the training stream. Streams are passed by handle (a
/// `CUstream`; 0 is the context's default stream) because the backend that owns the training stream
/// and the collective are built separately. Every rank must queue the same sums in the same order.
pub trait DeviceCollective {
    /// Queues an in-place sum across ranks of every span, as one group, to start once the work
    /// queued so far on `compute` has finished. The spans must stay allocated, and nothing may
    /// read or write them, until [`DeviceCollective::finish`] returns.
    fn queue_sum(&mut self, spans: &[DeviceSpan], compute: u64) -> Result<(), CollectiveError>;

    /// Waits, within the collective's deadline, until every queued sum has completed, and makes
    /// `compute` wait for them too. A sum that misses the deadline aborts the communicator; the
    /// error names the rank.
    fn finish(&mut self, compute: u64) -> Result<(), CollectiveError>;
}

/// Parameters held by parameter servers: the step loop pushes gradients and pulls parameters;
/// the servers apply the optimizer. Every method fails with a message naming the server.
pub trait ParamStore {
    fn rank(&self) -> usize;

    fn world_size(&self) -> usize;

    /// Whether one step's exchange may overlap the next step's compute (async and ssp modes).
    fn overlaps(&self) -> bool;

    /// Rank 0 seeds the servers with `params`, or makes them load the state saved in `resume`.
    fn init(
        &mut self,
        params: &[f32],
        total_steps: u64,
        resume: Option<&std::path::Path>,
    ) -> Result<(), CollectiveError>;

    /// Fills `params` with the parameters for taking `step` (waiting as the mode requires).
    fn pull(&mut self, step: u64, params: &mut [f32]) -> Result<(), CollectiveError>;

    /// Pushes the gradient of `step`, computed on the parameters pulled last.
    fn push(&mut self, step: u64, grads: &[f32]) -> Result<(), CollectiveError>;

    /// Starts pushing `step`'s gradient and pulling the parameters for `step + 1` in the background.
    fn start_exchange(&mut self, step: u64, grads: Vec<f32>) -> Result<(), CollectiveError>;

    /// Waits for background exchanges until at most `keep` are still in flight; writes the
    /// parameters of the newest finished one into `params`. False when none finished.
    fn finish_exchange(&mut self, params: &mut [f32], keep: usize) -> Result<bool, CollectiveError>;

    /// Saves every shard's state (values, optimizer moments, clocks) into a checkpoint directory.
    fn save(&mut self, dir: &std::path::Path) -> Result<(), CollectiveError>;

    /// Counters since the previous call, as (name, value): pushes/s, bytes/s, staleness.
    fn take_metrics(&mut self) -> Vec<(String, f64)>;
}
