//! Why the worker stops, and why a connection to the coordinator or a session with it ended.

use std::time::Duration;

use crate::config::ConfigError;

/// Why the worker cannot run (or stopped for good).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot listen for peers on {addr}: {source}")]
    DataPlane { addr: String, source: std::io::Error },
    #[error("the coordinator refused this worker: {0}")]
    Refused(ConnectError),
    /// `metrics_listen` cannot be bound (the message names the key).
    #[error(transparent)]
    Metrics(#[from] shoal_common::http_server::ServeError),
}

/// Why registering with the coordinator failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The coordinator's address or TLS settings are unusable.
    #[error("coordinator: {detail}")]
    Endpoint { detail: String },
    #[error("no connection within {timeout:?}")]
    ConnectTimeout { timeout: Duration },
    #[error("{source}")]
    Transport { source: tonic::transport::Error },
    #[error("no answer to register within {timeout:?}")]
    RegisterTimeout { timeout: Duration },
    /// The coordinator answered and said no (wrong version, bad request, bad token).
    #[error("{}", status.message())]
    Refused { status: tonic::Status },
    #[error("{}", shoal_common::status::describe(status))]
    Unavailable { status: tonic::Status },
}

impl ConnectError {
    /// Whether trying again later can help: not when the coordinator said no, or its address
    /// cannot be used.
    pub fn retryable(&self) -> bool {
        !matches!(self, Self::Endpoint { .. } | Self::Refused { .. })
    }
}

/// Why a session with the coordinator ended (the worker reconnects).
#[derive(Debug, thiserror::Error)]
pub enum SessionLost {
    #[error("not registered")]
    NotRegistered,
    #[error("session closed before hello")]
    ClosedBeforeHello,
    #[error("no session within {timeout:?}")]
    NoSession { timeout: Duration },
    #[error("session stream closed")]
    StreamClosed,
    #[error("the coordinator closed the session")]
    ClosedByCoordinator,
    #[error("{}", shoal_common::status::describe(status))]
    Status { status: tonic::Status },
}
