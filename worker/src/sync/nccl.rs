//! NCCL all-reduce on a GPU (the `cuda` feature). CUDA and NCCL are loaded at run time, so this
//! compiles on machines without them; `available` says whether they load here. Gradients of a
//! rank training on its GPU are summed where they live, bucket by bucket on a communication stream
//! while backward runs; host buffers are staged through device memory. A collective that does not
//! complete within the deadline aborts the communicator instead of hanging.

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr};
use cudarc::nccl::result::{self as nccl_result, NcclError, NcclStatus};
use cudarc::nccl::safe::Id;
use cudarc::nccl::sys as nccl_sys;
use shoal_train::{Collective, CollectiveError, DeviceCollective, DeviceSpan, Op, ReduceOp};

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

/// An NCCL communicator by handle. Dropping it aborts it, which also releases a collective stuck
/// on a dead peer (an abort that fails leaves nothing more to do, so its result is ignored).
struct RawComm(nccl_sys::ncclComm_t);

impl Drop for RawComm {
    fn drop(&mut self) {
        // SAFETY: the handle came from ncclCommInitRank and is aborted exactly once, here.
        let _ = unsafe { nccl_result::comm_abort(self.0) };
    }
}

/// One rank of an NCCL communicator, with a communication stream of its own. Host buffers (the
/// parameter broadcast, evaluation sums, checksums) are staged through device memory; gradients
/// that already live on the GPU are summed in place, queued while backward runs
/// ([`DeviceCollective`]).
pub struct Nccl {
    comm: Option<RawComm>,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    staging: Option<CudaSlice<f32>>,
    rank: usize,
    world: usize,
    timeout: Duration,
    broken: Option<CollectiveError>,
    /// Device sums queued since the last [`DeviceCollective::finish`].
    pending: usize,
}

impl Nccl {
    /// Joins the communicator of `world` ranks as `rank`, on GPU `gpu`.
    pub fn new(gpu: usize, rank: usize, world: usize, id: UniqueId) -> Result<Self, CollectiveError> {
        if !available() {
            return Err(CollectiveError::NcclUnavailable);
        }
        let open = |e| CollectiveError::OpenGpu { gpu, source: Arc::new(e) };
        let ctx = CudaContext::new(gpu).map_err(open)?;
        let stream = ctx.new_stream().map_err(open)?;
        let int = |v: usize| i32::try_from(v).map_err(|_| CollectiveError::Protocol { detail: format!("{v} ranks") });
        let raw_id = nccl_sys::ncclUniqueId { internal: *id.0.internal() };
        let mut comm = MaybeUninit::uninit();
        // SAFETY: the context is current on this thread (new_stream bound it); `comm` is written
        // by NCCL before it is read.
        let comm = unsafe {
            nccl_result::comm_init_rank(comm.as_mut_ptr(), int(world)?, raw_id, int(rank)?)
                .map_err(nccl_failed(rank, "ncclCommInitRank"))?;
            comm.assume_init()
        };
        Ok(Self {
            comm: Some(RawComm(comm)),
            ctx,
            stream,
            staging: None,
            rank,
            world,
            timeout: Duration::from_secs(60),
            broken: None,
            pending: 0,
        })
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

    /// The live communicator, or why there is none.
    fn comm(&self) -> Result<nccl_sys::ncclComm_t, CollectiveError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        self.comm.as_ref().map(|c| c.0).ok_or(CollectiveError::NcclClosed { rank: self.rank })
    }

    /// Queues one NCCL call on the communication stream.
    fn call(
        &self,
        what: &'static str,
        f: impl FnOnce(nccl_sys::ncclComm_t, nccl_sys::cudaStream_t) -> Result<NcclStatus, NcclError>,
    ) -> Result<(), CollectiveError> {
        let comm = self.comm()?;
        f(comm, self.stream.cu_stream() as nccl_sys::cudaStream_t).map(|_| ()).map_err(nccl_failed(self.rank, what))
    }

    /// Queues an in-place `op` over `len` f32 values of device memory at `ptr` on the
    /// communication stream. The memory must stay allocated and untouched until the wait.
    fn reduce_in_place(&self, ptr: u64, len: usize, op: nccl_sys::ncclRedOp_t) -> Result<(), CollectiveError> {
        self.call("all-reduce", |comm, stream| {
            let p = ptr as *mut std::ffi::c_void;
            // SAFETY: `ptr` is live device memory of this GPU holding `len` values, which nothing
            // else reads or writes before the wait (the callers' contract).
            unsafe { nccl_result::all_reduce(p, p, len, nccl_sys::ncclDataType_t::ncclFloat32, op, comm, stream) }
        })
    }

