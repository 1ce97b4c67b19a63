//! Device memory behind a CUDA tensor: an allocation on one GPU and its address. Kernels reach it
//! by address on the GPU's single stream, which orders every read and write; the allocation is
//! freed (stream-ordered) when the last tensor sharing it is dropped.

use std::any::Any;
use std::sync::Arc;

use candle_core::Result;
use cudarc::driver::CudaSlice;

use super::gpu::Gpu;
use super::staging::Lease;
use crate::backend::{DeviceBuffer, Tensor};

/// What keeps a buffer's memory allocated.
enum Memory {
    /// An allocation of the training stream, freed in its order.
    Owned { _slice: CudaSlice<f32> },
    /// A staging slot holding a batch, reused once this is dropped.
    Staged { _lease: Lease },
}

pub(super) struct CudaBuffer {
    /// Owns the memory; never read through (kernels use `ptr`).
    _memory: Memory,
    ptr: u64,
    len: usize,
    gpu: Arc<Gpu>,
}

impl CudaBuffer {
    /// Uninitialised memory for `len` values: the caller writes all of it before it is read.
    pub(super) fn alloc(gpu: &Arc<Gpu>, len: usize) -> Result<Self> {
        let (slice, ptr) = gpu.alloc::<f32>(len)?;
        Ok(Self { _memory: Memory::Owned { _slice: slice }, ptr, len, gpu: gpu.clone() })
    }

    /// A batch copied in through the staging ring (see [`Gpu::stage`]).
    pub(super) fn staged(gpu: &Arc<Gpu>, src: &[f32]) -> Result<Self> {
        let (ptr, lease) = gpu.stage(src)?;
        Ok(Self { _memory: Memory::Staged { _lease: lease }, ptr, len: src.len(), gpu: gpu.clone() })
    }

    pub(super) fn ptr(&self) -> u64 {
        self.ptr
    }
}

impl DeviceBuffer for CudaBuffer {
    fn len(&self) -> usize {
        self.len
    }

    fn to_host(&self) -> Result<Vec<f32>> {
        let mut out = vec![0f32; self.len];
        self.gpu.copy_out(self.ptr, &mut out)?;
        Ok(out)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The device address of a tensor of this backend.
pub(super) fn ptr(t: &Tensor) -> Result<u64> {
    t.device_buffer()?
        .as_any()
        .downcast_ref::<CudaBuffer>()
        .map(CudaBuffer::ptr)
        .ok_or_else(|| candle_core::Error::Msg("the tensor is not in CUDA memory".into()))
}
