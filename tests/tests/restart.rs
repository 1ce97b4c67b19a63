//! Coordinator restart: SIGKILL it, start a new one on the same database. Every job and its metric
//! history must be there, and a job that was queued must still run.

use std::time::Duration;

use shoal_common::proto::{JobState, SubmitJobRequest, job_event};
use shoal_tests::{Coordinator, DIGITS_JOB, get, start_worker, state_of, wait_none_ready, wait_terminal, watch_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_coordinator_restarts_with_every_job_and_metric() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("coordinator.db");
    let spec = shoal_common::spec::parse_toml(DIGITS_JOB)?;

    let mut first = Coordinator::start(dir.path(), &db, &[])?;
    let mut client = first.client().await?;
    let mut worker = start_worker(dir.path(), &first.url(), 1, "w1")?;
    let done = client.submit_job(SubmitJobRequest { spec: Some(spec.clone()) }).await?.into_inner().job_id;
    let finished = wait_terminal(&mut client, &done, Duration::from_secs(60)).await?;
    assert_eq!(state_of(&finished), JobState::Succeeded);
    let history = watch_until(
        &mut client,
        &done,
        Duration::from_secs(10),
        |e| matches!(&e.kind, Some(job_event::Kind::State(s)) if s.state == JobState::Succeeded as i32),
    )
    .await?;
    let metrics = history.iter().filter(|e| matches!(e.kind, Some(job_event::Kind::Metric(_)))).count();
    assert!(metrics > 20, "expected a metric history, got {metrics} points");

    // No worker: these stay queued through the crash.
    worker.sigkill();
    wait_none_ready(&mut client, Duration::from_secs(10)).await?;
    let mut queued = Vec::new();
    for _ in 0..2 {
        queued.push(client.submit_job(SubmitJobRequest { spec: Some(spec.clone()) }).await?.into_inner().job_id);
    }
    first.proc.sigkill();

    let second = Coordinator::start(dir.path(), &db, &[])?;
    let mut client = second.client().await?;
    let restored = get(&mut client, &done).await?;
    assert_eq!(state_of(&restored), JobState::Succeeded);
    assert_eq!(restored.result, finished.result, "the result survived");
    let replay = watch_until(
        &mut client,
        &done,
        Duration::from_secs(10),
        |e| matches!(&e.kind, Some(job_event::Kind::State(s)) if s.state == JobState::Succeeded as i32),
    )
    .await?;
    assert_eq!(replay, history, "the whole event history survived, byte for byte");
    for id in &queued {
        assert_eq!(state_of(&get(&mut client, id).await?), JobState::Queued);
    }

    let _worker = start_worker(dir.path(), &second.url(), 1, "w2")?;
    for id in &queued {
        let job = wait_terminal(&mut client, id, Duration::from_secs(60)).await?;
        assert_eq!(state_of(&job), JobState::Succeeded, "{}", job.reason);
        assert!(job.result.and_then(|r| r.validation_accuracy).unwrap_or(0.0) >= 0.9);
    }
    Ok(())
}
