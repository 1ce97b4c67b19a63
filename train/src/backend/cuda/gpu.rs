//! One GPU as the CUDA backend drives it: its context, the stream every kernel, copy and product
//! of the backend runs on (so they are ordered without events), a cuBLAS handle bound to that
//! stream, and the kernels compiled by NVRTC and loaded into the context. The driver, cuBLAS and
//! NVRTC are loaded at run time; each is checked for before the first call into it.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;

use cudarc::cublas::CudaBlas;
use cudarc::cublas::sys as blas;
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg};

use super::gemm::{GemmPlan, Op};
use super::launch::{LaunchDims, elementwise};
use super::ptx::{self, PtxError};
use super::source::KERNELS;
use super::staging::{Lease, Staging};

/// Why a GPU could not be opened for training.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("the CUDA driver library (libcuda.so) could not be loaded")]
    DriverMissing,
    #[error("cuBLAS could not be loaded: none of {} was found", candidates.join(", "))]
    BlasMissing { candidates: Vec<String> },
    #[error("GPU {ordinal} does not exist: this machine has {count}")]
    NoSuchDevice { ordinal: usize, count: i32 },
    #[error("CUDA driver call failed on GPU {ordinal}: {source}")]
    Driver {
        ordinal: usize,
        #[source]
        source: cudarc::driver::DriverError,
    },
    #[error("cuBLAS failed on GPU {ordinal}: {source}")]
    Blas {
        ordinal: usize,
        #[source]
        source: cudarc::cublas::result::CublasError,
    },
    #[error(transparent)]
    Ptx(#[from] PtxError),
}

/// Matrix-product precision on the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MathMode {
    /// IEEE fp32 products.
    Fp32,
    /// fp32 storage, TF32 tensor-core products.
    Tf32,
    /// fp32 storage (master weights, optimizer state, activations), products of bf16 copies of
    /// the operands on tensor cores, accumulated and written in fp32.
    Bf16,
}

impl From<shoal_common::spec::Precision> for MathMode {
    fn from(p: shoal_common::spec::Precision) -> Self {
        use shoal_common::spec::Precision;
        match p {
            Precision::Fp32 => Self::Fp32,
            Precision::Tf32 => Self::Tf32,
            Precision::Bf16 => Self::Bf16,
        }
    }
}

/// A kernel argument.
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    /// A device address.
    Ptr(u64),
    Int(i32),
    Float(f32),
}

/// An opened GPU.
pub struct Gpu {
    ordinal: usize,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    kernels: HashMap<&'static str, CudaFunction>,
    staging: Arc<Staging>,
    math: MathMode,
}

/// A driver error as a candle error, for the [`crate::backend::Backend`] methods.
pub(super) fn wrap<E: std::error::Error + Send + Sync + 'static>(e: E) -> candle_core::Error {
    candle_core::Error::wrap(e)
}

