//! Automatic recovery: a job that loses a rank restarts by itself from its last checkpoint on the
//! capacity that is left, within its retry budget, and says so in its event history.

use std::time::Duration;

use shoal_common::proto::{JobState, SubmitJobRequest, job_event};
use shoal_tests::{Coordinator, get, start_worker, state_of, train_step, wait_terminal, watch_until};

/// Two ranks on digits, long enough to be killed mid-run, checkpoints every 100 steps.
const TWO_RANKS: &str = r#"
name = "recovering"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_rank_restarts_the_job_from_its_checkpoint_on_the_spare_worker() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let mut client = coordinator.client().await?;
    let mut workers: Vec<_> =
        (0..3).map(|i| start_worker(dir.path(), &coordinator.url(), 1, &format!("w{i}"))).collect::<Result<_, _>>()?;
    shoal_tests::wait_registered(&mut client, 3, 0, Duration::from_secs(30)).await?;
    let spec = shoal_common::spec::parse_toml(TWO_RANKS)?;
    let job = client.submit_job(SubmitJobRequest { spec: Some(spec) }).await?.into_inner().job_id;
    watch_until(&mut client, &job, Duration::from_secs(120), |e| train_step(e).is_some_and(|s| s >= 230)).await?;
    let running = get(&mut client, &job).await?;
    let victim = running.ranks[1].worker_id.clone();
    let list = client.list_workers(shoal_common::proto::ListWorkersRequest {}).await?.into_inner().workers;
    let host = list.iter().find(|w| w.worker_id == victim).and_then(|w| w.info.as_ref()).map(|i| i.hostname.clone());
    let index: usize = host.unwrap_or_default().trim_start_matches('w').parse()?;
    workers[index].sigkill();
    let killed = std::time::Instant::now();

    let done = wait_terminal(&mut client, &job, Duration::from_secs(180)).await?;
    assert_eq!(state_of(&done), JobState::Succeeded, "{}", done.reason);
    assert_eq!(done.retries, 1, "one automatic restart");
    assert_eq!(done.attempt, 2);
    assert!(done.ranks.iter().all(|r| r.worker_id != victim), "the restart avoided the dead worker");
    let accuracy = done.result.as_ref().and_then(|r| r.validation_accuracy).unwrap_or(0.0);
    assert!(accuracy >= 0.90, "accuracy {accuracy}");

    let events = watch_until(
        &mut client,
        &job,
        Duration::from_secs(10),
        |e| matches!(&e.kind, Some(job_event::Kind::State(s)) if s.state == JobState::Succeeded as i32),
    )
    .await?;
    let restart = events
        .iter()
        .find_map(|e| match &e.kind {
            Some(job_event::Kind::State(s))
                if s.state == JobState::Queued as i32 && s.reason.contains("restarting") =>
            {
                Some(s.reason.clone())
            }
            _ => None,
        })
        .expect("a restart event");
    assert!(restart.contains("from checkpoint") && restart.contains("restart 1 of 3"), "{restart}");
    // The second attempt resumed at a checkpoint step: at most one checkpoint interval was lost.
    let resumed = events
        .iter()
        .find_map(|e| match &e.kind {
            Some(job_event::Kind::Notice(n)) => n.message.split("resumed at step ").nth(1).map(str::to_owned),
            _ => None,
        })
        .expect("a resume notice");
    let step: u64 = resumed.trim_end_matches(|c: char| !c.is_ascii_digit()).parse()?;
    assert!(step >= 200 && step % 100 == 0, "resumed at {step}");
    eprintln!("fault to success: {:?}; resumed at step {step}; restart event: {restart}", killed.elapsed());
    Ok(())
}
