//! Shoal's parameter server: holds shards of jobs' parameters in memory, applies their optimizer
//! (SGD with momentum, AdamW, the job's learning-rate schedule) to pushed gradients, and serves the
//! newest parameters, in async, stale-synchronous or synchronous mode.

pub mod config;
pub mod node;
pub mod service;
pub mod shard;

use std::net::SocketAddr;
use std::sync::Arc;

use shoal_common::proto::param_server_service_server::ParamServerServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

pub use config::ParamServerConfig;
pub use service::{ParamServerApi, Registry};

/// A serving parameter server.
pub struct Serving {
    pub addr: SocketAddr,
    pub registry: Arc<Registry>,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds `listen` and serves the push/pull protocol until `stop` fires.
pub async fn serve(listen: &str) -> std::io::Result<Serving> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let registry = Registry::new();
    let stop = CancellationToken::new();
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
        .initial_stream_window_size(Some(shoal_common::chunks::STREAM_WINDOW))
        .initial_connection_window_size(Some(shoal_common::chunks::CONNECTION_WINDOW))
        .add_service(ParamServerServiceServer::new(ParamServerApi::new(registry.clone())));
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        if let Err(e) =
            router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), stopped.cancelled_owned()).await
        {
            tracing::error!(error = %e, "parameter server failed");
        }
    });
    Ok(Serving { addr, registry, stop, task })
}
