//! Shoal's training engine: sequential candle models with explicit backward passes and fused CPU
//! kernels, the supported datasets, optimizers and schedules, checkpoints, and the step loop that
//! workers run. Nothing here knows about the network or the coordinator.

pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod collective;
pub mod data;
pub mod distributed;
mod error;
pub mod model;
pub mod morph;
pub mod nn;
pub mod optim;
pub mod pipeline;
pub mod rng;
pub mod trainer;

pub use collective::{Collective, CollectiveError, ParamStore, Peers, ReduceOp};
pub use error::{Result, TrainError};
pub use model::{DataShape, Model};
pub use trainer::{EvalPoint, Host, Outcome, Report, RunOptions, Stop, Summary, TrainPoint, train};
