//! Automatic recovery: a job that loses a rank restarts by itself from its last checkpoint on the
//! capacity that is left, within its retry budget, and says so in its event history.

use std::time::Duration;

use shoal_common::proto::{JobState, SubmitJobRequest, job_event};
use shoal_tests::{
    Coordinator, Proc, get, start_param_server, start_worker, state_of, train_step, wait_terminal, watch_until,
};

use shoal_tests::TWO_RANKS;

/// Runs `text` on three workers (and `servers` parameter servers), hits one process with `fault`
/// once training passed step 230, and checks that the job restarted once from a checkpoint and
/// still reached digits accuracy. Returns the job's events and how long the fault took to heal.
async fn survive(
    text: &str,
    servers: usize,
    fault: impl FnOnce(&shoal_common::proto::Job, &mut [Proc], &mut [Proc]) -> Option<String>,
) -> anyhow::Result<(Vec<shoal_common::proto::JobEvent>, Duration)> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let mut client = coordinator.client().await?;
    let mut workers: Vec<_> =
        (0..3).map(|i| start_worker(dir.path(), &coordinator.url(), 1, &format!("w{i}"))).collect::<Result<_, _>>()?;
    let mut ps: Vec<_> = (0..servers)
        .map(|i| start_param_server(dir.path(), &coordinator.url(), &format!("ps{i}")))
        .collect::<Result<_, _>>()?;
    shoal_tests::wait_registered(&mut client, 3, servers, Duration::from_secs(30)).await?;
    let spec = shoal_common::spec::parse_toml(text)?;
    let job = client.submit_job(SubmitJobRequest { spec: Some(spec) }).await?.into_inner().job_id;
    watch_until(&mut client, &job, Duration::from_secs(120), |e| train_step(e).is_some_and(|s| s >= 230)).await?;
    let running = get(&mut client, &job).await?;
    let avoided = fault(&running, &mut workers, &mut ps);
    let hit = std::time::Instant::now();

    let done = wait_terminal(&mut client, &job, Duration::from_secs(180)).await?;
    let healed = hit.elapsed();
    assert_eq!(state_of(&done), JobState::Succeeded, "{}", done.reason);
    assert_eq!(done.retries, 1, "one automatic restart");
    assert_eq!(done.attempt, 2);
    if let Some(bad) = avoided {
        assert!(done.ranks.iter().all(|r| r.worker_id != bad), "the restart avoided the faulty worker");
        assert!(done.ps_shards.iter().all(|s| s.node_id != bad), "the restart avoided the faulty server");
    }
    let accuracy = done.result.as_ref().and_then(|r| r.validation_accuracy).unwrap_or(0.0);
    assert!(accuracy >= 0.90, "accuracy {accuracy}");
    for w in &workers {
        w.sigcont();
    }
    let events = shoal_tests::history_of_success(&mut client, &job).await?;
    Ok((events, healed))
}

/// The id and the index of the process (worker or parameter server) that registered as `id`: each
/// logs its id when it registers.
fn process_of(id: &str, procs: &[Proc]) -> (String, usize) {
    let index = procs.iter().position(|p| p.log_text().contains(id)).expect("a process logged the id");
    (id.to_owned(), index)
}

