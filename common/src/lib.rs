//! Shared by every Shoal crate: the generated wire protocol, id newtypes, job specs and their
//! validation, the error-to-status mapping, version checks and tracing set-up. No policy lives here.

pub mod auth;
pub mod chunks;
pub mod config;
pub mod http_client;
pub mod http_server;
pub mod ids;
pub mod metrics;
pub mod paths;
pub mod proto;
pub mod spec;
pub mod status;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod version;

pub use ids::{JobId, WorkerId};