    /// Waits on the host, within the deadline, for the work queued so far on the communication
    /// stream; a miss aborts the communicator.
    fn wait(&mut self, what: Op) -> Result<(), CollectiveError> {
        let rank = self.rank;
        let event = match self.stream.record_event(None) {
            Ok(ev) => ev,
            Err(e) => return Err(self.fail(cuda_failed(rank, "recording a CUDA event")(e))),
        };
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_micros(20);
        loop {
            match event.try_is_complete() {
                Ok(true) => return Ok(()),
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
    }

    /// Copies `buf` to the device, runs `op` on the device copy, waits (with the deadline) and
    /// copies the result back.
    fn staged(
        &mut self,
        buf: &mut [f32],
        what: Op,
        op: impl FnOnce(&Self, u64) -> Result<(), CollectiveError>,
    ) -> Result<(), CollectiveError> {
        self.comm()?;
        if buf.is_empty() {
            return Ok(());
        }
        let rank = self.rank;
        let mut device = match self.staging.take() {
            Some(d) if d.len() == buf.len() => d,
            _ => self.stream.alloc_zeros::<f32>(buf.len()).map_err(cuda_failed(rank, "GPU allocation"))?,
        };
        let queued =
            self.stream.memcpy_htod(buf, &mut device).map_err(cuda_failed(rank, "copy to the GPU")).and_then(|()| {
                let (ptr, _sync) = device.device_ptr(&self.stream);
                op(self, ptr)
            });
        if let Err(e) = queued {
            return Err(self.fail(e));
        }
        self.wait(what)?;
        if let Err(e) = self.stream.memcpy_dtoh(&device, buf) {
            return Err(self.fail(cuda_failed(rank, "copy from the GPU")(e)));
        }
        self.staging = Some(device);
        self.stream.synchronize().map_err(cuda_failed(rank, "CUDA synchronize"))
    }

    /// The training stream of a backend on this GPU, by handle.
    fn borrowed(&self, handle: u64) -> Arc<CudaStream> {
        // SAFETY: the handle is a stream of this GPU's primary context (the backend opened the
        // same ordinal), which outlives the call; the wrapper does not own or destroy it.
        unsafe { self.ctx.wrap_borrowed_stream(handle as cudarc::driver::sys::CUstream) }
    }
}

impl DeviceCollective for Nccl {
    fn queue_sum(&mut self, spans: &[DeviceSpan], compute: u64) -> Result<(), CollectiveError> {
        let rank = self.rank;
        let compute = self.borrowed(compute);
        if let Err(e) = self.stream.join(&compute) {
            return Err(self.fail(cuda_failed(rank, "ordering the sum after backward")(e)));
        }
        let queued = nccl_result::group_start().map_err(nccl_failed(rank, "ncclGroupStart")).and_then(|_| {
            let sums = spans
                .iter()
                .try_for_each(|span| self.reduce_in_place(span.ptr, span.len, nccl_sys::ncclRedOp_t::ncclSum));
            // The group is closed whatever happened inside it.
            let end = nccl_result::group_end().map(|_| ()).map_err(nccl_failed(rank, "ncclGroupEnd"));
            sums.and(end)
        });
        match queued {
            Ok(()) => {
                self.pending += 1;
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    fn finish(&mut self, compute: u64) -> Result<(), CollectiveError> {
        if self.pending == 0 {
            return Ok(());
        }
        self.pending = 0;
        let rank = self.rank;
        let compute = self.borrowed(compute);
        if let Err(e) = compute.join(&self.stream) {
            return Err(self.fail(cuda_failed(rank, "ordering the optimizer after the sums")(e)));
        }
        self.wait(Op::AllReduce)
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
            ReduceOp::Sum => nccl_sys::ncclRedOp_t::ncclSum,
            ReduceOp::Max => nccl_sys::ncclRedOp_t::ncclMax,
        };
        let count = buf.len();
        self.staged(buf, Op::AllReduce, |me, ptr| me.reduce_in_place(ptr, count, nccl_op))
    }

    fn broadcast(&mut self, buf: &mut [f32], root: usize) -> Result<(), CollectiveError> {
        let count = buf.len();
        let root =
            i32::try_from(root).map_err(|_| CollectiveError::Protocol { detail: format!("root rank {root}") })?;
        self.staged(buf, Op::Broadcast, |me, ptr| {
            me.call("broadcast", |comm, stream| {
                let p = ptr as *mut std::ffi::c_void;
                // SAFETY: `ptr` is the staging buffer of `count` values, untouched until the wait.
                unsafe {
                    nccl_result::broadcast(p, p, count, nccl_sys::ncclDataType_t::ncclFloat32, root, comm, stream)
                }
            })
        })
    }

    fn on_device(&mut self) -> Option<&mut dyn DeviceCollective> {
        Some(self)
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
