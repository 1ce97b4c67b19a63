//! A coordinator outage in the middle of training: SIGKILL the coordinator, keep it down for a few
//! seconds, start it again on the same address and database. The ranks train on without it,
//! reconnect, resend what the dead coordinator never stored, and the job finishes on its first
//! attempt with every progress report in its history exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use shoal_common::proto::{JobState, Split, SubmitJobRequest, job_event};
use shoal_tests::{Coordinator, TWO_RANKS, start_worker, state_of, train_step, wait_terminal, watch_until};

/// A loopback address nobody listens on right now.
fn free_addr() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranks_train_through_a_coordinator_outage_and_lose_no_report() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("c.db");
    let addr = free_addr()?;
    let mut first = Coordinator::start(dir.path(), &db, &["--listen", &addr])?;
    let mut client = first.client().await?;
    let _workers: Vec<_> =
        (0..2).map(|i| start_worker(dir.path(), &first.url(), 1, &format!("w{i}"))).collect::<Result<_, _>>()?;
    shoal_tests::wait_registered(&mut client, 2, 0, Duration::from_secs(30)).await?;
    let spec = shoal_common::spec::parse_toml(TWO_RANKS)?;
    let job = client.submit_job(SubmitJobRequest { spec: Some(spec) }).await?.into_inner().job_id;
    let seen =
        watch_until(&mut client, &job, Duration::from_secs(120), |e| train_step(e).is_some_and(|s| s >= 230)).await?;
    let step_at_crash = seen.iter().filter_map(train_step).max().unwrap_or(0);

    first.proc.sigkill();
    let down = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = Coordinator::start(dir.path(), &db, &["--listen", &addr])?;
    let mut client = second.client().await?;
    let done = wait_terminal(&mut client, &job, Duration::from_secs(180)).await?;
    assert_eq!(state_of(&done), JobState::Succeeded, "{}", done.reason);
    assert_eq!((done.attempt, done.retries), (1, 0), "trained through the outage: no restart");
    let accuracy = done.result.as_ref().and_then(|r| r.validation_accuracy).unwrap_or(0.0);
    assert!(accuracy >= 0.90, "accuracy {accuracy}");

    let events = shoal_tests::history_of_success(&mut client, &job).await?;
    // Every rank's progress, every 10 steps, each exactly once: reports made while the
    // coordinator was down (or sent into its dying connection) were resent and not doubled.
    let mut per_rank: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for e in &events {
        if let Some(job_event::Kind::Metric(m)) = &e.kind
            && m.split == Split::Train as i32
        {
            per_rank.entry(m.rank).or_default().push(m.step);
        }
    }
    let expected: Vec<u64> = (1..=150).map(|i| i * 10).collect();
    assert_eq!(per_rank.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
    for (rank, steps) in &per_rank {
        assert_eq!(steps, &expected, "rank {rank}'s progress history");
    }
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "gap-free event numbers");
    println!(
        "outage: coordinator down 3 s from step {step_at_crash}; job finished {:.1} s after the crash",
        down.elapsed().as_secs_f64()
    );
    Ok(())
}
