//! `shoal`: the command-line client.
//!
//! Exit codes: 0 success, 1 the job failed or was cancelled, 2 bad input or usage (including a
//! spec the coordinator rejects and unknown ids), 3 the coordinator could not be reached or
//! failed internally.

mod checkpoints;
mod client;
mod commands;
mod error;
mod jobfile;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use error::CliError;

/// Shoal: distributed training jobs on a cluster of workers.
#[derive(Parser, Debug)]
#[command(name = "shoal", version = shoal_version::VERSION, propagate_version = true)]
struct Cli {
    /// Coordinator URL.
    #[arg(long, global = true, env = "SHOAL_COORDINATOR", default_value = "http://127.0.0.1:7470")]
    coordinator: String,
    /// Seconds to wait for the coordinator on each request.
    #[arg(long, global = true, default_value_t = 10)]
    timeout: u64,
    /// Bearer token for the coordinator (SHOAL_TOKEN).
    #[arg(long, global = true, env = "SHOAL_TOKEN", default_value = "", hide_env_values = true)]
    token: String,
    /// PEM CA to trust: talk TLS to the coordinator (SHOAL_TLS_CA).
    #[arg(long, global = true, env = "SHOAL_TLS_CA", default_value = "")]
    tls_ca: String,
    /// PEM client certificate, for a coordinator that requires one (SHOAL_TLS_CERT).
    #[arg(long, global = true, env = "SHOAL_TLS_CERT", default_value = "")]
    tls_cert: String,
    /// PEM key of --tls-cert (SHOAL_TLS_KEY).
    #[arg(long, global = true, env = "SHOAL_TLS_KEY", default_value = "")]
    tls_key: String,
    /// Name the coordinator's certificate carries, when not the host in --coordinator.
    #[arg(long, global = true, env = "SHOAL_TLS_SERVER_NAME", default_value = "")]
    tls_server_name: String,
    /// Log format of the client's own diagnostics: pretty or json.
    #[arg(long, global = true, default_value = "pretty")]
    log_format: String,
    /// Log filter (RUST_LOG syntax) of the client's own diagnostics.
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Submit a job file; prints the job id.
    Submit {
        /// TOML job file.
        file: PathBuf,
        /// Follow the job until it ends (exit 1 if it fails).
        #[arg(long)]
        watch: bool,
        /// Override the file's priority.
        #[arg(long, allow_hyphen_values = true)]
        priority: Option<i64>,
        /// Do not check that dataset files exist on this machine (they live on the workers).
        #[arg(long)]
        no_path_check: bool,
    },
    /// Check a job file without submitting it.
    Validate {
        file: PathBuf,
        #[arg(long)]
        no_path_check: bool,
    },
    /// Show one job.
    Status {
        job: String,
        /// Print the job as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List jobs, newest first.
    List {
        /// Only jobs in this state (queued, running, succeeded, failed, cancelled); repeatable.
        #[arg(long = "state")]
        states: Vec<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Follow a job's progress until it ends (exit 1 if it fails).
    Watch { job: String },
    /// Cancel a queued or running job.
    Cancel {
        job: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The trials of a search job, best first: parameters, metric, budget used, state and why
    /// each stopped.
    Trials {
        job: String,
        #[arg(long)]
        json: bool,
    },
    /// The best configuration of a search job as a job file (at full fidelity), and its checkpoint.
    Best {
        job: String,
        /// Write the job file here instead of printing it.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// List registered workers.
    Workers {
        #[arg(long)]
        json: bool,
    },
    /// Start a coordinator and workers on this machine, run a job file to completion, stop them.
    Local {
        /// TOML job file (default: the bundled digits MLP).
        file: Option<PathBuf>,
        /// Worker processes to start (default: what the job needs, at least 2).
        #[arg(long)]
        workers: Option<u32>,
        /// Folder for the database, checkpoints and logs (default: a new temporary folder).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Serve the web dashboard on this loopback address and print its URL (with the run's
        /// token); it stays up after the job until Ctrl-C. Port 0 picks a free port.
        #[arg(long, num_args = 0..=1, default_missing_value = "127.0.0.1:7473", value_name = "ADDR")]
        dashboard: Option<String>,
        /// Export the coordinator's, workers' and parameter servers' spans to this OTLP/gRPC
        /// collector (http://HOST:PORT).
        #[arg(long, env = "SHOAL_OTLP_ENDPOINT", value_name = "URL")]
        otlp_endpoint: Option<String>,
    },
    /// Create a certificate authority and certificates for TLS and mutual TLS: ca.pem, node.pem
    /// (coordinators, parameter servers and workers) and client.pem (users), with their keys.
    Certs {
        /// Folder to write them to.
        #[arg(long)]
        dir: PathBuf,
        /// Host names and IP addresses node.pem is valid for (besides localhost); repeatable.
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Days of validity.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Quantize an fp32 checkpoint to int8 (post-training, calibrated); `--help` lists the options.
    #[command(disable_help_flag = true)]
    Quantize {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Evaluate an artifact on a labelled CSV file: metrics overall and per slice with bootstrap
    /// intervals, fairness rates per group; `--help` lists the options.
    #[command(disable_help_flag = true)]
    Evaluate {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Drift between reference and current data (and with `--artifact` the model's), once or
    /// for each window landing in a `--follow`ed folder; `--on-drift JOBFILE` submits a retraining
    /// job when drift is confirmed; `--help` lists the options.
    #[command(disable_help_flag = true)]
    Monitor {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Statistics of every column of a CSV file and the variance explained by the principal
    /// components of its numeric columns (to size a `pca` step of `dataset.transforms`); `--help`
    /// lists the options.
    #[command(disable_help_flag = true)]
    AnalyzeData {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Write an artifact's predictions (fp32, pruned or int8) for a CSV or IDX file; `--help`
    /// lists the options.
    #[command(disable_help_flag = true)]
    Predict {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Compare artifacts: accuracy and its drop, size, parameters, sparsity, batch-1 latency and
    /// batch-256 throughput on one thread; `--help` lists the options.
    #[command(disable_help_flag = true)]
    Compare {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print the completion script for a shell, e.g. `shoal completions bash >
    /// /etc/bash_completion.d/shoal`.
    Completions { shell: clap_complete::Shell },
    /// Write man pages (shoal.1 and one per command) into a folder.
    Man {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Benchmarks; each prints JSON lines on stdout.
    Bench {
        #[command(subcommand)]
        which: commands::bench::Which,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let format = match cli.log_format.parse() {
        Ok(f) => f,
        Err(e) => return CliError::usage(e).report(),
    };
    // `shoal local` runs a coordinator in this process: its log goes to a file in the data folder
    // so that the terminal shows the job's progress only.
    let local_dir = match &cli.command {
        Command::Local { data_dir, .. } => match commands::local::prepare_dir(data_dir.clone()) {
            Ok(d) => Some(d),
            Err(e) => return e.report(),
        },
        _ => None,
    };
    // Spans leave only from `shoal local`'s coordinator: the other commands are clients.
    let export = match &cli.command {
        Command::Local { otlp_endpoint: Some(endpoint), .. } => {
            match shoal_common::telemetry::Export::from_setting("shoal-coordinator", shoal_version::VERSION, endpoint) {
                Ok(e) => e,
                Err(e) => return CliError::usage(format!("--{}", e.to_string().replacen('_', "-", 1))).report(),
            }
        }
        _ => None,
    };
    let logging = match &local_dir {
        Some(dir) => std::fs::File::create(dir.join("coordinator.log"))
            .map_err(|e| format!("cannot create the coordinator log: {e}"))
            .and_then(|f| {
                shoal_common::telemetry::init_with_writer(format, "info", std::sync::Mutex::new(f), false, export)
                    .map_err(|e| e.to_string())
            }),
        None => shoal_common::telemetry::init(format, &cli.log, None).map_err(|e| e.to_string()),
    };
    // Declared before the runtime, so dropped after it: what the coordinator traced is sent.
    let _telemetry = match logging {
        Ok(t) => t,
        Err(e) => return CliError::usage(e).report(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => return CliError::unavailable(format!("cannot start the runtime: {e}")).report(),
    };
    match runtime.block_on(run(cli, local_dir)) {
        Ok(code) => code,
        Err(e) => e.report(),
    }
}

async fn run(cli: Cli, local_dir: Option<PathBuf>) -> Result<ExitCode, CliError> {
    let tls = shoal_common::tls::ClientTls::new(&cli.tls_ca, &cli.tls_cert, &cli.tls_key, &cli.tls_server_name)
        .map_err(|e| CliError::usage(format!("--{}", e.replacen('_', "-", 1))))?;
    let target = client::Target::new(&cli.coordinator, cli.timeout)?.with_token(&cli.token).with_tls(tls);
    match cli.command {
        Command::Submit { file, watch, priority, no_path_check } => {
            commands::submit::run(&target, &file, watch, priority, !no_path_check).await
        }
        Command::Validate { file, no_path_check } => commands::submit::validate(&file, !no_path_check),
        Command::Status { job, json } => commands::inspect::status(&target, &job, json).await,
        Command::List { states, limit, json } => commands::inspect::list(&target, &states, limit, json).await,
        Command::Watch { job } => commands::watch::run(&target, &job).await,
        Command::Cancel { job, reason } => commands::inspect::cancel(&target, &job, &reason).await,
        Command::Workers { json } => commands::inspect::workers(&target, json).await,
        Command::Trials { job, json } => commands::search::trials(&target, &job, json).await,
        Command::Best { job, output } => commands::search::best(&target, &job, output.as_deref()).await,
        Command::Local { file, workers, dashboard, otlp_endpoint, .. } => {
            let dir = local_dir.ok_or_else(|| CliError::usage("no data folder"))?;
            let options = commands::local::Options { dashboard, otlp_endpoint, timeout_s: cli.timeout };
            commands::local::run(file.as_deref(), workers, dir, &options).await
        }
        Command::Certs { dir, hosts, days } => {
            let made = shoal_common::tls::generate(&dir, &hosts, days).map_err(CliError::usage)?;
            println!(
                "wrote {}: ca.pem, node.pem, client.pem and their keys (*-key.pem, owner-only)",
                made.dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { which } => commands::bench::run(which).await,
        Command::Completions { shell } => commands::docs::completions(Cli::command(), shell),
        Command::Man { dir } => commands::docs::man(Cli::command(), &dir),
        Command::Quantize { args } => commands::compress::passthrough("quantize", &args),
        Command::Predict { args } => commands::compress::passthrough("predict", &args),
        Command::Evaluate { args } => commands::compress::passthrough("evaluate", &args),
        Command::AnalyzeData { args } => commands::compress::passthrough("analyze-data", &args),
        Command::Monitor { args } => commands::monitor::run(&target, &args).await,
        Command::Compare { args } => commands::compress::passthrough("compare", &args),
    }
}
