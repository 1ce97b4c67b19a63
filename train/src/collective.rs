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

    /// Every rank's `bytes`, in rank order: the lengths are gathered, then each rank broadcasts
    /// its bytes in turn, three to an `f32` (integers below 2^24 are exact in one, and a
    /// broadcast only copies them).
    fn all_gather_bytes(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, CollectiveError> {
        let lengths = self.all_gather_u64(bytes.len() as u64)?;
        let me = self.rank();
        let mut out = Vec::with_capacity(lengths.len());
        for (root, &len) in lengths.iter().enumerate() {
            if root == me {
                let mut buf = pack(bytes);
                self.broadcast(&mut buf, root)?;
                out.push(bytes.to_vec());
            } else {
                let mut buf = vec![0f32; (len as usize).div_ceil(3)];
                self.broadcast(&mut buf, root)?;
                out.push(unpack(&buf, len as usize));
            }
        }
        Ok(out)
    }
}

/// Bytes as `f32` integers, three bytes to a value.
fn pack(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks(3).map(|c| c.iter().rev().fold(0u32, |v, &b| v << 8 | u32::from(b)) as f32).collect()
}

/// The first `len` bytes of values packed by [`pack`].
fn unpack(values: &[f32], len: usize) -> Vec<u8> {
    let mut out: Vec<u8> = values.iter().flat_map(|&v| (v as u32).to_le_bytes().into_iter().take(3)).collect();
    out.truncate(len);
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_survive_packing_into_f32() {
        for len in [0, 1, 2, 3, 4, 5, 300] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 89 + 255) as u8).collect();
            assert_eq!(unpack(&pack(&bytes), len), bytes, "{len} bytes");
        }
        assert_eq!(pack(&[0xff, 0xff, 0xff]), vec![16_777_215.0]);
    }
}
