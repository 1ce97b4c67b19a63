//! `shoal bench dashboard`: what watching costs. First the peers' reference MLP trains as a real
//! job (in-process coordinator, one worker process, one thread) in rounds that alternate between
//! nobody watching and a watched run: the requests of an open job page (its update poll each
//! second) and a Prometheus-style scrape of the coordinator's and the worker's `/metrics` each
//! second. Then a finished job with `--points` metric points opens: the job page's time to
//! answer and its size. One JSON line per run, then the summary lines with the ratio.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shoal_common::http_client::get;
use shoal_common::proto::{GetJobRequest, JobState, SubmitJobRequest};
use shoal_coordinator::CoordinatorConfig;
use tokio::process::Command;

use super::local::worker_binary;
use crate::client::Target;
use crate::error::CliError;
use crate::jobfile;

/// The peers' reference MLP (`ddp_mlp.py`): 784-512-512-10, batch 128, SGD lr 0.05, one thread.
fn reference_job(steps: u64) -> String {
    format!(
        "name = \"bench-dashboard\"\n[model]\nkind = \"mlp\"\nlayers = [{{ width = 512 }}, {{ width = 512 }}]\n\
         [dataset]\nkind = \"synthetic_classification\"\nsamples = 8192\nfeatures = 784\nclasses = 10\n\
         [optimizer]\nkind = \"sgd\"\nlr = 0.05\n[training]\nbatch_size = 128\nsteps = {steps}\nlog_every = 10\nseed = 1\n"
    )
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> CliError {
    CliError::unavailable(format!("bench dashboard: {what}: {e}"))
}

/// Polls what an open job page and Prometheus would ask for, each second, until dropped.
struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Watcher {
    fn start(http: SocketAddr, worker_metrics: SocketAddr, job_id: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut after, mut requests) = (0u64, 0u64);
            while !flag.load(Ordering::Relaxed) {
                let started = Instant::now();
                if let Ok((200, body)) = get(http, &format!("/api/jobs/{job_id}/updates?after={after}"), None) {
                    let update: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    after = update["last_seq"].as_u64().unwrap_or(after);
                }
                let _ = get(http, "/metrics", None);
                let _ = get(worker_metrics, "/metrics", None);
                requests += 3;
                std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
            }
            requests
        });
        Self { stop, thread: Some(thread) }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }
}

