//! NCCL all-reduce on a GPU (the `cuda` feature). CUDA and NCCL are loaded at run time, so this
//! compiles on machines without them; `available` says whether they load here. Gradients live on
//! the host in this build (candle's CPU backend), so each collective stages its buffer through
//! device memory. A collective that does not complete within the deadline aborts the communicator
//! instead of hanging.

use std::ffi::CStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use cudarc::nccl::result::NcclError;
use cudarc::nccl::safe::{Comm, Id, ReduceOp as NcclOp};
use shoal_train::{Collective, CollectiveError, Op, ReduceOp};

/// Whether the CUDA driver and NCCL can be loaded on this machine.
pub fn available() -> bool {
    // SAFETY: both only try to open the shared libraries; nothing is called.
    unsafe { cudarc::driver::sys::is_culib_present() && cudarc::nccl::sys::is_culib_present() }
}

/// An NCCL result code, shown with NCCL's own description (cudarc's error type has none).
#[derive(Debug)]
struct NcclCode(NcclError);

impl std::fmt::Display for NcclCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SAFETY: a code came back from NCCL, so the library is loaded; ncclGetErrorString returns
        // a pointer to a static NUL-terminated string (or null).
        let text = unsafe { cudarc::nccl::sys::ncclGetErrorString(self.0.0) };
        if text.is_null() {
            return write!(f, "NCCL error code {}", self.0.0 as u32);
        }
        // SAFETY: non-null, NUL-terminated and static (see above).
        write!(f, "{}", unsafe { CStr::from_ptr(text) }.to_string_lossy())
    }
}

impl std::error::Error for NcclCode {}

fn nccl_failed(rank: usize, call: &'static str) -> impl FnOnce(NcclError) -> CollectiveError {
    move |e| CollectiveError::Nccl { rank, call, source: Arc::new(NcclCode(e)) }
}

fn cuda_failed(rank: usize, action: &'static str) -> impl FnOnce(cudarc::driver::DriverError) -> CollectiveError {
    move |e| CollectiveError::Cuda { rank, action, source: Arc::new(e) }
}

/// The id rank 0 creates and every rank needs to join the communicator.
pub struct UniqueId(Id);

impl UniqueId {
    pub fn new() -> Result<Self, CollectiveError> {
        if !available() {
            return Err(CollectiveError::NcclUnavailable);
        }
        Id::new().map(Self).map_err(nccl_failed(0, "ncclGetUniqueId"))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.internal().iter().map(|c| *c as u8).collect()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CollectiveError> {
        let raw: [u8; 128] = bytes.try_into().map_err(|_| CollectiveError::BadNcclId { len: bytes.len() })?;
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
    pub fn new(gpu: usize, rank: usize, world: usize, id: UniqueId) -> Result<Self, CollectiveError> {
        if !available() {
            return Err(CollectiveError::NcclUnavailable);
        }
        let ctx = CudaContext::new(gpu).map_err(|e| CollectiveError::OpenGpu { gpu, source: Arc::new(e) })?;
        let stream = ctx.default_stream();
        let comm = Comm::from_rank(stream.clone(), rank, world, id.0).map_err(nccl_failed(rank, "ncclCommInitRank"))?;
        Ok(Self { comm: Some(comm), stream, device: None, rank, world, timeout: Duration::from_secs(60), broken: None })
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    fn fail(&mut self, err: CollectiveError) -> CollectiveError {
        // Dropping the communicator aborts it, releasing a collective stuck on a dead peer.
        self.comm = None;
        self.broken = Some(err.clone());
        err
    }

    /// Copies `buf` to the device, runs `op` on the device copy, waits (with the deadline) and
    /// copies the result back.
    fn staged(
        &mut self,
        buf: &mut [f32],
        what: Op,
        op: impl FnOnce(&Comm, &mut CudaSlice<f32>) -> Result<(), CollectiveError>,
    ) -> Result<(), CollectiveError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        if buf.is_empty() {
            return Ok(());
        }
        let rank = self.rank;
        let mut device = match self.device.take() {
            Some(d) if d.len() == buf.len() => d,
            _ => self.stream.alloc_zeros::<f32>(buf.len()).map_err(cuda_failed(rank, "GPU allocation"))?,
        };
        let Some(comm) = self.comm.as_ref() else {
            return Err(CollectiveError::NcclClosed { rank });
        };
        let staged = self
            .stream
            .memcpy_htod(buf, &mut device)
            .map_err(cuda_failed(rank, "copy to the GPU"))
            .and_then(|()| op(comm, &mut device))
            .and_then(|()| self.stream.record_event(None).map_err(cuda_failed(rank, "recording a CUDA event")));
        let event = match staged {
            Ok(ev) => ev,
            Err(e) => return Err(self.fail(e)),
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
                    return Err(self.fail(CollectiveError::NcclTimeout { rank, op: what, waited: self.timeout }));
                }
                Err(e) => return Err(self.fail(cuda_failed(rank, "waiting for the collective")(e))),
            }
        }
        if let Err(e) = self.stream.memcpy_dtoh(&device, buf) {
            return Err(self.fail(cuda_failed(rank, "copy from the GPU")(e)));
        }
        self.device = Some(device);
        self.stream.synchronize().map_err(cuda_failed(rank, "CUDA synchronize"))
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
        let rank = self.rank;
        self.staged(buf, Op::AllReduce, |comm, device| {
            comm.all_reduce_in_place(device, &nccl_op).map(|_| ()).map_err(nccl_failed(rank, "all-reduce"))
        })
    }

    fn broadcast(&mut self, buf: &mut [f32], root: usize) -> Result<(), CollectiveError> {
        let rank = self.rank;
        self.staged(buf, Op::Broadcast, |comm, device| {
            comm.broadcast_in_place(device, root as i32).map(|_| ()).map_err(nccl_failed(rank, "broadcast"))
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
