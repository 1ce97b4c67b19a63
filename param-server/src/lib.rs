//! Shoal's parameter server: holds shards of jobs' parameters in memory, applies their optimizer
//! (SGD with momentum, AdamW, the job's learning-rate schedule) to pushed gradients, and serves the
//! newest parameters, in async, stale-synchronous or synchronous mode.

mod checkpoint;
pub mod config;
pub mod error;
pub mod key;
pub mod metrics;
pub mod node;
mod registry;
pub mod service;
pub mod shard;

use std::net::SocketAddr;
use std::sync::Arc;

use shoal_common::proto::param_server_service_server::ParamServerServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

pub use checkpoint::CheckpointError;
pub use config::ParamServerConfig;
pub use error::{Blocked, ParamServerError};
pub use key::ShardId;
pub use registry::Registry;
pub use service::ParamServerApi;

/// A serving parameter server.
pub struct Serving {
    pub addr: SocketAddr,
    pub registry: Arc<Registry>,
    /// How long its RPCs take, for `/metrics`.
    pub rpc: shoal_common::metrics::RpcDurations,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds `listen` and serves the push/pull protocol until `stop` fires.
pub async fn serve(listen: &str) -> Result<Serving, ParamServerError> {
    serve_with(listen, None, shoal_common::auth::Tokens::new("join", Vec::new())).await
}

/// Serves with TLS (when given) and requiring one of `tokens` (when any) on every call.
pub async fn serve_with(
    listen: &str,
    tls: Option<tonic::transport::ServerTlsConfig>,
    tokens: shoal_common::auth::Tokens,
) -> Result<Serving, ParamServerError> {
    let listen_error = |source| ParamServerError::Listen { addr: listen.to_owned(), source };
    let listener = TcpListener::bind(listen).await.map_err(listen_error)?;
    let addr = listener.local_addr().map_err(listen_error)?;
    let registry = Registry::new();
    let stop = CancellationToken::new();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).map_err(|source| ParamServerError::ServerTls { source })?;
    }
    let check = move |req: tonic::Request<()>| tokens.check(req.metadata()).map(|_| req);
    let rpc = shoal_common::metrics::rpc_durations();
    let router = builder
        // Pushes and pulls come at every step: spanned only within a caller's trace.
        .layer(shoal_common::metrics::RpcMetricsLayer::new(rpc.clone()).traced_only_by_caller(&["Push", "Pull"]))
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
        .initial_stream_window_size(Some(shoal_common::chunks::STREAM_WINDOW))
        .initial_connection_window_size(Some(shoal_common::chunks::CONNECTION_WINDOW))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            ParamServerServiceServer::new(ParamServerApi::new(registry.clone()))
                .max_decoding_message_size(shoal_common::chunks::CHUNK_BYTES + (64 << 10)),
            check,
        ));
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        if let Err(e) =
            router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), stopped.cancelled_owned()).await
        {
            tracing::error!(error = %e, "parameter server failed");
        }
    });
    Ok(Serving { addr, registry, rpc, stop, task })
}
