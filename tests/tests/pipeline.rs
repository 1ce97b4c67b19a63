//! Pipeline jobs through the real binaries: stages on separate worker processes exchanging
//! activations over TCP, replicated data-parallel, a killed stage named by its neighbours, and
//! partitions that cannot work rejected at submit.

use std::time::Duration;

use shoal_common::proto::{JobState, SubmitJobRequest, job_event};
use shoal_tests::{
    Coordinator, DIGITS_JOB, LONG_JOB, code, get, job_file, shoal, start_worker, state_of, stderr, train_step,
    wait_terminal, watch_until,
};

fn pipelined(text: &str, replicas: u32, stages: u32, pipeline: &str, extra_training: &str) -> String {
    let text = text.replace("[training]", &format!("[training]\n{extra_training}"));
    format!("{text}\n[parallelism]\ndata = {replicas}\npipeline = {stages}\n[pipeline]\n{pipeline}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_of_two_stages_reach_single_worker_accuracy_on_digits() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let mut client = coordinator.client().await?;
    let _workers: Vec<_> =
        (0..4).map(|i| start_worker(dir.path(), &coordinator.url(), 1, &format!("w{i}"))).collect::<Result<_, _>>()?;
    let text = pipelined(DIGITS_JOB, 2, 2, "micro_batches = 4\nschedule = \"1f1b\"", "");
    let spec = shoal_common::spec::parse_toml(&text)?;
    let job = client.submit_job(SubmitJobRequest { spec: Some(spec) }).await?.into_inner().job_id;
    let done = wait_terminal(&mut client, &job, Duration::from_secs(180)).await?;
    assert_eq!(state_of(&done), JobState::Succeeded, "{}", done.reason);
    let accuracy = done.result.as_ref().and_then(|r| r.validation_accuracy).unwrap_or(0.0);
    assert!(accuracy >= 0.90, "accuracy {accuracy}");
    assert_eq!(done.ranks.len(), 4);
    let mut workers: Vec<&str> = done.ranks.iter().map(|r| r.worker_id.as_str()).collect();
    workers.sort();
    workers.dedup();
    assert_eq!(workers.len(), 4, "one stage per worker");
    let events = watch_until(
        &mut client,
        &job,
        Duration::from_secs(5),
        |e| matches!(&e.kind, Some(job_event::Kind::State(s)) if s.state == JobState::Succeeded as i32),
    )
    .await?;
    for rank in 0..4u32 {
        let stage = events.iter().find_map(|e| match &e.kind {
            Some(job_event::Kind::Metric(m)) if m.rank == rank => m.extra.get("stage").copied(),
            _ => None,
        });
        assert_eq!(stage, Some(f64::from(rank % 2)), "rank {rank} reports its stage");
        let bubble = events.iter().any(
            |e| matches!(&e.kind, Some(job_event::Kind::Metric(m)) if m.rank == rank && m.extra.contains_key("bubble")),
        );
        assert!(bubble, "rank {rank} reports its idle share");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_stage_is_named_by_its_neighbours_within_the_deadline() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &["--reconnect-grace-ms", "20000"])?;
    let mut client = coordinator.client().await?;
    let mut workers: Vec<_> =
        (0..3).map(|i| start_worker(dir.path(), &coordinator.url(), 1, &format!("w{i}"))).collect::<Result<_, _>>()?;
    let text = pipelined(LONG_JOB, 1, 3, "micro_batches = 4", "collective_timeout = 10\nmax_retries = 0");
    let spec = shoal_common::spec::parse_toml(&text)?;
    let job = client.submit_job(SubmitJobRequest { spec: Some(spec) }).await?.into_inner().job_id;
    watch_until(&mut client, &job, Duration::from_secs(60), |e| train_step(e).is_some_and(|s| s >= 20)).await?;
    let running = get(&mut client, &job).await?;
    let victim = &running.ranks[1];
    let hosts = shoal(&coordinator.url(), &["workers", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&hosts.stdout)?;
    let host = list
        .as_array()
        .and_then(|a| a.iter().find(|w| w["worker_id"] == victim.worker_id.as_str()))
        .map(|w| w["hostname"].as_str().unwrap_or_default().to_owned())
        .expect("victim host");
    let index: usize = host.trim_start_matches('w').parse()?;
    workers[index].sigkill();
    let killed = std::time::Instant::now();

    // The reconnect grace (20 s) outlasts the pipeline deadline (10 s): the neighbouring stages,
    // not the coordinator's liveness check, report the failure.
    let failed = wait_terminal(&mut client, &job, Duration::from_secs(30)).await?;
    let culprit = format!("rank 1 (worker {} on {host})", victim.worker_id);
    assert_eq!(state_of(&failed), JobState::Failed);
    assert!(failed.reason.contains(&culprit), "reason `{}` does not name {culprit}", failed.reason);
    assert!(killed.elapsed() < Duration::from_secs(10), "failed after {:?}", killed.elapsed());
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
async fn partitions_that_do_not_fit_the_model_are_rejected_at_submit() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let url = coordinator.url();
    let cases: &[(&str, String, &[&str])] = &[
        (
            "too-many-stages",
            pipelined(DIGITS_JOB, 1, 4, "", ""),
            &["parallelism.pipeline: 4 stages need at least 4 layers, but the model has 2"],
        ),
        (
            "cut-out-of-range",
            pipelined(LONG_JOB, 1, 3, "cuts = [1, 3]", ""),
            &["pipeline.cuts[1]: 3 is out of range: cut points lie between layers, in 1..=2"],
        ),
        (
            "cuts-and-micro-batches",
            pipelined(LONG_JOB, 1, 3, "cuts = [2, 1, 1]\nmicro_batches = 0", ""),
            &[
                "pipeline.cuts: 3 stages need 2 cut points, got 3",
                "pipeline.cuts[1]: 1 must be greater than the previous cut (2)",
                "pipeline.micro_batches: must be >= 1",
            ],
        ),
    ];
    for (name, text, expected) in cases {
        let file = job_file(dir.path(), name, text);
        let out = shoal(&url, &["submit", file.to_str().expect("utf-8")]);
        assert_eq!(code(&out), 2, "{name}: {}", stderr(&out));
        for e in *expected {
            assert!(stderr(&out).contains(e), "{name}: `{e}` not in:\n{}", stderr(&out));
        }
    }
    Ok(())
}
