//! The kernels of the CUDA backend: their source ([`source`]), how they are launched
//! ([`launch`]) and, with the `cuda` feature, their compilation to PTX by NVRTC loaded at run
//! time ([`ptx`]). Nothing here needs CUDA to build; `tests/cuda_kernels` checks every kernel's
//! numerics on the host against the CPU engine.

pub mod launch;
#[cfg(feature = "cuda")]
pub mod ptx;
pub mod source;