fn restart_reason(events: &[shoal_common::proto::JobEvent]) -> String {
    events
        .iter()
        .find_map(|e| match &e.kind {
            Some(job_event::Kind::State(s))
                if s.state == JobState::Queued as i32 && s.reason.contains("restarting") =>
            {
                Some(s.reason.clone())
            }
            _ => None,
        })
        .expect("a restart event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_rank_restarts_the_job_from_its_checkpoint_on_the_spare_worker() -> anyhow::Result<()> {
    let (events, healed) = survive(TWO_RANKS, 0, |job, workers, _| {
        let (victim, index) = process_of(&job.ranks[1].worker_id, workers);
        workers[index].sigkill();
        Some(victim)
    })
    .await?;
    let restart = restart_reason(&events);
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
    assert!(step >= 200 && step.is_multiple_of(100), "resumed at {step}");
    eprintln!("fault to success: {healed:?}; resumed at step {step}; restart event: {restart}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_pipeline_stage_restarts_from_the_stage_checkpoints() -> anyhow::Result<()> {
    let text = TWO_RANKS.replace("data = 2", "data = 1\npipeline = 2\n[pipeline]\nmicro_batches = 4");
    let (events, healed) = survive(&text, 0, |job, workers, _| {
        let (victim, index) = process_of(&job.ranks[1].worker_id, workers);
        workers[index].sigkill();
        Some(victim)
    })
    .await?;
    let restart = restart_reason(&events);
    assert!(restart.contains("from checkpoint") && restart.contains("stage-0"), "{restart}");
    eprintln!("pipeline stage fault to success: {healed:?}; {restart}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_parameter_server_restarts_the_job_on_the_other_server() -> anyhow::Result<()> {
    let text = format!(
        "sync = \"ps\"\n{}",
        TWO_RANKS
            .replace("momentum = 0.9", "")
            .replace("[parallelism]", "[ps]\nshards = 1\nmode = \"sync\"\n[parallelism]")
    );
    let (events, healed) = survive(&text, 2, |job, _, servers| {
        let (victim, index) = process_of(&job.ps_shards[0].node_id, servers);
        servers[index].sigkill();
        Some(victim)
    })
    .await?;
    let restart = restart_reason(&events);
    assert!(restart.contains("parameter server shard 0"), "{restart}");
    eprintln!("parameter server fault to success: {healed:?}; {restart}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_worker_is_detected_and_the_job_recovers_elsewhere() -> anyhow::Result<()> {
    let (events, healed) = survive(TWO_RANKS, 0, |job, workers, _| {
        let (victim, index) = process_of(&job.ranks[1].worker_id, workers);
        workers[index].sigstop();
        Some(victim)
    })
    .await?;
    let restart = restart_reason(&events);
    assert!(
        restart.contains("stalled") || restart.contains("no heartbeat") || restart.contains("sent nothing"),
        "{restart}"
    );
    eprintln!("stall to success: {healed:?}; {restart}");
    Ok(())
}

/// A stalled worker that comes back after its job was given to another worker is told to stop
/// (its assignment is fenced by the attempt number), and nothing it reports counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_back_from_a_stall_is_fenced_from_its_old_assignment() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let mut client = coordinator.client().await?;
    let workers: Vec<_> =
        (0..2).map(|i| start_worker(dir.path(), &coordinator.url(), 1, &format!("w{i}"))).collect::<Result<_, _>>()?;
    shoal_tests::wait_registered(&mut client, 2, 0, Duration::from_secs(30)).await?;
    let text = TWO_RANKS.replace("data = 2", "data = 1").replace("steps = 1500", "steps = 3000");
    let job = client
        .submit_job(SubmitJobRequest { spec: Some(shoal_common::spec::parse_toml(&text)?) })
        .await?
        .into_inner()
        .job_id;
    watch_until(&mut client, &job, Duration::from_secs(120), |e| train_step(e).is_some_and(|s| s >= 230)).await?;
    let running = get(&mut client, &job).await?;
    let (victim, index) = process_of(&running.ranks[0].worker_id, &workers);
    workers[index].sigstop();
    // Lost after the heartbeat timeout, then restarted on the other worker.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while get(&mut client, &job).await?.ranks.first().is_none_or(|r| r.worker_id == victim) {
        anyhow::ensure!(std::time::Instant::now() < deadline, "the job did not move off the stalled worker");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    workers[index].sigcont();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !workers[index].log_text().contains("no longer holds the assignment") {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the returning worker was not fenced; log:\n{}",
            workers[index].log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = wait_terminal(&mut client, &job, Duration::from_secs(180)).await?;
    assert_eq!(state_of(&done), JobState::Succeeded, "{}", done.reason);
    assert_eq!((done.attempt, done.retries), (2, 1));
    assert_ne!(done.ranks[0].worker_id, victim, "the result is the new assignment's");
    Ok(())
}