/// Submits the job and waits for it; its samples/s as the worker measured them.
async fn train_once(
    target: &Target,
    spec: &shoal_common::proto::JobSpec,
    watch: Option<(SocketAddr, SocketAddr)>,
) -> Result<(f64, u64), CliError> {
    let mut client = target.connect().await?;
    let id =
        client.submit_job(target.request(SubmitJobRequest { spec: Some(spec.clone()) })).await?.into_inner().job_id;
    let watcher = watch.map(|(http, worker)| Watcher::start(http, worker, id.clone()));
    let deadline = Instant::now() + Duration::from_secs(600);
    let job = loop {
        let job = client.get_job(target.request(GetJobRequest { job_id: id.clone() })).await?.into_inner();
        if job.state().is_terminal() {
            break job;
        }
        if Instant::now() > deadline {
            return Err(unavailable("training", format!("{id} did not finish within 10 minutes")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let requests = watcher.map_or(0, Watcher::finish);
    if job.state() != JobState::Succeeded {
        return Err(unavailable("training", format!("{id} ended {}: {}", job.state().label(), job.reason)));
    }
    Ok((job.result.map_or(0.0, |r| r.samples_per_s), requests))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    if xs.is_empty() { 0.0 } else { xs[xs.len() / 2] }
}

/// The training rounds: quiet and watched, alternating.
pub async fn run(rounds: usize, steps: u64, points: u64) -> Result<ExitCode, CliError> {
    let dir = tempfile::tempdir().map_err(|e| unavailable("temporary folder", e))?;
    page_open(dir.path(), points).await?;
    let config = CoordinatorConfig {
        listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        database: dir.path().join("train.db"),
        ..CoordinatorConfig::default()
    };
    let coordinator = shoal_coordinator::start(&config).await.map_err(|e| unavailable("coordinator", e))?;
    let http = coordinator.http_addr.ok_or_else(|| unavailable("coordinator", "no HTTP port"))?;
    let worker_metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| unavailable("a free port", e))?;
    let url = format!("http://{}", coordinator.addr);
    let mut worker = Command::new(worker_binary()?)
        .args(["--coordinator", &url, "--cpus", "1", "--hostname", "bench-dashboard"])
        .args(["--metrics-listen", &worker_metrics.to_string()])
        .arg("--checkpoint-dir")
        .arg(dir.path().join("checkpoints"))
        .env("RAYON_NUM_THREADS", "1")
        .env_remove("SHOAL_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| unavailable("worker", e))?;
    let job = jobfile::load_text(&reference_job(steps), Path::new("bench-dashboard.toml"), false)?;
    let target = Target::new(&url, 30)?;
    let (mut quiet, mut watched, mut paired) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        for observed in [false, true] {
            let watch = observed.then_some((http, worker_metrics));
            let (sps, requests) = train_once(&target, &job.spec, watch).await?;
            println!(
                "{}",
                serde_json::json!({"bench": "dashboard", "phase": "train", "round": round, "watched": observed,
                    "samples_per_s": sps, "requests": requests, "steps": steps})
            );
            if observed {
                paired.push(sps / quiet.last().copied().unwrap_or(sps).max(f64::MIN_POSITIVE));
                watched.push(sps);
            } else {
                quiet.push(sps);
            }
        }
    }
    let (q, w) = (median(quiet), median(watched));
    println!(
        "{}",
        serde_json::json!({"bench": "dashboard", "metric": "train_samples_per_s_watched_vs_quiet",
            "quiet": q, "watched": w, "ratio": if q > 0.0 { w / q } else { 0.0 },
            "round_ratios": paired.clone(), "median_round_ratio": median(paired), "target": ">= 0.97",
            "rounds": rounds, "watch": "job page update poll + coordinator and worker /metrics, each 1 s"})
    );
    let _ = worker.kill().await;
    coordinator.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// A succeeded single-rank job as the coordinator stores it, with `points` training points (a
/// validation point every 100), as a worker reporting every 10 steps would have left it.
fn finished_job(
    id: &str,
    spec: shoal_common::proto::JobSpec,
    points: u64,
) -> (shoal_coordinator::store::JobRow, Vec<shoal_common::proto::JobEvent>) {
    use shoal_common::proto::{Job, JobEvent, MetricPoint, RankStatus, Split, job_event};
    let start = shoal_common::time::now_ms() - points as i64 * 10;
    let event = |seq: u64, kind| JobEvent {
        job_id: id.into(),
        seq,
        time: shoal_common::time::ms_to_timestamp(start + seq as i64 * 10),
        kind: Some(kind),
    };
    let total = points * 10;
    let mut events = Vec::with_capacity(points as usize + points as usize / 100);
    let mut last = MetricPoint::default();
    for i in 1..=points {
        let step = i * 10;
        let loss = 2.3 / (1.0 + step as f64 / 500.0) + 0.02 * ((i * 7919) % 13) as f64 / 13.0;
        last = MetricPoint {
            step,
            total_steps: total,
            split: Split::Train as i32,
            loss,
            lr: 0.05,
            samples_per_s: 16_000.0,
            elapsed_s: step as f64 / 100.0,
            ..Default::default()
        };
        events.push(event(events.len() as u64 + 1, job_event::Kind::Metric(last.clone())));
        if i % 100 == 0 {
            let validation =
                MetricPoint { split: Split::Validation as i32, accuracy: Some(1.0 - loss / 3.0), ..last.clone() };
            events.push(event(events.len() as u64 + 1, job_event::Kind::Metric(validation)));
        }
    }
    let job = Job {
        job_id: id.into(),
        spec: Some(spec),
        state: JobState::Succeeded as i32,
        reason: "finished".into(),
        attempt: 1,
        submitted_at: shoal_common::time::ms_to_timestamp(start),
        finished_at: shoal_common::time::ms_to_timestamp(shoal_common::time::now_ms()),
        ranks: vec![RankStatus {
            rank: 0,
            worker_id: "wrk-bench".into(),
            state: "succeeded".into(),
            last_train: Some(last.clone()),
        }],
        last_train: Some(last),
        ..Default::default()
    };
    let row = shoal_coordinator::store::JobRow {
        job,
        seq: 1,
        resume_from: String::new(),
        last_checkpoint: String::new(),
        gpus: vec![Vec::new()],
        next_event: events.len() as u64 + 1,
        holds_worker: false,
    };
    (row, events)
}

/// A finished job with `points` training points opens: the page's time to answer and its size.
async fn page_open(dir: &Path, points: u64) -> Result<(), CliError> {
    let database = dir.join("page.db");
    let id = "job-bench-page";
    {
        let job = jobfile::load_text(&reference_job(points * 10), Path::new("bench-dashboard.toml"), false)?;
        let mut store = shoal_coordinator::store::Store::open(&database).map_err(|e| unavailable("database", e))?;
        let (row, events) = finished_job(id, job.spec, points);
        store.save_job(&row, &events).map_err(|e| unavailable("database", e))?;
    }
    let config = CoordinatorConfig {
        listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        database,
        ..CoordinatorConfig::default()
    };
    let coordinator = shoal_coordinator::start(&config).await.map_err(|e| unavailable("coordinator", e))?;
    let http = coordinator.http_addr.ok_or_else(|| unavailable("coordinator", "no HTTP port"))?;
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let (status, body) = tokio::task::spawn_blocking(move || get(http, &format!("/jobs/{id}"), None))
            .await
            .map_err(|e| unavailable("job page", e))?
            .map_err(|e| unavailable("job page", e))?;
        if status != 200 {
            return Err(unavailable("job page", format!("status {status}")));
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        bytes = body.len();
    }
    println!(
        "{}",
        serde_json::json!({"bench": "dashboard", "metric": "job_page_open_ms", "points": points,
            "ms": median(times.clone()), "runs_ms": times, "bytes": bytes, "target_ms": 2000})
    );
    coordinator.stop().await;
    Ok(())
}
