//! `shoal-coordinator`: the coordinator server.

use std::path::PathBuf;

use clap::Parser;
use shoal_coordinator::CoordinatorConfig;

/// Shoal coordinator: queues training jobs and schedules them onto workers.
///
/// Settings come from built-in defaults, then --config FILE, then SHOAL_* environment variables
/// (SHOAL_LISTEN, SHOAL_DATABASE, SHOAL_HEARTBEAT_TIMEOUT_MS, ...), then these flags.
#[derive(Parser, Debug)]
#[command(name = "shoal-coordinator", version = shoal_version::VERSION)]
struct Args {
    /// TOML configuration file.
    #[arg(long, env = "SHOAL_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (host:port).
    #[arg(long)]
    listen: Option<String>,
    /// Address of the HTTP port (dashboard, /metrics); empty turns it off.
    #[arg(long)]
    http_listen: Option<String>,
    /// TLS on the HTTP port when TLS is on: same, server-only (no client certificates) or off.
    #[arg(long, value_parser = ["same", "server-only", "off"])]
    http_tls: Option<String>,
    /// SQLite database file.
    #[arg(long)]
    database: Option<PathBuf>,
    /// Milliseconds between worker heartbeats.
    #[arg(long)]
    heartbeat_interval_ms: Option<u64>,
    /// Milliseconds of silence after which a worker is lost.
    #[arg(long)]
    heartbeat_timeout_ms: Option<u64>,
    /// Milliseconds a disconnected worker has to reconnect.
    #[arg(long)]
    reconnect_grace_ms: Option<u64>,
    /// Milliseconds workers have to reconnect after a coordinator restart.
    #[arg(long)]
    restart_grace_ms: Option<u64>,
    /// Log format: pretty or json.
    #[arg(long)]
    log_format: Option<String>,
    /// Log filter (RUST_LOG syntax).
    #[arg(long)]
    log: Option<String>,
    /// OTLP/gRPC collector to export spans to (http://HOST:PORT); off when unset.
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// Bearer token clients must present (prefer SHOAL_CLIENT_TOKEN: flags show in `ps`).
    #[arg(long)]
    client_token: Option<String>,
    /// File of per-user client tokens (`NAME TOKEN` per line).
    #[arg(long)]
    tokens_file: Option<PathBuf>,
    /// Token workers and parameter servers must present (prefer SHOAL_JOIN_TOKEN).
    #[arg(long)]
    join_token: Option<String>,
    /// Allow a non-loopback listen address without TLS.
    #[arg(long)]
    insecure_listen: bool,
    /// PEM certificate of this endpoint (turns TLS on, with --tls-key).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// PEM CA that client certificates must chain to (mutual TLS).
    #[arg(long)]
    tls_client_ca: Option<PathBuf>,
    /// Check the database (SQLite integrity, event numbering, trials) and exit: 0 healthy, 1 not.
    #[arg(long)]
    check_database: bool,
    /// Most workers one job may occupy (0 = no limit).
    #[arg(long)]
    max_workers_per_job: Option<u32>,
    /// Most trials one search may run (0 = no limit beyond the spec's).
    #[arg(long)]
    max_trials_per_search: Option<u32>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let overrides = [
        ("listen", args.listen.clone()),
        ("http_listen", args.http_listen.clone()),
        ("http_tls", args.http_tls.clone()),
        ("database", args.database.as_ref().map(|p| p.display().to_string())),
        ("heartbeat_interval_ms", args.heartbeat_interval_ms.map(|v| v.to_string())),
        ("heartbeat_timeout_ms", args.heartbeat_timeout_ms.map(|v| v.to_string())),
        ("reconnect_grace_ms", args.reconnect_grace_ms.map(|v| v.to_string())),
        ("restart_grace_ms", args.restart_grace_ms.map(|v| v.to_string())),
        ("log_format", args.log_format.clone()),
        ("log", args.log.clone()),
        ("otlp_endpoint", args.otlp_endpoint.clone()),
        ("client_token", args.client_token.clone()),
        ("tokens_file", args.tokens_file.as_ref().map(|p| p.display().to_string())),
        ("join_token", args.join_token.clone()),
        ("insecure_listen", args.insecure_listen.then(|| "true".to_owned())),
        ("tls_cert", args.tls_cert.as_ref().map(|p| p.display().to_string())),
        ("tls_key", args.tls_key.as_ref().map(|p| p.display().to_string())),
        ("tls_client_ca", args.tls_client_ca.as_ref().map(|p| p.display().to_string())),
        ("max_workers_per_job", args.max_workers_per_job.map(|v| v.to_string())),
        ("max_trials_per_search", args.max_trials_per_search.map(|v| v.to_string())),
    ];
    let config: CoordinatorConfig = match shoal_common::config::load(args.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shoal-coordinator: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if args.check_database {
        return check_database(&config.database);
    }
    if let Err(e) = config.validate() {
        eprintln!("shoal-coordinator: invalid configuration: {e}");
        return std::process::ExitCode::from(2);
    }
    // Declared before the runtime, so dropped after it: what the last tasks traced is sent.
    let telemetry = shoal_common::telemetry::start(
        "shoal-coordinator",
        shoal_version::VERSION,
        config.log_format,
        &config.log,
        &config.otlp_endpoint,
    );
    let Ok(_telemetry) = telemetry.inspect_err(|e| eprintln!("shoal-coordinator: {e}")) else {
        return std::process::ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shoal-coordinator: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let handle = match shoal_coordinator::start(&config).await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "coordinator failed to start");
                return std::process::ExitCode::FAILURE;
            }
        };
        // Machine-readable readiness line for scripts and tests.
        println!("listening on {}", handle.addr);
        if let Some(http) = handle.http_addr {
            // A reader may stop after the first line: a closed pipe is no reason to stop serving.
            use std::io::Write;
            let _ = writeln!(std::io::stdout(), "http on {http}");
        }
        wait_for_signal().await;
        tracing::info!("shutting down");
        handle.stop().await;
        std::process::ExitCode::SUCCESS
    })
}

fn check_database(path: &std::path::Path) -> std::process::ExitCode {
    if !path.exists() {
        eprintln!("shoal-coordinator: database: {} does not exist", path.display());
        return std::process::ExitCode::from(2);
    }
    let problems = shoal_coordinator::store::Store::open(path).and_then(|s| s.check());
    match problems {
        Ok(p) if p.is_empty() => {
            println!("database ok: {}", path.display());
            std::process::ExitCode::SUCCESS
        }
        Ok(p) => {
            for line in &p {
                println!("{line}");
            }
            eprintln!("shoal-coordinator: {} problems in {}", p.len(), path.display());
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("shoal-coordinator: cannot check {}: {e}", path.display());
            std::process::ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
