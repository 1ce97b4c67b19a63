//! `shoal-param-server`: a parameter-server node.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use shoal_param_server::ParamServerConfig;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Shoal parameter server: holds parameter shards of `sync = "ps"` jobs, applies their optimizer
/// to pushed gradients and serves the newest parameters.
///
/// Settings come from built-in defaults, then --config FILE, then SHOAL_* environment variables,
/// then these flags. It prints `listening on ADDR` once it serves.
#[derive(Parser, Debug)]
#[command(name = "shoal-param-server", version = shoal_version::VERSION)]
struct Args {
    #[arg(long, env = "SHOAL_CONFIG")]
    config: Option<PathBuf>,
    /// Coordinator URL to register with.
    #[arg(long)]
    coordinator: Option<String>,
    /// Serve push/pull without registering with a coordinator (benchmarks, tests).
    #[arg(long)]
    standalone: bool,
    /// Address to listen on.
    #[arg(long)]
    listen: Option<String>,
    /// Address `/metrics` (Prometheus) listens on, e.g. 0.0.0.0:9465 (default: off).
    #[arg(long)]
    metrics_listen: Option<String>,
    /// Address workers use to reach this server.
    #[arg(long)]
    advertise: Option<String>,
    /// Name reported to the coordinator.
    #[arg(long)]
    hostname: Option<String>,
    /// Token the coordinator requires to join (prefer SHOAL_JOIN_TOKEN).
    #[arg(long)]
    join_token: Option<String>,
    /// PEM certificate of the push/pull endpoint (TLS on, with --tls-key).
    #[arg(long)]
    tls_cert: Option<String>,
    #[arg(long)]
    tls_key: Option<String>,
    /// PEM CA workers' certificates must chain to (mutual TLS).
    #[arg(long)]
    tls_client_ca: Option<String>,
    /// PEM CA to trust for the coordinator.
    #[arg(long)]
    tls_ca: Option<String>,
    #[arg(long)]
    tls_server_name: Option<String>,
    #[arg(long)]
    log_format: Option<String>,
    #[arg(long)]
    log: Option<String>,
    /// OTLP/gRPC collector to export spans to (http://HOST:PORT); off when unset.
    #[arg(long)]
    otlp_endpoint: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let overrides = [
        ("coordinator", if args.standalone { Some(String::new()) } else { args.coordinator.clone() }),
        ("listen", args.listen.clone()),
        ("metrics_listen", args.metrics_listen.clone()),
        ("advertise", args.advertise.clone()),
        ("hostname", args.hostname.clone()),
        ("join_token", args.join_token.clone()),
        ("tls_cert", args.tls_cert.clone()),
        ("tls_key", args.tls_key.clone()),
        ("tls_client_ca", args.tls_client_ca.clone()),
        ("tls_ca", args.tls_ca.clone()),
        ("tls_server_name", args.tls_server_name.clone()),
        ("log_format", args.log_format.clone()),
        ("log", args.log.clone()),
        ("otlp_endpoint", args.otlp_endpoint.clone()),
    ];
    let config: ParamServerConfig = match shoal_common::config::load(args.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shoal-param-server: {e}");
            return ExitCode::from(2);
        }
    };
    // Declared before the runtime, so dropped after it: what the last tasks traced is sent.
    let telemetry = shoal_common::telemetry::start(
        "shoal-param-server",
        shoal_version::VERSION,
        config.log_format,
        &config.log,
        &config.otlp_endpoint,
    );
    let Ok(_telemetry) = telemetry.inspect_err(|e| eprintln!("shoal-param-server: {e}")) else {
        return ExitCode::from(2);
    };
    let tls = match (config.server_tls().load(), config.client_tls()) {
        (Ok(server), Ok(_)) => server,
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("shoal-param-server: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shoal-param-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let serving = match shoal_param_server::serve_with(&config.listen, tls, config.tokens()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(listen = %config.listen, error = %e, "cannot listen");
                return ExitCode::from(2);
            }
        };
        println!("listening on {}", serving.addr);
        if !config.metrics_listen.is_empty() {
            let routes = shoal_param_server::metrics::router(serving.registry.clone(), serving.rpc.clone());
            let served = match shoal_common::http_server::parse_listen("metrics_listen", &config.metrics_listen, true) {
                Ok(addr) => {
                    shoal_common::http_server::serve("metrics_listen", addr, routes, serving.stop.clone()).await
                }
                Err(e) => Err(e),
            };
            match served {
                Ok((addr, _task)) => tracing::info!(%addr, "metrics listening (/metrics)"),
                Err(e) => {
                    tracing::error!(error = %e, "cannot serve metrics");
                    serving.stop.cancel();
                    return ExitCode::from(2);
                }
            }
        }
        let advertise = if config.advertise.is_empty() { serving.addr.to_string() } else { config.advertise.clone() };
        let stop = serving.stop.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            if let Ok(mut term) = signal(SignalKind::terminate()) {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            tracing::info!("shutting down");
            stop.cancel();
        });
        let mut code = ExitCode::SUCCESS;
        if !config.coordinator.is_empty()
            && let Err(e) =
                shoal_param_server::node::run(config, advertise, serving.registry.clone(), serving.stop.clone()).await
        {
            tracing::error!(error = %e, "the coordinator refused this parameter server");
            serving.stop.cancel();
            code = ExitCode::from(2);
        }
        let _ = serving.task.await;
        code
    })
}
