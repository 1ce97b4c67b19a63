//! `shoal-worker`: runs training jobs for a coordinator, or a benchmark on its own.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shoal_worker::{Worker, WorkerConfig, devices};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Shoal worker: registers this machine's devices with a coordinator and trains the jobs it is
/// given. SIGTERM (or Ctrl-C) drains: finish the step, checkpoint, report, exit.
///
/// Settings come from built-in defaults, then --config FILE, then SHOAL_* environment variables
/// (SHOAL_COORDINATOR, SHOAL_CPUS, SHOAL_CHECKPOINT_DIR, ...), then these flags.
#[derive(Parser, Debug)]
#[command(name = "shoal-worker", version)]
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
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the devices this worker would register (CPUs, memory, GPUs, NCCL) as JSON.
    Devices,
    /// Benchmarks that run inside this process and print JSON lines.
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// Train the peers' reference MLP (784-512-512-10, batch 128, SGD lr 0.05) on one worker.
    Train {
        #[arg(long, default_value_t = 400)]
        steps: u64,
        #[arg(long, default_value_t = 50)]
        warmup: u64,
        /// This process's rank, and the number of ranks (data-parallel over the TCP ring). With
        /// several ranks it prints `addr HOST:PORT` and reads every rank's address from stdin.
        #[arg(long, default_value_t = 0)]
        rank: usize,
        #[arg(long, default_value_t = 1)]
        world: usize,
        /// Synchronise through these parameter servers (comma-separated addresses, one shard
        /// each) instead of the ring.
        #[arg(long, value_delimiter = ',')]
        ps_servers: Vec<String>,
        /// Parameter-server mode: async, ssp or sync.
        #[arg(long, default_value = "async")]
        ps_mode: String,
    },
    /// Push-and-pull throughput against parameter servers: one rank of `shoal bench ps`.
    PsLoad {
        #[arg(long)]
        rank: usize,
        #[arg(long)]
        world: usize,
        #[arg(long, value_delimiter = ',', required = true)]
        servers: Vec<String>,
        #[arg(long, default_value_t = 100)]
        model_mb: usize,
        #[arg(long, default_value_t = 10)]
        iters: usize,
        /// Job id on the servers (each run needs its own).
        #[arg(long)]
        job: String,
    },
    /// Pipeline training of the peers' MLP: one stage of a run that `shoal bench pipeline` starts
    /// (it prints `addr HOST:PORT` and reads every stage's address from stdin).
    Pipeline {
        #[arg(long, default_value_t = 0)]
        rank: usize,
        #[arg(long, default_value_t = 2)]
        stages: usize,
        #[arg(long, default_value = "784,512,512,10", value_delimiter = ',')]
        dims: Vec<usize>,
        #[arg(long, default_value = "gpipe,1f1b", value_delimiter = ',')]
        schedules: Vec<String>,
        #[arg(long, default_value = "1,4,8,16", value_delimiter = ',')]
        microbatches: Vec<usize>,
        #[arg(long, default_value = "false,true", value_delimiter = ',')]
        recompute: Vec<bool>,
        #[arg(long, default_value_t = 100)]
        steps: u64,
        #[arg(long, default_value_t = 10)]
        warmup: u64,
    },
    /// All-reduce bandwidth over the TCP ring: one rank of a run that `shoal bench allreduce` starts.
    Allreduce {
        #[arg(long)]
        rank: usize,
        #[arg(long)]
        world: usize,
        #[arg(long, default_value = "4K,64K,1M,16M,64M,256M")]
        sizes: String,
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        #[arg(long, default_value_t = 5)]
        min_iters: usize,
        #[arg(long, default_value_t = 300)]
        max_iters: usize,
        /// Target timed seconds per size.
        #[arg(long, default_value_t = 2.0)]
        budget_s: f64,
        /// ring (TCP) or nccl (GPU 0 of each rank; needs the `cuda` feature).
        #[arg(long, default_value = "ring")]
        backend: String,
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
    ];
    let config: WorkerConfig = match shoal_common::config::load(args.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shoal-worker: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = shoal_common::telemetry::init(config.log_format, &config.log) {
        eprintln!("shoal-worker: {e}");
        return ExitCode::from(2);
    }
    match args.command {
        Some(Command::Bench { which: Bench::Train { steps, warmup, rank, world, ps_servers, ps_mode } }) => {
            if ps_servers.is_empty() {
                bench_train(steps, warmup, rank, world)
            } else {
                match shoal_worker::bench::train_reference_ps(steps, warmup, rank, world, &ps_servers, &ps_mode) {
                    Ok(Some(record)) => {
                        println!("{}", shoal_worker::bench::meta("shoal_train"));
                        println!("{record}");
                        ExitCode::SUCCESS
                    }
                    Ok(None) => ExitCode::SUCCESS,
                    Err(e) => fail(format!("benchmark failed: {e}"), 1),
                }
            }
        }
        Some(Command::Bench { which: Bench::PsLoad { rank, world, servers, model_mb, iters, job } }) => {
            match shoal_worker::bench::ps_load(rank, world, &servers, model_mb << 20, iters.max(1), &job) {
                Ok((bytes, seconds)) => {
                    println!("{}", serde_json::json!({"rank": rank, "bytes": bytes, "seconds": seconds}));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(format!("benchmark failed: {e}"), 1),
            }
        }
        Some(Command::Bench {
            which: Bench::Allreduce { rank, world, sizes, warmup, min_iters, max_iters, budget_s, backend },
        }) => {
            let plan = shoal_worker::bench::AllReducePlan {
                warmup,
                min_iters: min_iters.max(1),
                max_iters: max_iters.max(1),
                budget_s,
            };
            bench_allreduce(rank, world, &sizes, &backend, &plan)
        }
        Some(Command::Bench {
            which: Bench::Pipeline { rank, stages, dims, schedules, microbatches, recompute, steps, warmup },
        }) => {
            let plan = shoal_worker::bench_pipeline::PipelinePlan {
                dims,
                schedules,
                microbatches,
                recompute,
                steps,
                warmup,
                timeout: BENCH_TIMEOUT,
            };
            bench_pipeline(rank, stages, &plan)
        }
        Some(Command::Devices) => {
            println!("{}", shoal_worker::devices::detect().to_json());
            ExitCode::SUCCESS
        }
        None => serve(config),
    }
}

/// Deadline of benchmark collectives.
const BENCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

fn fail(message: impl std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("shoal-worker: {message}");
    ExitCode::from(code)
}

fn bench_train(steps: u64, warmup: u64, rank: usize, world: usize) -> ExitCode {
    if steps <= warmup {
        return fail("--steps must be larger than --warmup", 2);
    }
    if world == 0 || rank >= world {
        return fail("--rank must be below --world", 2);
    }
    let mut ring = None;
    if world > 1 {
        match shoal_worker::bench::join_ring(rank, world, BENCH_TIMEOUT) {
            Ok(r) => ring = Some(r),
            Err(e) => return fail(e, 1),
        }
    }
    let collective = ring.as_mut().map(|r| r as &mut dyn shoal_train::Collective);
    match shoal_worker::bench::train_reference(steps, warmup, collective) {
        Ok(record) if rank == 0 => {
            println!("{}", shoal_worker::bench::meta("shoal_train"));
            println!("{record}");
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(format!("benchmark failed: {e}"), 1),
    }
}

fn bench_pipeline(rank: usize, stages: usize, plan: &shoal_worker::bench_pipeline::PipelinePlan) -> ExitCode {
    if stages == 0 || rank >= stages {
        return fail("--rank must be below --stages", 2);
    }
    if plan.dims.len() < stages + 1 || plan.dims.contains(&0) {
        return fail(format!("--dims: {stages} stages need at least {} positive widths", stages + 1), 2);
    }
    if plan.steps <= plan.warmup {
        return fail("--steps must be larger than --warmup", 2);
    }
    if let Some(m) = plan.microbatches.iter().find(|&&m| m == 0 || m > 512) {
        return fail(format!("--microbatches: {m} is not between 1 and the batch (512)"), 2);
    }
    if let Some(s) = plan.schedules.iter().find(|s| !matches!(s.as_str(), "gpipe" | "1f1b")) {
        return fail(format!("--schedules: `{s}` is not gpipe or 1f1b"), 2);
    }
    match shoal_worker::bench_pipeline::pipeline(rank, stages, plan) {
        Ok(records) => {
            for r in records {
                println!("{r}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("benchmark failed: {e}"), 1),
    }
}

fn bench_allreduce(
    rank: usize,
    world: usize,
    sizes: &str,
    backend: &str,
    plan: &shoal_worker::bench::AllReducePlan,
) -> ExitCode {
    let sizes = match shoal_worker::bench::parse_sizes(sizes) {
        Ok(s) => s,
        Err(e) => return fail(format!("--sizes: {e}"), 2),
    };
    if world == 0 || rank >= world {
        return fail("--rank must be below --world", 2);
    }
    let joined = match backend {
        "ring" => shoal_worker::bench::join_ring(rank, world, BENCH_TIMEOUT)
            .map(|r| Box::new(r) as Box<dyn shoal_train::Collective>),
        "nccl" => shoal_worker::bench::join_nccl(rank, world, BENCH_TIMEOUT),
        other => return fail(format!("--backend `{other}`: expected ring or nccl"), 2),
    };
    let mut collective = match joined {
        Ok(c) => c,
        Err(e) => return fail(e, 1),
    };
    if rank == 0 {
        println!("{}", shoal_worker::bench::meta("shoal_allreduce"));
    }
    match shoal_worker::bench::allreduce_sizes(collective.as_mut(), &sizes, plan, backend) {
        Ok(records) => {
            for r in records {
                println!("{r}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("benchmark failed: {e}"), 1),
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
