//! NCCL all-reduce on a GPU (the `cuda` feature). CUDA and NCCL are loaded at run time, so this
//! compiles on machines without them; `available` says whether they load here. Gradients live on
//! the host in this build (candle's CPU backend), so each collective stages its buffer through
//! device memory. A collective that does not complete within the deadline aborts the communicator
//! instead of hanging.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use cudarc::nccl::safe::{Comm, Id, ReduceOp as NcclOp};
use shoal_train::{Collective, CollectiveError, ReduceOp};

/// Whether the CUDA driver and NCCL can be loaded on this machine.
pub fn available() -> bool {
    // SAFETY: both only try to open the shared libraries; nothing is called.
    unsafe { cudarc::driver::sys::is_culib_present() && cudarc::nccl::sys::is_culib_present() }
}

/// The id rank 0 creates and every rank needs to join the communicator.
pub struct UniqueId(Id);

impl UniqueId {
    pub fn new() -> Result<Self, String> {
        if !available() {
            return Err("NCCL cannot be loaded on this machine (is libnccl.so on LD_LIBRARY_PATH?)".into());
        }
        Id::new().map(Self).map_err(|e| format!("{e:?}"))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.internal().iter().map(|c| *c as u8).collect()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let raw: [u8; 128] = bytes.try_into().map_err(|_| format!("expected 128 bytes, got {}", bytes.len()))?;
        Ok(Self(Id::uninit(raw.map(|b| b as core::ffi::c_char))))
    }
}

/// One rank of an NCCL communicator.
pub struct Nccl {
    comm: Option<Comm>,
    stream: Arc<CudaStream>,
    device: Option<CudaSlice<f32>>,
    rank: usize,
    world: usize,
    timeout: Duration,
    broken: Option<CollectiveError>,
}

impl Nccl {
    /// Joins the communicator of `world` ranks as `rank`, on GPU `gpu`.
    pub fn new(gpu: usize, rank: usize, world: usize, id: UniqueId) -> Result<Self, String> {
        if !available() {
            return Err("NCCL cannot be loaded on this machine (is libnccl.so on LD_LIBRARY_PATH?)".into());
        }
        let ctx = CudaContext::new(gpu).map_err(|e| format!("cannot open GPU {gpu}: {e}"))?;
        let stream = ctx.default_stream();
        let comm = Comm::from_rank(stream.clone(), rank, world, id.0)
            .map_err(|e| format!("ncclCommInitRank failed: {e:?}"))?;
        Ok(Self { comm: Some(comm), stream, device: None, rank, world, timeout: Duration::from_secs(60), broken: None })
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    fn fail(&mut self, why: String) -> CollectiveError {
        // Dropping the communicator aborts it, releasing a collective stuck on a dead peer.
        self.comm = None;
        let err = CollectiveError(why);
        self.broken = Some(err.clone());
        err
    }

    /// Copies `buf` to the device, runs `op` on the device copy, waits (with the deadline) and
    /// copies the result back.
    fn staged(
        &mut self,
        buf: &mut [f32],
        what: &str,
        op: impl FnOnce(&Comm, &mut CudaSlice<f32>) -> Result<(), String>,
    ) -> Result<(), CollectiveError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        if buf.is_empty() {
            return Ok(());
        }
        if self.device.as_ref().is_none_or(|d| d.len() != buf.len()) {
            self.device = Some(
                self.stream
                    .alloc_zeros::<f32>(buf.len())
                    .map_err(|e| CollectiveError(format!("GPU allocation failed: {e}")))?,
            );
        }
        let (Some(comm), Some(device)) = (self.comm.as_ref(), self.device.as_mut()) else {
            return Err(CollectiveError("the NCCL communicator is closed".into()));
        };
        let staged = self
            .stream
            .memcpy_htod(buf, device)
            .map_err(|e| format!("copy to the GPU failed: {e}"))
            .and_then(|()| op(comm, device))
            .and_then(|()| self.stream.record_event(None).map_err(|e| format!("cannot record an event: {e}")));
        let event = match staged {
            Ok(ev) => ev,
            Err(e) => return Err(self.fail(format!("NCCL {what} failed on rank {}: {e}", self.rank))),
        };
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_micros(20);
        loop {
            match event.try_is_complete() {
                Ok(true) => break,
                Ok(false) if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
                Ok(false) => {
                    let t = self.timeout;
                    return Err(self.fail(format!(
                        "NCCL {what} did not complete within {t:?} on rank {}: another rank died or stalled",
                        self.rank
                    )));
                }
                Err(e) => return Err(self.fail(format!("NCCL {what} failed on rank {}: {e}", self.rank))),
            }
        }
        let Some(device) = self.device.as_ref() else { return Err(CollectiveError("no device buffer".into())) };
        if let Err(e) = self.stream.memcpy_dtoh(device, buf) {
            return Err(self.fail(format!("copy from the GPU failed: {e}")));
        }
        self.stream.synchronize().map_err(|e| CollectiveError(format!("CUDA synchronize failed: {e}")))
    }
}

impl Collective for Nccl {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn all_reduce(&mut self, buf: &mut [f32], op: ReduceOp) -> Result<(), CollectiveError> {
        let nccl_op = match op {
            ReduceOp::Sum => NcclOp::Sum,
            ReduceOp::Max => NcclOp::Max,
        };
        self.staged(buf, "all-reduce", |comm, device| {
            comm.all_reduce_in_place(device, &nccl_op).map(|_| ()).map_err(|e| format!("{e:?}"))
        })
    }

    fn broadcast(&mut self, buf: &mut [f32], root: usize) -> Result<(), CollectiveError> {
        self.staged(buf, "broadcast", |comm, device| {
            comm.broadcast_in_place(device, root as i32).map(|_| ()).map_err(|e| format!("{e:?}"))
        })
    }

    fn all_gather_u64(&mut self, value: u64) -> Result<Vec<u64>, CollectiveError> {
        // Same encoding as the ring: four exact 16-bit pieces per rank, summed.
        let mut buf = vec![0f32; 4 * self.world];
        for k in 0..4 {
            buf[4 * self.rank + k] = ((value >> (16 * k)) & 0xffff) as f32;
        }
        self.all_reduce(&mut buf, ReduceOp::Sum)?;
        Ok((0..self.world).map(|r| (0..4).fold(0u64, |acc, k| acc | ((buf[4 * r + k] as u64) << (16 * k)))).collect())
    }
}
