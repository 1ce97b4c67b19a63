//! Parameter-server jobs through the real binaries: workers and parameter-server processes
//! registered with one coordinator.

use std::time::Duration;

use shoal_common::proto::{JobState, SubmitJobRequest, job_event};
use shoal_tests::{Coordinator, DIGITS_JOB, start_param_server, start_worker, state_of, wait_terminal, watch_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_training_with_three_workers_and_two_shards_learns_digits() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let mut client = coordinator.client().await?;
    let _workers: Vec<_> =
        (0..3).map(|i| start_worker(dir.path(), &coordinator.url(), 1, &format!("w{i}"))).collect::<Result<_, _>>()?;
    let _servers: Vec<_> = (0..2)
        .map(|i| start_param_server(dir.path(), &coordinator.url(), &format!("ps{i}")))
        .collect::<Result<_, _>>()?;
    // Both servers must be there before placement, or both shards could land on the first.
    shoal_tests::wait_registered(&mut client, 3, 2, Duration::from_secs(30)).await?;
    // Asynchrony already acts like momentum: plain SGD (lr 0.1) is the stable choice here.
    let job = DIGITS_JOB.replace("lr = 0.05\nmomentum = 0.9", "lr = 0.1");
    assert_ne!(job, DIGITS_JOB);
    let text = format!("sync = \"ps\"\n{job}\n[parallelism]\ndata = 3\n[ps]\nshards = 2\nmode = \"async\"\n");
    let spec = shoal_common::spec::parse_toml(&text)?;
    let job = client.submit_job(SubmitJobRequest { spec: Some(spec) }).await?.into_inner().job_id;
    let done = wait_terminal(&mut client, &job, Duration::from_secs(120)).await?;
    assert_eq!(state_of(&done), JobState::Succeeded, "{}", done.reason);
    let accuracy = done.result.as_ref().and_then(|r| r.validation_accuracy).unwrap_or(0.0);
    assert!(accuracy >= 0.90, "accuracy {accuracy}");
    assert_eq!(done.ps_shards.len(), 2);
    let mut nodes: Vec<&str> = done.ps_shards.iter().map(|s| s.hostname.as_str()).collect();
    nodes.sort();
    assert_eq!(nodes, vec!["ps0", "ps1"], "one shard per parameter server");
    let events = watch_until(
        &mut client,
        &job,
        Duration::from_secs(5),
        |e| matches!(&e.kind, Some(job_event::Kind::State(s)) if s.state == JobState::Succeeded as i32),
    )
    .await?;
    let staleness_reported = events.iter().any(|e| {
        matches!(&e.kind, Some(job_event::Kind::Metric(m)) if m.extra.contains_key("pushes_per_s") && m.extra.contains_key("staleness_mean"))
    });
    assert!(staleness_reported, "workers report pushes/s and the staleness of their updates");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_parameter_server_fails_the_job_naming_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &["--reconnect-grace-ms", "20000"])?;
    let mut client = coordinator.client().await?;
    let _workers: Vec<_> =
        (0..2).map(|i| start_worker(dir.path(), &coordinator.url(), 1, &format!("w{i}"))).collect::<Result<_, _>>()?;
    let mut server = start_param_server(dir.path(), &coordinator.url(), "ps0")?;
    let text = format!(
        "sync = \"ps\"\n{}\n[parallelism]\ndata = 2\n[ps]\nmode = \"sync\"\n",
        shoal_tests::LONG_JOB.replace("[training]", "[training]\ncollective_timeout = 10\nmax_retries = 0")
    );
    let job = client
        .submit_job(SubmitJobRequest { spec: Some(shoal_common::spec::parse_toml(&text)?) })
        .await?
        .into_inner()
        .job_id;
    watch_until(&mut client, &job, Duration::from_secs(60), |e| shoal_tests::train_step(e).is_some_and(|s| s >= 20))
        .await?;
    server.sigkill();
    let killed = std::time::Instant::now();
    let failed = wait_terminal(&mut client, &job, Duration::from_secs(30)).await?;
    assert_eq!(state_of(&failed), JobState::Failed);
    assert!(failed.reason.contains("parameter server shard 0") && failed.reason.contains("ps0"), "{}", failed.reason);
    assert!(killed.elapsed() < Duration::from_secs(15), "detected after {:?}", killed.elapsed());
    Ok(())
}
