//! The CUDA backend. Host logic that needs no CUDA: the kernels' source ([`source`]), how they
//! are launched ([`launch`]) and how row-major products map onto cuBLAS ([`gemm`]); with the
//! `cuda` feature, their compilation to PTX by NVRTC loaded at run time ([`ptx`]), the GPU
//! ([`Gpu`]: context, stream, cuBLAS, loaded kernels), device buffers, the staging ring that copies
//! batches from pinned memory on a stream of their own (slot choice in [`slots`]), and
//! [`CudaBackend`].
//! Nothing here needs CUDA to build; `tests/cuda_kernels` checks every kernel's numerics on the
//! host against the CPU engine.

#[cfg(feature = "cuda")]
mod backend;
#[cfg(feature = "cuda")]
mod buffer;
pub mod gemm;
#[cfg(feature = "cuda")]
mod gpu;
pub mod launch;
#[cfg(feature = "cuda")]
pub mod ptx;
pub mod slots;
pub mod source;
#[cfg(feature = "cuda")]
mod staging;

#[cfg(feature = "cuda")]
pub use self::backend::CudaBackend;
#[cfg(feature = "cuda")]
pub use self::gpu::{Gpu, GpuError, MathMode};
