//! Benchmarks that run inside `shoal-worker` processes and print JSON lines with the field names of
//! the PyTorch peers in `../shared/peers`: the reference MLP on one rank, data-parallel or through
//! parameter servers (`ddp_mlp.py`), all-reduce bandwidth (`allreduce_gloo.py`), pipelines
//! (`pipeline_gpipe.py`) and compressed variants of the reference MLP (`compress_mlp.py`); the
//! reference MLP on one GPU (`gpu_mlp.py`) and the GPU's agreement with the CPU engine (`parity`). Multi-rank runs are started by `shoal bench`, which hands every rank its
//! peers' data-plane addresses. They live in the binary: the worker library prints nothing.

mod allreduce;
mod analysis;
mod command;
mod compress;
mod cpu;
mod device;
mod error;
mod meta;
mod parity;
mod pipeline;
mod ps;
mod rendezvous;
mod train;
mod workloads;

pub use command::{Bench, run};
