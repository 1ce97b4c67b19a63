//! Bounded chaos: while two training jobs and a search run, kill a random Shoal process (a worker
//! or the coordinator) every few seconds for a fixed time; a supervisor (as systemd or Kubernetes
//! would) starts each killed process again. Afterwards every job must be terminal, every
//! succeeded job must have a sane result, and the database must pass its checks.
//!
//! `SHOAL_CHAOS_SECONDS` (default 30) and `SHOAL_CHAOS_SEED` (default 7) change the run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use shoal_common::proto::job_service_client::JobServiceClient;
use shoal_common::proto::{JobState, ListJobsRequest, ListTrialsRequest, SubmitJobRequest};
use shoal_tests::{Coordinator, Proc, TWO_RANKS, bin, start_worker, state_of};
use tonic::transport::Channel;

/// The shared two-rank job, longer (so the kills land in training) and with retries to spare.
fn dp_job() -> String {
    TWO_RANKS
        .replace("steps = 1500", "steps = 4000")
        .replace("log_every = 10", "log_every = 20")
        .replace("collective_timeout = 10", "collective_timeout = 5\nmax_retries = 30")
}

const SEARCH: &str = r#"
name = "chaos-search"
[search]
strategy = "random"
max_trials = 4
max_concurrent = 2
seed = 3
params = [{ name = "optimizer.lr", type = "float", low = 0.02, high = 0.1, log = true }]
[model]
kind = "mlp"
layers = [{ width = 256 }]
[dataset]
kind = "digits"
validation_split = 0.2
[optimizer]
kind = "sgd"
lr = 0.05
momentum = 0.9
[training]
batch_size = 64
steps = 1500
eval_every = 500
checkpoint_every = 100
max_retries = 30
"#;

/// A small deterministic generator (xorshift), so a seed replays the same fault sequence.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn connect(url: &str) -> anyhow::Result<JobServiceClient<Channel>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match JobServiceClient::connect(url.to_owned()).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn start_coordinator(dir: &Path, db: &Path, addr: &str) -> anyhow::Result<Coordinator> {
    Coordinator::start(dir, db, &["--listen", addr])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_and_a_search_survive_random_kills() -> anyhow::Result<()> {
    let seconds = env_u64("SHOAL_CHAOS_SECONDS", 30);
    let mut rng = Rng(env_u64("SHOAL_CHAOS_SEED", 7).max(1));
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("c.db");
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.to_string();
    let url = format!("http://{addr}");
    let mut coordinator = start_coordinator(dir.path(), &db, &addr)?;
    let mut client = connect(&url).await?;
    let mut workers: Vec<Proc> =
        (0..3).map(|i| start_worker(dir.path(), &url, 1, &format!("w{i}"))).collect::<Result<_, _>>()?;
    shoal_tests::wait_registered(&mut client, 3, 0, Duration::from_secs(30)).await?;

    let mut submitted = Vec::new();
    for text in [dp_job(), dp_job().replace("data = 2", "data = 1"), SEARCH.to_owned()] {
        let spec = shoal_common::spec::parse_toml(&text)?;
        submitted.push(client.submit_job(SubmitJobRequest { spec: Some(spec) }).await?.into_inner().job_id);
    }
    let search = submitted[2].clone();

    // The chaos window: a kill every 2-5 s; the supervisor restarts what it killed.
    let mut kills = (0, 0);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut generation = 0;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(2_000 + rng.below(3_000))).await;
        generation += 1;
        let victim = rng.below(4);
        if victim == 3 {
            coordinator.proc.sigkill();
            kills.0 += 1;
            eprintln!("chaos: killed the coordinator");
            tokio::time::sleep(Duration::from_millis(500 + rng.below(1_500))).await;
            coordinator = start_coordinator(dir.path(), &db, &addr)?;
        } else {
            let i = victim as usize;
            workers[i].sigkill();
            kills.1 += 1;
            eprintln!("chaos: killed worker w{i}");
            workers[i] = start_worker(dir.path(), &url, 1, &format!("w{i}-{generation}"))?;
        }
    }
    eprintln!("chaos: {} coordinator kills, {} worker kills in {seconds} s", kills.0, kills.1);

    // Quiet: everything must reach a terminal state.
    let mut client = connect(&url).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let jobs = loop {
        let jobs = client.list_jobs(ListJobsRequest { states: Vec::new(), limit: 1000 }).await?.into_inner().jobs;
        if jobs.iter().all(|j| state_of(j).is_terminal()) {
            break jobs;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "jobs still not terminal: {:?}",
            jobs.iter().filter(|j| !state_of(j).is_terminal()).map(|j| (&j.job_id, &j.reason)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for id in &submitted {
        assert!(jobs.iter().any(|j| &j.job_id == id), "job {id} is still known");
    }
    let mut summary = Vec::new();
    for job in &jobs {
        let state = state_of(job);
        summary.push(format!("{} {:?} retries={}", job.job_id, state, job.retries));
        if state != JobState::Succeeded || job.job_id == search {
            continue;
        }
        let accuracy = job.result.as_ref().and_then(|r| r.validation_accuracy).unwrap_or(f64::NAN);
        assert!(accuracy.is_finite() && accuracy >= 0.8, "{}: accuracy {accuracy} after chaos", job.job_id);
    }
    eprintln!("chaos: {}", summary.join("; "));
    // The two training jobs had retries to spare: they must have made it.
    for id in &submitted[..2] {
        let job = jobs.iter().find(|j| &j.job_id == id).expect("job");
        assert_eq!(state_of(job), JobState::Succeeded, "{}: {}", job.job_id, job.reason);
    }
    let trials = client.list_trials(ListTrialsRequest { job_id: search.clone() }).await?.into_inner().trials;
    assert_eq!(trials.len(), 4, "the search ran its whole budget");
    assert!(trials.iter().all(|t| t.state != "running"), "{trials:?}");
    assert!(trials.iter().any(|t| t.state == "completed" && t.value.is_some_and(f64::is_finite)), "{trials:?}");

    // Kill it once more, then check the database at rest.
    coordinator.proc.sigkill();
    let check = Command::new(bin("shoal-coordinator")).arg("--check-database").arg("--database").arg(&db).output()?;
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    Ok(())
}
