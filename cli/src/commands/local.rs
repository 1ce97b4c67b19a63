//! `shoal local`: a whole cluster on this machine. Starts the coordinator in this process (real
//! gRPC over loopback TCP, its SQLite database in a data folder), starts N `shoal-worker`
//! processes, runs one job file to completion with live progress, then stops everything.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use shoal_common::proto::{CancelJobRequest, SubmitJobRequest};
use shoal_coordinator::CoordinatorConfig;
use tokio::process::{Child, Command};

use crate::client::Target;
use crate::error::CliError;
use crate::jobfile;

/// The job `shoal local` runs when given no file.
const BUNDLED_JOB: &str = include_str!("../../../examples/digits-mlp.toml");
/// How long workers get to drain when the run ends.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Finds a Shoal binary: `$env`, next to this executable, or on PATH.
fn sibling_binary(name: &str, env: &str) -> Result<PathBuf, CliError> {
    if let Some(p) = std::env::var_os(env) {
        return Ok(PathBuf::from(p));
    }
    let exe =
        std::env::current_exe().map_err(|e| CliError::usage(format!("cannot locate the shoal executable: {e}")))?;
    let beside = exe.with_file_name(name);
    if beside.is_file() {
        return Ok(beside);
    }
    if let Some(path) = std::env::var_os("PATH")
        && let Some(found) = std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
    {
        return Ok(found);
    }
    Err(CliError::usage(format!(
        "{name} not found next to {} or on PATH; build it with `cargo build --release` or set {env}",
        exe.display()
    )))
}

/// The `shoal-worker` binary ($SHOAL_WORKER_BIN, next to this executable, or on PATH).
pub fn worker_binary() -> Result<PathBuf, CliError> {
    sibling_binary("shoal-worker", "SHOAL_WORKER_BIN")
}

/// The `shoal-param-server` binary ($SHOAL_PARAM_SERVER_BIN, next to this executable, or on PATH).
pub fn param_server_binary() -> Result<PathBuf, CliError> {
    sibling_binary("shoal-param-server", "SHOAL_PARAM_SERVER_BIN")
}

struct Cluster {
    coordinator: shoal_coordinator::CoordinatorHandle,
    workers: Vec<Child>,
}

impl Cluster {
    async fn stop(mut self) {
        for w in &self.workers {
            if let Some(pid) = w.id() {
                // SAFETY: plain kill(2) on a child we started.
                unsafe {
                    libc::kill(pid as i32, libc::SIGTERM);
                }
            }
        }
        for w in &mut self.workers {
            if tokio::time::timeout(STOP_GRACE, w.wait()).await.is_err() {
                let _ = w.kill().await;
            }
        }
        self.coordinator.stop().await;
    }

    /// Resolves when every worker process has exited.
    async fn all_workers_exited(workers: &mut [Child]) {
        for w in workers.iter_mut() {
            let _ = w.wait().await;
        }
    }
}

