//! Shoal's training engine: sequential candle models with explicit backward passes and fused CPU
//! kernels, the supported datasets, optimizers and schedules, checkpoints, and the step loop that
//! workers run. Nothing here knows about the network or the coordinator.
//!
//! Modules form layers and import only downward (checked by `tests/layering.rs`): `error`; the
//! transport traits (`collective`, `link`) and `rng`; the compute backend; `nn`; `data`, `model`,
//! `optim`, `checkpoint`, `morph`, `distributed`; the loop core (`engine`); the cooperation
//! strategies (`coop`) and compression job kinds (`compress`); and the entry point (`trainer`).

pub mod backend;
pub mod checkpoint;
pub mod collective;
pub mod compress;
pub mod coop;
pub mod data;
pub mod distributed;
pub mod engine;
mod error;
pub mod link;
pub mod model;
pub mod morph;
pub mod nn;
pub mod optim;
pub mod rng;
pub mod sparse;
pub mod trainer;

pub use collective::{Collective, DeviceCollective, DeviceSpan, ParamStore, ReduceOp};
pub use coop::pipeline;
pub use error::{Cause, CollectiveError, Op, Peer, PsFault, Result, ShardServer, TrainError};
pub use model::{DataShape, Model};
pub use trainer::{EvalPoint, Host, Outcome, Peers, Report, RunOptions, Stop, Summary, TrainPoint, train, train_with};
