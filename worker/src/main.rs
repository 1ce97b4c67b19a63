//! `shoal-worker`: runs training jobs for a coordinator, or a benchmark on its own.

mod bench;
mod commands;
mod compress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shoal_worker::{Worker, WorkerConfig, analysis, devices};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Shoal worker: registers this machine's devices with a coordinator and trains the jobs it is
/// given. SIGTERM (or Ctrl-C) drains: finish the step, checkpoint, report, exit.
///
/// Settings come from built-in defaults, then --config FILE, then SHOAL_* environment variables
/// (SHOAL_COORDINATOR, SHOAL_CPUS, SHOAL_CHECKPOINT_DIR, ...), then these flags.
#[derive(Parser, Debug)]
#[command(name = "shoal-worker", version = shoal_version::VERSION)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML configuration file.
    #[arg(long, env = "SHOAL_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Coordinator URL, e.g. http://10.0.0.1:7470.
    #[arg(long)]
    coordinator: Option<String>,
    /// CPU cores offered to jobs (default: all).
    #[arg(long)]
    cpus: Option<u32>,
    /// Memory offered to jobs, MiB (default: all).
    #[arg(long)]
    memory_mb: Option<u64>,
    /// Where checkpoints are written (one folder per job).
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Address the data plane listens on.
    #[arg(long)]
    data_listen: Option<String>,
    /// Address `/metrics` (Prometheus) listens on, e.g. 0.0.0.0:9464 (default: off).
    #[arg(long)]
    metrics_listen: Option<String>,
    /// Address peers use to reach the data plane.
    #[arg(long)]
    data_advertise: Option<String>,
    /// Name reported to the coordinator (default: host name).
    #[arg(long)]
    hostname: Option<String>,
    /// Token the coordinator requires to join (prefer SHOAL_JOIN_TOKEN: flags show in `ps`).
    #[arg(long)]
    join_token: Option<String>,
    /// Folders (comma-separated) that dataset files and other spec paths must lie in.
    #[arg(long)]
    data_roots: Option<String>,
    /// PEM CA to trust (turns TLS on towards the coordinator and parameter servers).
    #[arg(long)]
    tls_ca: Option<String>,
    /// PEM certificate presented for mutual TLS (with --tls-key).
    #[arg(long)]
    tls_cert: Option<String>,
    #[arg(long)]
    tls_key: Option<String>,
    /// Name the servers' certificates carry, when not the address dialled.
    #[arg(long)]
    tls_server_name: Option<String>,
    /// Log format: pretty or json.
    #[arg(long, global = true)]
    log_format: Option<String>,
    /// Log filter (RUST_LOG syntax).
    #[arg(long, global = true)]
    log: Option<String>,
    /// OTLP/gRPC collector to export spans to (http://HOST:PORT); off when unset.
    #[arg(long, global = true)]
    otlp_endpoint: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the devices this worker would register (CPUs, memory, GPUs and their current use)
    /// and the GPU libraries it can load (driver, CUDA, cuBLAS, NVRTC, NCCL, NVML): the version
    /// found, or why each is missing.
    Devices {
        /// Print one JSON object instead.
        #[arg(long)]
        json: bool,
    },
    /// Quantize an fp32 checkpoint to int8 (what `shoal quantize` runs).
    Quantize(compress::QuantizeArgs),
    /// Write predictions of an artifact (fp32, pruned or int8) for a CSV or IDX file (what
    /// `shoal predict` runs).
    Predict(compress::PredictArgs),
    /// Compare artifacts: accuracy, size, parameters, sparsity, latency and throughput on one
    /// thread (what `shoal compare` runs).
    Compare(compress::CompareArgs),
    /// Evaluate an artifact on a labelled CSV file: metrics overall and per slice with bootstrap
    /// intervals, fairness rates per group (what `shoal evaluate` runs).
    Evaluate(analysis::EvaluateArgs),
    /// Drift between reference and current data, column by column, and with an artifact the
    /// model's (predictions, margin density, change detectors over its errors); `--follow` a
    /// folder of windows (what `shoal monitor` runs).
    Monitor(commands::MonitorArgs),
    /// Statistics of every column of a CSV file and the variance explained by the principal
    /// components of its numeric columns (what `shoal analyze-data` runs).
    AnalyzeData(commands::AnalyzeDataArgs),
    /// Benchmarks that run inside this process and print JSON lines.
    Bench {
        #[command(subcommand)]
        which: bench::Bench,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let overrides = [
        ("coordinator", args.coordinator.clone()),
        ("cpus", args.cpus.map(|v| v.to_string())),
        ("memory_mb", args.memory_mb.map(|v| v.to_string())),
        ("checkpoint_dir", args.checkpoint_dir.as_ref().map(|p| p.display().to_string())),
        ("data_listen", args.data_listen.clone()),
        ("metrics_listen", args.metrics_listen.clone()),
        ("data_advertise", args.data_advertise.clone()),
        ("hostname", args.hostname.clone()),
        ("join_token", args.join_token.clone()),
        ("data_roots", args.data_roots.clone()),
        ("tls_ca", args.tls_ca.clone()),
        ("tls_cert", args.tls_cert.clone()),
        ("tls_key", args.tls_key.clone()),
        ("tls_server_name", args.tls_server_name.clone()),
        ("log_format", args.log_format.clone()),
        ("log", args.log.clone()),
        ("otlp_endpoint", args.otlp_endpoint.clone()),
    ];
    let config: WorkerConfig = match shoal_common::config::load(args.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shoal-worker: {e}");
            return ExitCode::from(2);
        }
    };
    // Declared before the runtime, so dropped after it: what the last tasks traced is sent.
    let telemetry = shoal_common::telemetry::start(
        "shoal-worker",
        shoal_version::VERSION,
        config.log_format,
        &config.log,
        &config.otlp_endpoint,
    );
    let Ok(_telemetry) = telemetry.inspect_err(|e| eprintln!("shoal-worker: {e}")) else {
        return ExitCode::from(2);
    };
    match args.command {
        Some(Command::Bench { which }) => bench::run(which),
        Some(Command::Quantize(args)) => compress::quantize(args),
        Some(Command::Predict(args)) => compress::predict(args),
        Some(Command::Compare(args)) => compress::compare(args),
        Some(Command::Evaluate(args)) => commands::evaluate(args),
        Some(Command::Monitor(args)) => commands::monitor(args),
        Some(Command::AnalyzeData(args)) => commands::analyze_data(args),
        Some(Command::Devices { json }) => {
            let inventory = devices::Inventory::gather();
            if json {
                println!("{}", inventory.json());
            } else {
                println!("{}", inventory.text());
            }
            ExitCode::SUCCESS
        }
        None => serve(config),
    }
}

fn serve(config: WorkerConfig) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shoal-worker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let drain = CancellationToken::new();
        let worker = match Worker::new(config, devices::detect(), drain.clone()) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "worker cannot start");
                return ExitCode::from(2);
            }
        };
        tokio::spawn(signals(drain));
        match worker.run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "worker stopped");
                ExitCode::from(2)
            }
        }
    })
}

/// First SIGTERM/SIGINT drains; a second one exits at once.
async fn signals(drain: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("signal received: draining (send it again to exit at once)");
    drain.cancel();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::warn!("second signal: exiting without draining");
    std::process::exit(130);
}
