//! gRPC handlers: thin adapters from requests to the coordinator state.

mod jobs;
mod workers;

pub use jobs::JobApi;
pub use workers::WorkerApi;