impl Gpu {
    /// Opens GPU `ordinal`, compiles and loads the kernels, and binds cuBLAS to its stream.
    pub fn open(ordinal: usize, math: MathMode) -> Result<Arc<Self>, GpuError> {
        // SAFETY: only opens the candidate libraries; nothing is called through them yet.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(GpuError::DriverMissing);
        }
        // SAFETY: as above.
        if !unsafe { blas::is_culib_present() } {
            return Err(GpuError::BlasMissing { candidates: cudarc::get_lib_name_candidates("cublas") });
        }
        let driver = |source| GpuError::Driver { ordinal, source };
        let count = CudaContext::device_count().map_err(driver)?;
        if ordinal >= count.max(0) as usize {
            return Err(GpuError::NoSuchDevice { ordinal, count });
        }
        let ctx = CudaContext::new(ordinal).map_err(driver)?;
        // One stream orders everything the backend does, so the per-buffer events cudarc would
        // otherwise record are not needed.
        // SAFETY: every buffer of this context is used only on `stream`, except the staging slots,
        // which order their copy stream with the training stream by explicit events.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone()).map_err(|source| GpuError::Blas { ordinal, source })?;
        let module = ctx.load_module(ptx::compile()?).map_err(driver)?;
        let mut kernels = HashMap::new();
        for &name in KERNELS {
            kernels.insert(name, module.load_function(name).map_err(driver)?);
        }
        let staging = Staging::new(&ctx, &stream).map_err(driver)?;
        Ok(Arc::new(Self { ordinal, ctx, stream, blas, kernels, staging, math }))
    }

    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// The device's name, for logs.
    pub fn name(&self) -> String {
        self.ctx.name().unwrap_or_else(|_| format!("GPU {}", self.ordinal))
    }

    /// Uninitialised device memory for `n` values of `T` (every caller writes all of it).
    pub(super) fn alloc<T: cudarc::driver::DeviceRepr>(&self, n: usize) -> candle_core::Result<(CudaSlice<T>, u64)> {
        // SAFETY: the memory is written by a copy or kernel before anything reads it.
        let slice = unsafe { self.stream.alloc::<T>(n.max(1)) }.map_err(wrap)?;
        let (ptr, _) = slice.device_ptr(&self.stream);
        Ok((slice, ptr))
    }

    /// Device memory holding `src`.
    pub(super) fn upload<T: cudarc::driver::DeviceRepr>(&self, src: &[T]) -> candle_core::Result<(CudaSlice<T>, u64)> {
        let (slice, ptr) = self.alloc::<T>(src.len())?;
        self.copy_in(ptr, src)?;
        Ok((slice, ptr))
    }

    /// Device memory holding a batch, copied from pinned memory on the copy stream while the
    /// training stream computes; the training stream waits for the copy before reading it.
    pub(super) fn stage(&self, src: &[f32]) -> candle_core::Result<(u64, Lease)> {
        self.staging.upload(src)
    }

    /// Copies host values to `dst` (which holds at least as many).
    pub(super) fn copy_in<T>(&self, dst: u64, src: &[T]) -> candle_core::Result<()> {
        if src.is_empty() {
            return Ok(());
        }
        self.ctx.bind_to_thread().map_err(wrap)?;
        // SAFETY: `dst` is device memory of this context with room for `src`; from pageable
        // memory the call returns once `src` has been read.
        unsafe { cudarc::driver::result::memcpy_htod_async(dst, src, self.stream.cu_stream()) }.map_err(wrap)
    }

    /// Copies `dst.len()` values from device memory at `src` and waits for them.
    pub(super) fn copy_out<T>(&self, src: u64, dst: &mut [T]) -> candle_core::Result<()> {
        if dst.is_empty() {
            return Ok(());
        }
        self.ctx.bind_to_thread().map_err(wrap)?;
        // SAFETY: `src` holds at least `dst.len()` values; the stream is synchronised before
        // `dst` is read.
        unsafe { cudarc::driver::result::memcpy_dtoh_async(dst, src, self.stream.cu_stream()) }.map_err(wrap)?;
        self.stream.synchronize().map_err(wrap)
    }

    /// Copies `n` f32 values between device buffers.
    pub(super) fn copy_within(&self, dst: u64, src: u64, n: usize) -> candle_core::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.ctx.bind_to_thread().map_err(wrap)?;
        // SAFETY: both ranges are live device memory of this context, `n` values long.
        unsafe { cudarc::driver::result::memcpy_dtod_async(dst, src, n * 4, self.stream.cu_stream()) }.map_err(wrap)
    }

    /// Launches kernel `name` on the backend's stream.
    pub(super) fn launch(&self, name: &str, dims: LaunchDims, args: &[Arg]) -> candle_core::Result<()> {
        let f = self
            .kernels
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("the CUDA kernels have no `{name}`")))?;
        let mut builder = self.stream.launch_builder(f);
        for a in args {
            match a {
                Arg::Ptr(p) => builder.arg(p),
                Arg::Int(i) => builder.arg(i),
                Arg::Float(x) => builder.arg(x),
            };
        }
        let cfg = LaunchConfig { grid_dim: (dims.grid, 1, 1), block_dim: (dims.block, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: the argument list matches the kernel's signature in kernels.cu (each call site
        // mirrors it), and every pointer is live device memory of the sizes passed.
        unsafe { builder.launch(cfg) }.map(|_| ()).map_err(wrap)
    }

    /// `C = alpha · op(A) · op(B) + beta · C`, repeated `batch` times with the given strides
    /// (in values) between the operands of consecutive products.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm(
        &self,
        p: &GemmPlan,
        a: u64,
        b: u64,
        c: u64,
        beta: f32,
        batch: usize,
        strides: [usize; 3],
    ) -> candle_core::Result<()> {
        let op = |o: Op| match o {
            Op::N => blas::cublasOperation_t::CUBLAS_OP_N,
            Op::T => blas::cublasOperation_t::CUBLAS_OP_T,
        };
        let int =
            |v: usize| i32::try_from(v).map_err(|_| candle_core::Error::Msg(format!("matrix size {v} too large")));
        let (m, n, k, lda, ldb, ldc) = (int(p.m)?, int(p.n)?, int(p.k)?, int(p.lda)?, int(p.ldb)?, int(p.ldc)?);
        // bf16: copies of both operands (stream-ordered scratch, freed after the product), exactly
        // as long as what BLAS reads of them.
        let copies = match self.math {
            MathMode::Bf16 => {
                let lens = [p.a_len(batch, strides[0]), p.b_len(batch, strides[1])];
                let mut copies = Vec::with_capacity(2);
                for (src, len) in [a, b].into_iter().zip(lens) {
                    let (slice, dst) = self.alloc::<u16>(len)?;
                    self.launch("to_bf16", elementwise(len), &[Arg::Ptr(src), Arg::Ptr(dst), Arg::Int(int(len)?)])?;
                    copies.push((slice, dst));
                }
                Some(copies)
            }
            MathMode::Fp32 | MathMode::Tf32 => None,
        };
        let (a, b, operands) = match &copies {
            Some(c) => (c[0].1, c[1].1, blas::cudaDataType::CUDA_R_16BF),
            None => (a, b, blas::cudaDataType::CUDA_R_32F),
        };
        let compute = match self.math {
            MathMode::Tf32 => blas::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
            MathMode::Fp32 | MathMode::Bf16 => blas::cublasComputeType_t::CUBLAS_COMPUTE_32F,
        };
        let out = blas::cudaDataType::CUDA_R_32F;
        let algo = blas::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT;
        let (a, b, c) = (a as *const c_void, b as *const c_void, c as *mut c_void);
        let alpha = 1.0f32;
        let (alpha, beta) = (&alpha as *const f32 as *const c_void, &beta as *const f32 as *const c_void);
        // SAFETY: the plan's sizes and leading dimensions describe buffers the callers allocated
        // for exactly these products (and the bf16 copies hold what BLAS reads of them); alpha and
        // beta are f32, as the fp32 compute type requires.
        let status = unsafe {
            if batch == 1 {
                blas::cublasGemmEx(
                    *self.blas.handle(),
                    op(p.op_a),
                    op(p.op_b),
                    m,
                    n,
                    k,
                    alpha,
                    a,
                    operands,
                    lda,
                    b,
                    operands,
                    ldb,
                    beta,
                    c,
                    out,
                    ldc,
                    compute,
                    algo,
                )
            } else {
                let [sa, sb, sc] = strides.map(|s| s as i64);
                blas::cublasGemmStridedBatchedEx(
                    *self.blas.handle(),
                    op(p.op_a),
                    op(p.op_b),
                    m,
                    n,
                    k,
                    alpha,
                    a,
                    operands,
                    lda,
                    sa,
                    b,
                    operands,
                    ldb,
                    sb,
                    beta,
                    c,
                    out,
                    ldc,
                    sc,
                    int(batch)?,
                    compute,
                    algo,
                )
            }
        };
        drop(copies);
        status.result().map_err(wrap)
    }

    /// The backend's stream as a raw handle, for a device collective to order its work after.
    pub fn stream_handle(&self) -> u64 {
        self.stream.cu_stream() as u64
    }

    /// Waits for everything queued so far.
    pub fn synchronize(&self) -> candle_core::Result<()> {
        self.stream.synchronize().map_err(wrap)
    }
}
