//! Shoal's worker: detects its devices, registers with the coordinator, runs assigned training
//! jobs on dedicated threads and streams their progress back.

pub mod analysis;
pub mod config;
pub mod control;
pub mod devices;
pub mod metrics;
pub mod run;
pub mod sync;

pub use config::WorkerConfig;
pub use control::{Worker, WorkerError};
