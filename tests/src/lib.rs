//! Harness for cross-process tests: builds the release binaries once, starts coordinators and
//! workers as real processes on ephemeral loopback ports, runs the `shoal` CLI, and follows jobs
//! through the coordinator's event stream (no sleeps to wait for readiness).

pub mod browser;
pub mod http;
pub mod otlp;
pub mod prometheus;
pub mod tool;
pub mod webdriver;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use shoal_common::proto::job_service_client::JobServiceClient;
use shoal_common::proto::{GetJobRequest, Job, JobEvent, JobState, WatchJobRequest, job_event};
use tonic::transport::Channel;

/// Folder holding the release binaries (next to this test executable's `deps` folder).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf()
}

/// Path of a workspace binary, building the binaries first (once per test process) so that
/// `cargo test --release` alone is enough.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let profile = if bin_dir().ends_with("release") { vec!["--release"] } else { vec![] };
        let status = Command::new(cargo)
            // The whole workspace, as `cargo build --workspace` (which CI runs first) resolves its
            // features: naming packages would resolve other features and build everything again.
            .args(["build", "--quiet", "--workspace", "--bins"])
            .args(profile)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if status.success() { Ok(()) } else { Err(format!("building the binaries failed: {status}")) }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    bin_dir().join(name)
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a child process we own.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn sigkill(&mut self) {
        signal(&self.child, libc::SIGKILL);
        let _ = self.child.wait();
    }

    pub fn sigterm(&self) {
        signal(&self.child, libc::SIGTERM);
    }

    /// Freezes the process (a stall, not a death).
    pub fn sigstop(&self) {
        signal(&self.child, libc::SIGSTOP);
    }

    pub fn sigcont(&self) {
        signal(&self.child, libc::SIGCONT);
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("process {} did not exit within {limit:?}; log:\n{}", self.child.id(), self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A coordinator process.
pub struct Coordinator {
    pub proc: Proc,
    pub addr: SocketAddr,
    /// The HTTP port (`/metrics`), when the test did not choose its own `--http-listen`.
    pub http: Option<SocketAddr>,
    pub db: PathBuf,
}

impl Coordinator {
    /// Starts `shoal-coordinator` on an ephemeral port with its database at `db`; returns once it
    /// printed its address. Short liveness timings keep failure tests fast.
    pub fn start(dir: &Path, db: &Path, extra: &[&str]) -> Result<Self> {
        let log = dir.join(format!("coordinator-{}.log", unique()));
        // Short liveness timings keep failure tests fast; `extra` may override them.
        let defaults =
            [("--heartbeat-interval-ms", "500"), ("--heartbeat-timeout-ms", "3000"), ("--reconnect-grace-ms", "1500")];
        let mut args: Vec<&str> =
            if extra.contains(&"--listen") { Vec::new() } else { vec!["--listen", "127.0.0.1:0"] };
        // An ephemeral HTTP port too (the default 7471 would clash between tests), read back from
        // the second line the coordinator prints.
        let own_http = !extra.contains(&"--http-listen");
        if own_http {
            args.extend(["--http-listen", "127.0.0.1:0"]);
        }
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        let mut child = Command::new(bin("shoal-coordinator"))
            .args(args)
            .arg("--database")
            .arg(db)
            .args(extra)
            .env_remove("SHOAL_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log)?))
            .spawn()
            .context("start shoal-coordinator")?;
        let stdout = child.stdout.take().context("coordinator stdout")?;
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let mut http_line = String::new();
        if own_http {
            reader.read_line(&mut http_line)?;
        }
        let proc = Proc { child, log };
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .ok_or_else(|| anyhow!("unexpected coordinator output {line:?}; log:\n{}", proc.log_text()))?
            .parse()?;
        let http = match own_http {
            true => Some(
                http_line
                    .trim()
                    .strip_prefix("http on ")
                    .ok_or_else(|| anyhow!("unexpected coordinator output {http_line:?}; log:\n{}", proc.log_text()))?
                    .parse()?,
            ),
            false => None,
        };
        Ok(Self { proc, addr, http, db: db.to_path_buf() })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn client(&self) -> Result<JobServiceClient<Channel>> {
        Ok(JobServiceClient::connect(self.url()).await?)
    }
}

/// Starts a worker process for `coordinator_url` offering `cpus` cores.
pub fn start_worker(dir: &Path, coordinator_url: &str, cpus: u32, name: &str) -> Result<Proc> {
    start_worker_with(dir, coordinator_url, cpus, name, &[])
}

/// Like [`start_worker`], with extra environment variables (a join token, say).
pub fn start_worker_with(
    dir: &Path,
    coordinator_url: &str,
    cpus: u32,
    name: &str,
    env: &[(&str, &str)],
) -> Result<Proc> {
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(bin("shoal-worker"))
        .envs(env.iter().copied())
        .args(["--coordinator", coordinator_url, "--cpus", &cpus.to_string(), "--hostname", name])
        .arg("--checkpoint-dir")
        .arg(dir.join("checkpoints"))
        .env("RAYON_NUM_THREADS", "1")
        .env_remove("SHOAL_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log)?))
        .spawn()
        .context("start shoal-worker")?;
    Ok(Proc { child, log })
}

/// Starts a parameter-server process registered with `coordinator_url`.
pub fn start_param_server(dir: &Path, coordinator_url: &str, name: &str) -> Result<Proc> {
    start_param_server_with(dir, coordinator_url, name, &[])
}

/// Like [`start_param_server`], with extra environment variables.
pub fn start_param_server_with(dir: &Path, coordinator_url: &str, name: &str, env: &[(&str, &str)]) -> Result<Proc> {
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(bin("shoal-param-server"))
        .envs(env.iter().copied())
        .args(["--coordinator", coordinator_url, "--hostname", name])
        .env_remove("SHOAL_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log)?))
        .spawn()
        .context("start shoal-param-server")?;
    Ok(Proc { child, log })
}

/// Runs the `shoal` CLI against a coordinator and returns its output.
pub fn shoal(coordinator_url: &str, args: &[&str]) -> Output {
    Command::new(bin("shoal")).args(args).env("SHOAL_COORDINATOR", coordinator_url).output().expect("run shoal")
}

/// Exit code of a CLI run.
pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes a job file into `dir`.
pub fn job_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write job file");
    path
}

/// Submits the job file `text` with `shoal submit --watch` and returns its `shoal status --json`
/// once it succeeded.
pub fn run_job(url: &str, dir: &Path, name: &str, text: &str) -> Result<serde_json::Value> {
    let file = job_file(dir, name, text);
    let out = shoal(url, &["submit", file.to_str().context("utf-8 path")?, "--watch"]);
    if code(&out) != 0 {
        return Err(anyhow!("{name} failed:\n{}\n{}", stdout(&out), stderr(&out)));
    }
    let id = stdout(&out).lines().next().context("job id")?.trim().to_owned();
    let status = shoal(url, &["status", &id, "--json"]);
    if code(&status) != 0 {
        return Err(anyhow!("status of {name}: {}", stderr(&status)));
    }
    Ok(serde_json::from_str(&stdout(&status))?)
}

/// The final validation accuracy in a `shoal status --json` object.
pub fn accuracy(job: &serde_json::Value) -> f64 {
    job["result"]["validation_accuracy"].as_f64().expect("validation accuracy")
}

fn unique() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A digits MLP that reaches > 0.9 validation accuracy in well under a second of training.
pub const DIGITS_JOB: &str = r#"
name = "digits-e2e"
[model]
kind = "mlp"
layers = [{ width = 64 }]
[dataset]
kind = "digits"
validation_split = 0.2
[optimizer]
kind = "sgd"
lr = 0.05
momentum = 0.9
[training]
batch_size = 32
epochs = 20
seed = 3
log_every = 10
"#;

/// A digits MLP job file: `layers` as in `model.layers`, SGD with momentum 0.9 at lr 0.05, batch
/// 32; `training` adds its length and seed (`"epochs = 20\nseed = 1"`).
pub fn digits_mlp(name: &str, layers: &str, training: &str) -> String {
    format!(
        "name = \"{name}\"\n[model]\nkind = \"mlp\"\nlayers = {layers}\n[dataset]\nkind = \"digits\"\n\
         [optimizer]\nkind = \"sgd\"\nlr = 0.05\nmomentum = 0.9\n[training]\nbatch_size = 32\nlog_every = 100\n{training}\n"
    )
}

/// Two ranks on digits (MLP 64-512-512-10), long enough to be hit mid-run (1,500 steps),
/// checkpoints every 100 steps. Failure, outage, elastic and chaos tests vary it with `replace`.
pub const TWO_RANKS: &str = r#"
name = "two-ranks"
[model]
kind = "mlp"
layers = [{ width = 512 }, { width = 512 }]
[dataset]
kind = "digits"
validation_split = 0.2
[optimizer]
kind = "sgd"
lr = 0.05
momentum = 0.9
[training]
batch_size = 128
steps = 1500
log_every = 10
checkpoint_every = 100
collective_timeout = 10
[parallelism]
data = 2
"#;

/// A job long enough (about a minute) to be interrupted mid-run; progress every 10 steps and
/// checkpoints every 50.
pub const LONG_JOB: &str = r#"
name = "long"
[model]
kind = "mlp"
layers = [{ width = 512 }, { width = 512 }]
[dataset]
kind = "synthetic_classification"
samples = 4096
features = 784
classes = 10
[optimizer]
kind = "sgd"
lr = 0.05
[training]
batch_size = 128
steps = 8000
log_every = 10
checkpoint_every = 50
"#;

pub fn state_of(job: &Job) -> JobState {
    JobState::try_from(job.state).unwrap_or(JobState::Unspecified)
}

pub async fn get(client: &mut JobServiceClient<Channel>, job_id: &str) -> Result<Job> {
    Ok(client.get_job(GetJobRequest { job_id: job_id.into() }).await?.into_inner())
}

/// Follows a job's event stream (history first) until `stop` returns true for an event or the
/// deadline passes. Returns every event seen.
pub async fn watch_until(
    client: &mut JobServiceClient<Channel>,
    job_id: &str,
    limit: Duration,
    mut stop: impl FnMut(&JobEvent) -> bool,
) -> Result<Vec<JobEvent>> {
    let mut stream = client.watch_job(WatchJobRequest { job_id: job_id.into(), after_seq: 0 }).await?.into_inner();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let next = tokio::time::timeout_at(deadline, stream.message()).await.map_err(|_| {
            anyhow!(
                "job {job_id}: condition not reached within {limit:?}; last events: {:#?}",
                seen.iter().rev().take(3).collect::<Vec<_>>()
            )
        })??;
        let Some(event) = next else { bail!("job {job_id}: stream ended before the condition") };
        let done = stop(&event);
        seen.push(event);
        if done {
            return Ok(seen);
        }
    }
}

/// A succeeded job's whole event history (it must end within 10 s).
pub async fn history_of_success(client: &mut JobServiceClient<Channel>, job_id: &str) -> Result<Vec<JobEvent>> {
    watch_until(client, job_id, Duration::from_secs(10), |e| state_change(e) == Some(JobState::Succeeded)).await
}

/// The state an event moves its job to, if it is a state change.
pub fn state_change(e: &JobEvent) -> Option<JobState> {
    match &e.kind {
        Some(job_event::Kind::State(s)) => JobState::try_from(s.state).ok(),
        _ => None,
    }
}

/// Training step of a train metric event.
pub fn train_step(e: &JobEvent) -> Option<u64> {
    match &e.kind {
        Some(job_event::Kind::Metric(m)) if m.split == shoal_common::proto::Split::Train as i32 => Some(m.step),
        _ => None,
    }
}

/// Waits until the job reaches a terminal state; returns the final job.
pub async fn wait_terminal(client: &mut JobServiceClient<Channel>, job_id: &str, limit: Duration) -> Result<Job> {
    watch_until(client, job_id, limit, |e| state_change(e).is_some_and(JobState::is_terminal)).await?;
    get(client, job_id).await
}

/// Waits until `workers` workers and `servers` parameter servers are registered and connected, so
/// placement sees the whole cluster.
pub async fn wait_registered(
    client: &mut JobServiceClient<Channel>,
    workers: usize,
    servers: usize,
    limit: Duration,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let list = client.list_workers(shoal_common::proto::ListWorkersRequest {}).await?.into_inner().workers;
        let ready = |role: &str| {
            list.iter()
                .filter(|w| w.state == shoal_common::proto::WorkerState::Ready as i32)
                .filter(|w| w.info.as_ref().is_some_and(|i| i.role == role || (role == "worker" && i.role.is_empty())))
                .count()
        };
        if ready("worker") >= workers && ready("param-server") >= servers {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "only {} workers and {} parameter servers registered within {limit:?}",
                ready("worker"),
                ready("param-server")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the coordinator no longer counts any worker as ready, so that what is submitted next
/// stays queued (a killed worker's session takes a moment to be noticed as broken).
pub async fn wait_none_ready(client: &mut JobServiceClient<Channel>, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let list = client.list_workers(shoal_common::proto::ListWorkersRequest {}).await?.into_inner().workers;
        let ready = list.iter().filter(|w| w.state == shoal_common::proto::WorkerState::Ready as i32).count();
        if ready == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{ready} workers still ready after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A seeded stream of uniform and standard normal numbers for generated test data (splitmix64
/// and Box–Muller), the same on every machine.
pub struct Normal(pub u64);

impl Normal {
    pub fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-12), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}