/// The data folder of a local run: the one given, or a new temporary folder (kept afterwards).
pub fn prepare_dir(data_dir: Option<PathBuf>) -> Result<PathBuf, CliError> {
    let dir = match data_dir {
        Some(d) => d,
        None => tempfile::Builder::new()
            .prefix("shoal-local-")
            .tempdir()
            .map_err(|e| CliError::unavailable(format!("cannot create a data folder: {e}")))?
            .keep(),
    };
    std::fs::create_dir_all(&dir).map_err(|e| CliError::usage(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// Writes a credential readable by its owner only.
fn write_secret(path: &Path, value: &str) -> Result<(), CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CliError::unavailable(format!("cannot write {}: {e}", path.display())))?;
    f.write_all(value.as_bytes()).map_err(|e| CliError::unavailable(format!("cannot write {}: {e}", path.display())))
}

/// How `shoal local` runs besides its job and workers.
pub struct Options {
    /// Where to serve the dashboard, if at all.
    pub dashboard: Option<String>,
    /// The collector every process sends its spans to, if any.
    pub otlp_endpoint: Option<String>,
    /// How long the job may take, in seconds.
    pub timeout_s: u64,
}

pub async fn run(
    file: Option<&Path>,
    workers: Option<u32>,
    dir: PathBuf,
    options: &Options,
) -> Result<ExitCode, CliError> {
    let timeout_s = options.timeout_s;
    let dashboard = options.dashboard.as_deref().map(dashboard_addr).transpose()?;
    let otlp = options.otlp_endpoint.clone().unwrap_or_default();
    let job = match file {
        Some(f) => jobfile::load(f, true)?,
        None => jobfile::load_text(BUNDLED_JOB, Path::new("examples/digits-mlp.toml"), false)?,
    };
    let parallel = &job.config.parallel;
    let needed = (parallel.data * parallel.pipeline.stages) as u32;
    // A search runs its trials side by side: one set of workers per concurrent trial (up to 8).
    let wanted = match &job.search {
        Some(s) => needed * (s.config.max_concurrent as u32).min(8),
        None => needed,
    };
    let workers = workers.unwrap_or(wanted.max(2));
    if workers == 0 || workers > 64 {
        return Err(CliError::usage("--workers must be between 1 and 64"));
    }
    if workers < needed {
        return Err(CliError::usage(format!(
            "--workers {workers}: the job needs {needed} workers (parallelism.data x parallelism.pipeline)"
        )));
    }
    let worker_bin = worker_binary()?;

    // Throw-away credentials: only this command's processes know them.
    let client_token = shoal_common::auth::generate();
    let join_token = shoal_common::auth::generate();
    write_secret(&dir.join("client-token"), &client_token)?;
    // And a throw-away CA: every connection is mutual TLS, as on a shared network.
    let certs = shoal_common::tls::generate(&dir.join("tls"), &[], 7).map_err(CliError::unavailable)?;
    let path = |p: PathBuf| p.display().to_string();
    let (ca, node_cert, node_key) = (path(certs.ca()), path(certs.node_cert()), path(certs.node_key()));
    let client_tls = shoal_common::tls::ClientTls::new(&ca, &path(certs.client_cert()), &path(certs.client_key()), "")
        .map_err(CliError::unavailable)?;
    let config = CoordinatorConfig {
        tls_cert: node_cert.clone(),
        tls_key: node_key.clone(),
        tls_client_ca: ca.clone(),
        client_token: client_token.clone(),
        join_token: join_token.clone(),
        listen: "127.0.0.1:0".into(),
        // Only with --dashboard (a fixed port would clash with another `shoal local`); plain HTTP
        // on loopback, since a browser would not trust this run's throw-away CA.
        http_listen: dashboard.map(|a| a.to_string()).unwrap_or_default(),
        http_tls: shoal_coordinator::config::HttpTls::Off,
        database: dir.join("coordinator.db"),
        heartbeat_interval_ms: 1_000,
        heartbeat_timeout_ms: 5_000,
        reconnect_grace_ms: 5_000,
        ..CoordinatorConfig::default()
    };
    let coordinator = shoal_coordinator::start(&config)
        .await
        .map_err(|e| CliError::unavailable(format!("cannot start the coordinator: {e}")))?;
    let url = format!("https://{}", coordinator.addr);
    let dashboard_url = coordinator.http_addr.map(|a| format!("http://{a}/#token={client_token}"));
    if let Some(u) = &dashboard_url {
        eprintln!("shoal local: dashboard: {u}");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let cpus = (cores / workers).max(job.config.resources.cpus).max(1);
    eprintln!(
        "shoal local: coordinator on {}, {workers} worker(s) with {cpus} CPU(s) each; data and logs in {}",
        coordinator.addr,
        dir.display()
    );

    let mut children = Vec::new();
    for i in 0..workers {
        let log_path = dir.join(format!("worker-{i}.log"));
        let log = std::fs::File::create(&log_path)
            .map_err(|e| CliError::unavailable(format!("cannot create {}: {e}", log_path.display())))?;
        let child = Command::new(&worker_bin)
            .args(["--coordinator", &url, "--cpus", &cpus.to_string(), "--hostname", &format!("local-{i}")])
            .arg("--checkpoint-dir")
            .arg(dir.join("checkpoints"))
            .env("RAYON_NUM_THREADS", cpus.to_string())
            .env("SHOAL_JOIN_TOKEN", &join_token)
            .env("SHOAL_OTLP_ENDPOINT", &otlp)
            .envs([("SHOAL_TLS_CA", &ca), ("SHOAL_TLS_CERT", &node_cert), ("SHOAL_TLS_KEY", &node_key)])
            .env_remove("SHOAL_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| CliError::unavailable(format!("cannot start {}: {e}", worker_bin.display())))?;
        children.push(child);
    }
    // Jobs that synchronise through parameter servers get one server process per shard.
    if let shoal_common::spec::SyncKind::ParamServer { shards, .. } = job.config.parallel.sync {
        let bin = param_server_binary()?;
        for i in 0..shards {
            let log_path = dir.join(format!("param-server-{i}.log"));
            let log = std::fs::File::create(&log_path)
                .map_err(|e| CliError::unavailable(format!("cannot create {}: {e}", log_path.display())))?;
            let child = Command::new(&bin)
                .args(["--coordinator", &url, "--hostname", &format!("local-ps-{i}")])
                .args(["--tls-ca", &ca, "--tls-cert", &node_cert, "--tls-key", &node_key, "--tls-client-ca", &ca])
                .env("SHOAL_JOIN_TOKEN", &join_token)
                .env("SHOAL_OTLP_ENDPOINT", &otlp)
                .env_remove("SHOAL_CONFIG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| CliError::unavailable(format!("cannot start {}: {e}", bin.display())))?;
            children.push(child);
        }
        eprintln!("shoal local: started {shards} parameter server(s)");
    }
    let mut cluster = Cluster { coordinator, workers: children };

    let target = Target::new(&url, timeout_s)?.with_token(&client_token).with_tls(client_tls);
    let submitted = async {
        let mut client = target.connect().await?;
        let response = client.submit_job(target.request(SubmitJobRequest { spec: Some(job.spec.clone()) })).await?;
        Ok::<_, CliError>(response.into_inner().job_id)
    }
    .await;
    let job_id = match submitted {
        Ok(id) => id,
        Err(e) => {
            cluster.stop().await;
            return Err(e);
        }
    };
    eprintln!("shoal local: submitted {job_id} ({})", job.config.name);

    let outcome = tokio::select! {
        r = super::watch::run(&target, &job_id) => r,
        _ = Cluster::all_workers_exited(&mut cluster.workers) => Err(CliError::unavailable(format!(
            "every worker exited before the job finished; see the worker logs in {}", dir.display()
        ))),
        _ = tokio::signal::ctrl_c() => {
            eprintln!("shoal local: interrupted; cancelling {job_id}");
            if let Ok(mut client) = target.connect().await {
                let _ = client.cancel_job(target.request(CancelJobRequest { job_id: job_id.clone(), reason: "interrupted".into() })).await;
            }
            Err(CliError { code: 130, message: String::new() })
        }
    };
    if let Some(u) = dashboard_url.as_ref().filter(|_| outcome.is_ok()) {
        eprintln!("shoal local: {job_id} has ended; still serving the dashboard at {u} (Ctrl-C to stop)");
        let _ = tokio::signal::ctrl_c().await;
    }
    cluster.stop().await;
    eprintln!("shoal local: stopped; logs and checkpoints are in {}", dir.display());
    outcome
}

/// `--dashboard ADDR`: a loopback address (the dashboard of a local run is plain HTTP).
fn dashboard_addr(addr: &str) -> Result<std::net::SocketAddr, CliError> {
    let parsed: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| CliError::usage(format!("--dashboard: `{addr}` is not an address (host:port): {e}")))?;
    if !parsed.ip().is_loopback() {
        return Err(CliError::usage(format!(
            "--dashboard: {parsed} is not a loopback address; the dashboard of `shoal local` serves plain HTTP \
             to this machine only (run a coordinator with TLS to serve it further)"
        )));
    }
    Ok(parsed)
}
