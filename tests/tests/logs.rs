//! The worker's log through the real binaries: a job's progress lines stay the same length from
//! its first report to its last (no span field that grows with every report).

use std::time::Duration;

use shoal_common::proto::{JobState, SubmitJobRequest};
use shoal_tests::{Coordinator, DIGITS_JOB, start_worker, state_of, wait_terminal};

/// The digits job for 400 steps with a progress report every 4 steps (100 reports).
fn frequent_progress() -> String {
    DIGITS_JOB.replace("epochs = 20", "steps = 400").replace("log_every = 10", "log_every = 4")
}

/// Characters a progress line may gain from wider numbers (a 3-digit step, a longer loss or
/// throughput), far less than the dozens of reports' worth of text a growing span field would add.
const WIDER_NUMBERS: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_lines_do_not_grow_with_the_step_count() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let mut client = coordinator.client().await?;
    let worker = start_worker(dir.path(), &coordinator.url(), 1, "log-worker")?;
    let spec = shoal_common::spec::parse_toml(&frequent_progress())?;
    let job = client.submit_job(SubmitJobRequest { spec: Some(spec) }).await?.into_inner().job_id;
    let done = wait_terminal(&mut client, &job, Duration::from_secs(120)).await?;
    anyhow::ensure!(state_of(&done) == JobState::Succeeded, "job ended {:?}: {}", state_of(&done), done.reason);

    let log = worker.log_text();
    let progress: Vec<&str> = log.lines().filter(|l| l.contains(&job) && l.contains(": progress ")).collect();
    anyhow::ensure!(progress.len() >= 90, "expected about 100 progress lines, found {}:\n{log}", progress.len());
    for line in &progress {
        anyhow::ensure!(line.matches("step=").count() == 1, "a progress line names one step: {line}");
    }
    let (first, last) = (&progress[..5], &progress[progress.len() - 5..]);
    let longest_first = first.iter().map(|l| l.len()).max().unwrap_or_default();
    for line in last {
        anyhow::ensure!(
            line.len() <= longest_first + WIDER_NUMBERS,
            "a late progress line ({} chars) is much longer than the early ones ({longest_first}):\n{line}\nfirst:\n{}",
            line.len(),
            first[0]
        );
    }
    Ok(())
}
