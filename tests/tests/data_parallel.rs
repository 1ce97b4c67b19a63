//! Data-parallel jobs through the real binaries: gang-scheduled ranks on separate worker
//! processes, synchronised by the TCP ring.

use std::time::Duration;

use shoal_common::proto::{JobState, SubmitJobRequest, job_event};
use shoal_tests::{
    Coordinator, DIGITS_JOB, LONG_JOB, get, start_worker, state_of, train_step, wait_terminal, watch_until,
};

fn with_ranks(text: &str, ranks: u32, extra_training: &str) -> shoal_common::proto::JobSpec {
    let text = text.replace("[training]", &format!("[training]\n{extra_training}"));
    let mut spec = shoal_common::spec::parse_toml(&format!("{text}\n[parallelism]\ndata = {ranks}\n")).expect("spec");
    spec.name = format!("{}-{ranks}ranks", spec.name);
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_and_three_rank_jobs_reach_single_worker_accuracy() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let mut client = coordinator.client().await?;
    let _workers: Vec<_> =
        (0..3).map(|i| start_worker(dir.path(), &coordinator.url(), 1, &format!("w{i}"))).collect::<Result<_, _>>()?;
    for ranks in [2, 3] {
        let job = client
            .submit_job(SubmitJobRequest { spec: Some(with_ranks(DIGITS_JOB, ranks, "")) })
            .await?
            .into_inner()
            .job_id;
        let done = wait_terminal(&mut client, &job, Duration::from_secs(120)).await?;
        assert_eq!(state_of(&done), JobState::Succeeded, "{ranks} ranks: {}", done.reason);
        let accuracy = done.result.as_ref().and_then(|r| r.validation_accuracy).unwrap_or(0.0);
        assert!(accuracy >= 0.90, "{ranks} ranks: accuracy {accuracy}");
        assert_eq!(done.ranks.len(), ranks as usize);
        let mut workers: Vec<&str> = done.ranks.iter().map(|r| r.worker_id.as_str()).collect();
        workers.sort();
        workers.dedup();
        assert_eq!(workers.len(), ranks as usize, "one rank per worker");
        let events = watch_until(
            &mut client,
            &job,
            Duration::from_secs(5),
            |e| matches!(&e.kind, Some(job_event::Kind::State(s)) if s.state == JobState::Succeeded as i32),
        )
        .await?;
        for rank in 0..ranks {
            let reported = events.iter().any(|e| {
                matches!(&e.kind, Some(job_event::Kind::Metric(m)) if m.rank == rank && m.extra.contains_key("comm_share"))
            });
            assert!(reported, "rank {rank} reported its progress and communication share");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_rank_is_named_and_fails_the_job_within_the_deadline() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &["--reconnect-grace-ms", "20000"])?;
    let mut client = coordinator.client().await?;
    let mut workers: Vec<_> =
        (0..3).map(|i| start_worker(dir.path(), &coordinator.url(), 1, &format!("w{i}"))).collect::<Result<_, _>>()?;
    let spec = with_ranks(LONG_JOB, 3, "collective_timeout = 10\nmax_retries = 0");
    let job = client.submit_job(SubmitJobRequest { spec: Some(spec) }).await?.into_inner().job_id;
    watch_until(&mut client, &job, Duration::from_secs(60), |e| train_step(e).is_some_and(|s| s >= 20)).await?;
    let running = get(&mut client, &job).await?;
    let victim = &running.ranks[1];
    let hosts = shoal_tests::shoal(&coordinator.url(), &["workers", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&hosts.stdout)?;
    let host = list
        .as_array()
        .and_then(|a| a.iter().find(|w| w["worker_id"] == victim.worker_id.as_str()))
        .map(|w| w["hostname"].as_str().unwrap_or_default().to_owned())
        .expect("victim host");
    let index: usize = host.trim_start_matches('w').parse()?;
    workers[index].sigkill();
    let killed = std::time::Instant::now();

    // The reconnect grace (20 s) is longer than the collective deadline (10 s): the ranks, not the
    // coordinator's liveness check, report the failure.
    let failed = wait_terminal(&mut client, &job, Duration::from_secs(30)).await?;
    let culprit = format!("rank 1 (worker {} on {host})", victim.worker_id);
    assert_eq!(state_of(&failed), JobState::Failed);
    assert!(failed.reason.contains(&culprit), "reason `{}` does not name {culprit}", failed.reason);
    assert!(killed.elapsed() < Duration::from_secs(10), "failed after {:?}", killed.elapsed());
    // Every surviving rank names the same culprit in its log.
    for (i, w) in workers.iter().enumerate().filter(|(i, _)| *i != index) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !w.log_text().contains(&culprit) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(w.log_text().contains(&culprit), "worker w{i} did not name {culprit}:\n{}", w.log_text());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gangs_that_each_need_the_cluster_run_one_after_the_other() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let mut client = coordinator.client().await?;
    let _workers: Vec<_> =
        (0..2).map(|i| start_worker(dir.path(), &coordinator.url(), 1, &format!("w{i}"))).collect::<Result<_, _>>()?;
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(
            client
                .submit_job(SubmitJobRequest { spec: Some(with_ranks(DIGITS_JOB, 2, "")) })
                .await?
                .into_inner()
                .job_id,
        );
    }
    let mut done = Vec::new();
    for id in &ids {
        let job = wait_terminal(&mut client, id, Duration::from_secs(120)).await?;
        assert_eq!(state_of(&job), JobState::Succeeded, "{}", job.reason);
        done.push(job);
    }
    let ms = |t: &Option<prost_types::Timestamp>| t.as_ref().map(shoal_common::time::timestamp_to_ms).unwrap_or(0);
    let (first, second) =
        if ms(&done[0].started_at) <= ms(&done[1].started_at) { (&done[0], &done[1]) } else { (&done[1], &done[0]) };
    assert!(
        ms(&second.started_at) >= ms(&first.finished_at),
        "the gangs overlapped: the second started before the first ended"
    );
    Ok(())
}
