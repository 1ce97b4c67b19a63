//! The kernels of the CUDA backend: their source ([`source`]) and how they are launched
//! ([`launch`]). Nothing here needs CUDA to build.

pub mod launch;
pub mod source;
