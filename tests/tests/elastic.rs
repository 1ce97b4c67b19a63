//! Elastic data parallelism through the binaries: a job with `data = "2..3"` starts on three
//! workers, continues on two when one is SIGKILLed (learning rate scaled by 2/3), grows back to
//! three when a new worker registers, and still reaches digits accuracy.

use std::time::{Duration, Instant};

use shoal_common::proto::{Job, JobState, SubmitJobRequest, job_event};
use shoal_common::spec;
use shoal_tests::{Coordinator, TWO_RANKS, get, start_worker, state_of, train_step, wait_terminal, watch_until};

fn elastic() -> String {
    TWO_RANKS
        .replace("steps = 1500", "steps = 4000")
        .replace("collective_timeout = 10", "collective_timeout = 5")
        .replace("data = 2", "data = \"2..3\"")
}

async fn wait_for(
    client: &mut shoal_common::proto::job_service_client::JobServiceClient<tonic::transport::Channel>,
    job: &str,
    what: &str,
    ok: impl Fn(&Job) -> bool,
) -> anyhow::Result<Job> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let j = get(client, job).await?;
        if ok(&j) {
            return Ok(j);
        }
        anyhow::ensure!(Instant::now() < deadline, "{what}: job is {:?} ({})", state_of(&j), j.reason);
        anyhow::ensure!(!state_of(&j).is_terminal(), "{what}: job ended early: {}", j.reason);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn elastic_ranges_parse_and_validate() {
    let (s, cfg) = spec::load_toml(&elastic()).expect("valid");
    assert_eq!((cfg.parallel.min_data, cfg.parallel.data), (2, 3));
    assert!(spec::to_toml(&s).contains("data = \"2..3\""), "{}", spec::to_toml(&s));
    for (bad, why) in [
        ("\"3..2\"", "MIN must be between 1 and MAX"),
        ("\"0..2\"", "MIN must be between 1 and MAX"),
        ("\"two..four\"", "neither a number of ranks nor a range"),
    ] {
        let text = elastic().replace("\"2..3\"", bad);
        let err = spec::load_toml(&text).expect_err(bad).to_string();
        assert!(err.contains("parallelism.data") && err.contains(why), "{bad}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_elastic_job_shrinks_when_a_worker_dies_and_grows_when_one_returns() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let mut client = coordinator.client().await?;
    let mut workers: Vec<_> =
        (0..3).map(|i| start_worker(dir.path(), &coordinator.url(), 1, &format!("w{i}"))).collect::<Result<_, _>>()?;
    shoal_tests::wait_registered(&mut client, 3, 0, Duration::from_secs(30)).await?;
    let job =
        client.submit_job(SubmitJobRequest { spec: Some(spec::parse_toml(&elastic())?) }).await?.into_inner().job_id;
    watch_until(&mut client, &job, Duration::from_secs(120), |e| train_step(e).is_some_and(|s| s >= 230)).await?;
    let first = get(&mut client, &job).await?;
    assert_eq!(first.ranks.len(), 3, "starts on every worker there is");

    let victim = first.ranks[2].worker_id.clone();
    let index = workers.iter().position(|w| w.log_text().contains(&victim)).expect("victim process");
    workers[index].sigkill();
    let shrunk = wait_for(&mut client, &job, "shrink", |j| {
        state_of(j) == JobState::Running && j.ranks.len() == 2 && j.attempt >= 2
    })
    .await?;
    assert!(shrunk.ranks.iter().all(|r| r.worker_id != victim));

    workers.push(start_worker(dir.path(), &coordinator.url(), 1, "w-new")?);
    let grown = wait_for(&mut client, &job, "grow", |j| state_of(j) == JobState::Running && j.ranks.len() == 3).await?;
    assert!(grown.attempt > shrunk.attempt);

    let done = wait_terminal(&mut client, &job, Duration::from_secs(240)).await?;
    assert_eq!(state_of(&done), JobState::Succeeded, "{}", done.reason);
    let accuracy = done.result.as_ref().and_then(|r| r.validation_accuracy).unwrap_or(0.0);
    assert!(accuracy >= 0.90, "accuracy {accuracy}");
    assert_eq!(done.retries, 1, "only the lost worker counts against the retry budget, not the growth");

    let events = shoal_tests::history_of_success(&mut client, &job).await?;
    let text: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(job_event::Kind::Notice(n)) => Some(n.message.clone()),
            Some(job_event::Kind::State(s)) => Some(s.reason.clone()),
            _ => None,
        })
        .collect();
    let has = |needle: &str| text.iter().any(|t| t.contains(needle));
    assert!(has("x 2/3 = 0.033333 (linear scaling)"), "the learning-rate rule is applied and said: {text:#?}");
    assert!(has("to grow from 2 to 3 ranks"), "{text:#?}");
    assert!(has("resizing: checkpointed at step"), "{text:#?}");
    Ok(())
}
