//! Shoal's coordinator: accepts jobs over gRPC, keeps them in SQLite, schedules them onto
//! registered workers, tracks worker liveness and streams job progress to watchers.

pub mod config;
mod dashboard;
pub mod error;
mod http;
pub mod metrics;
pub mod scheduler;
pub mod server;
mod service;
pub mod state;
pub mod store;

pub use config::CoordinatorConfig;
pub use error::CoordinatorError;
pub use server::{CoordinatorHandle, StartError, start};
pub use state::{Coordinator, Liveness};
