//! The ways ranks cooperate, one [`Cooperation`](crate::engine::Cooperation) each: a single
//! worker, all-reduce, parameter servers, and pipeline stages.

mod all_reduce;
mod alone;
mod local;
mod overlap;
mod param_server;
pub mod pipeline;

pub use all_reduce::AllReduce;
pub use alone::Alone;
pub use param_server::ParamServer;
pub use pipeline::Pipeline;
