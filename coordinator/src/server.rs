//! Starting and stopping the gRPC server: job and worker services, health, reflection, and the
//! liveness loop, all tied to one shutdown token.

use std::net::SocketAddr;
use std::time::Duration;

use shoal_common::proto::job_service_server::JobServiceServer;
use shoal_common::proto::worker_service_server::WorkerServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::interceptor::InterceptedService;

use crate::config::{ConfigError, CoordinatorConfig};
use crate::service::{JobApi, WorkerApi};
use crate::state::Coordinator;
use crate::store::Store;

/// Largest request message the coordinator decodes (specs are limited to 256 KiB on top).
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// Why the coordinator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {source}")]
    Config {
        #[from]
        source: ConfigError,
    },
    #[error("invalid configuration: tls: {source}")]
    Tls { source: tonic::transport::Error },
    #[error(transparent)]
    State(#[from] crate::error::CoordinatorError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("reflection service: {source}")]
    Reflection { source: tonic_reflection::server::Error },
    /// The HTTP port could not be bound (the message names `http_listen`).
    #[error(transparent)]
    Http(shoal_common::http_server::ServeError),
}

/// A running coordinator.
pub struct CoordinatorHandle {
    /// The address it listens on (the real port when the config asked for port 0).
    pub addr: SocketAddr,
    /// The HTTP port's address (`/metrics`), when it is on.
    pub http_addr: Option<SocketAddr>,
    pub coordinator: Coordinator,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl CoordinatorHandle {
    /// Asks every part to stop.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Stops and waits until the server and its tasks have ended.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Waits until the server ends (after `shutdown`).
    pub async fn wait(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Opens the database and serves until `shutdown` is called.
pub async fn start(config: &CoordinatorConfig) -> Result<CoordinatorHandle, StartError> {
    let addr = config.validate()?;
    let store = Store::open(&config.database).map_err(crate::error::CoordinatorError::from)?;
    let coordinator = Coordinator::new(store, config.liveness())?;
    coordinator.set_limits(crate::state::Limits {
        max_workers_per_job: config.max_workers_per_job,
        max_trials_per_search: config.max_trials_per_search,
    });
    let client_tokens = config.client_tokens()?;
    let join_tokens = config.join_tokens();
    let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
    let tls = config.tls().load().map_err(|reason| ConfigError::Tls { reason })?;
    match (&tls, local.ip().is_loopback()) {
        (Some(_), _) => tracing::info!(
            addr = %local,
            mutual = !config.tls_client_ca.is_empty(),
            "TLS on: every connection is encrypted{}",
            if config.tls_client_ca.is_empty() { "" } else { " and must present a certificate from tls_client_ca" }
        ),
        (None, true) => tracing::info!(
            addr = %local,
            "TLS off: listening on loopback only (tls_cert + tls_key turn TLS on; insecure_listen opens other addresses without it)"
        ),
        (None, false) => {
            tracing::warn!(addr = %local, "TLS off on a non-loopback address (insecure_listen): traffic is in clear")
        }
    }
    if client_tokens.is_open() {
        tracing::warn!("no client token configured: anyone who reaches the port can submit and cancel jobs");
    }
    if join_tokens.is_open() {
        tracing::warn!("no join token configured: anyone who reaches the port can join as a worker");
    }
    let http_tokens = client_tokens.clone();
    let check_client = move |req: tonic::Request<()>| client_tokens.check(req.metadata()).map(|_| req);
    let check_join = move |req: tonic::Request<()>| join_tokens.check(req.metadata()).map(|_| req);

    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<JobServiceServer<JobApi>>().await;
    health.set_serving::<WorkerServiceServer<WorkerApi>>().await;
    let reflection_v1 = reflection().build_v1().map_err(|source| StartError::Reflection { source })?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(|source| StartError::Reflection { source })?;

    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).map_err(|source| StartError::Tls { source })?;
    }
    let router = builder
        .layer(shoal_common::metrics::RpcMetricsLayer::new(coordinator.metrics().rpc_durations()))
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(InterceptedService::new(
            JobServiceServer::new(JobApi::new(coordinator.clone(), shutdown.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
            check_client,
        ))
        .add_service(InterceptedService::new(
            WorkerServiceServer::new(WorkerApi::new(coordinator.clone(), shutdown.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
            check_join,
        ));
    let stop = shutdown.clone();
    tasks.spawn(async move {
        if let Err(e) =
            router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled_owned()).await
        {
            tracing::error!(error = %e, "gRPC server failed");
        }
    });
    let live = coordinator.clone();
    let stop = shutdown.clone();
    tasks.spawn(async move { live.run_liveness(Duration::from_millis(250), stop).await });
    let http_addr = match config.http_addr()? {
        Some(addr) => {
            let routes = crate::http::router(coordinator.clone(), http_tokens);
            let tls = config.http_rustls()?;
            let https = tls.is_some();
            let (bound, task) =
                shoal_common::http_server::serve_with("http_listen", addr, routes, tls, shutdown.clone())
                    .await
                    .map_err(StartError::Http)?;
            tasks.spawn(async move {
                let _ = task.await;
            });
            tracing::info!(
                url = %format!("{}://{bound}/", if https { "https" } else { "http" }),
                "dashboard and /metrics listening"
            );
            Some(bound)
        }
        None => None,
    };
    tracing::info!(addr = %local, database = %config.database.display(), "coordinator listening");
    Ok(CoordinatorHandle { addr: local, http_addr, coordinator, shutdown, tasks })
}

/// What server reflection describes, for both of its protocol versions: `grpc.reflection.v1` for
/// current clients (grpcurl) and `grpc.reflection.v1alpha` for those that speak only that one
/// (Python's grpcio-reflection, Postman, older grpcurl). Each version lists both reflection
/// services, as other gRPC servers do.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .include_reflection_service(false)
        .register_encoded_file_descriptor_set(shoal_common::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
}
