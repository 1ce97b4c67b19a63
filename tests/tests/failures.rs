//! Bad input and failures through the real binaries: each gets its documented exit code or status
//! and a message naming what is wrong; a lost worker fails its job with a reason; a drained worker
//! hands its job over to resume from the checkpoint.

use std::time::Duration;

use shoal_common::proto::worker_service_client::WorkerServiceClient;
use shoal_common::proto::{JobState, RegisterRequest, SubmitJobRequest, WorkerInfo, job_event};
use shoal_tests::{
    Coordinator, LONG_JOB, code, get, job_file, shoal, start_worker, state_of, stderr, train_step, wait_terminal,
    watch_until,
};
use tonic_types::StatusExt;

const GOOD_HEAD: &str = "name = \"bad\"\n[model]\nkind = \"mlp\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_job_files_exit_2_with_the_field_and_reason() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let url = coordinator.url();
    let cases: &[(&str, String, &[&str])] = &[
        ("malformed", "name = \"x\n[model".to_owned(), &["TOML parse error at line 2"]),
        ("unknown-field", format!("{GOOD_HEAD}widht = 3\n"), &["unknown field `widht`"]),
        (
            "sizes",
            format!(
                "{GOOD_HEAD}layers = [{{ width = 0 }}, {{ width = -3 }}]\n[dataset]\nkind = \"digits\"\n[training]\nbatch_size = -1\nepochs = 0\n"
            ),
            &[
                "model.layers[0].width: must be > 0",
                "model.layers[1].width: must be > 0",
                "training.batch_size: must be > 0",
                "training.epochs: set training.epochs or training.steps",
            ],
        ),
        (
            "missing-file",
            format!(
                "{GOOD_HEAD}[dataset]\nkind = \"idx\"\nimages = \"nowhere/images.idx\"\nlabels = \"nowhere/labels.idx\"\n[training]\nbatch_size = 8\nepochs = 1\n"
            ),
            &["dataset.images: file not found", "nowhere/images.idx", "dataset.labels: file not found"],
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
    let out = shoal(&url, &["status", "job-doesnotexist"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("job `job-doesnotexist` does not exist"), "{}", stderr(&out));
    let out = shoal(&url, &["cancel", "job-doesnotexist"]);
    assert_eq!(code(&out), 2);
    let out = shoal(&url, &["list", "--state", "sleeping"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--state `sleeping`"), "{}", stderr(&out));
    let out = shoal(&url, &["frobnicate"]);
    assert_eq!(code(&out), 2, "usage errors exit 2");
    let out = shoal("http://127.0.0.1:1", &["list", "--timeout", "2"]);
    assert_eq!(code(&out), 3, "an unreachable coordinator exits 3: {}", stderr(&out));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_validates_specs_and_worker_versions_itself() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let mut client = coordinator.client().await?;
    let mut spec = shoal_common::spec::parse_toml(shoal_tests::DIGITS_JOB)?;
    spec.model.as_mut().expect("model").layers[0].width = -5;
    spec.optimizer.as_mut().expect("optimizer").lr = Some(0.0);
    let status = client.submit_job(SubmitJobRequest { spec: Some(spec) }).await.expect_err("invalid spec");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let fields: Vec<String> = status
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, vec!["model.layers[0].width", "optimizer.lr"]);
    let status = client.submit_job(SubmitJobRequest { spec: None }).await.expect_err("no spec");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    let mut workers = WorkerServiceClient::connect(coordinator.url()).await?;
    let info = WorkerInfo {
        hostname: "old-box".into(),
        cpu_cores: 2,
        memory_bytes: 1 << 30,
        version: "0.0.1".into(),
        protocol: shoal_common::version::PROTOCOL,
        ..Default::default()
    };
    let status =
        workers.register(RegisterRequest { info: Some(info), worker_id: String::new() }).await.expect_err("old worker");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(status.message().contains("version `0.0.1` is not compatible"), "{}", status.message());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_leaves_the_job_failed_with_a_reason() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let mut client = coordinator.client().await?;
    let mut worker = start_worker(dir.path(), &coordinator.url(), 1, "doomed")?;
    // Without automatic restarts: the failure itself is what this test looks at.
    let spec = shoal_common::spec::parse_toml(&LONG_JOB.replace("[training]", "[training]\nmax_retries = 0"))?;
    let job = client.submit_job(SubmitJobRequest { spec: Some(spec) }).await?.into_inner().job_id;
    watch_until(&mut client, &job, Duration::from_secs(60), |e| train_step(e).is_some()).await?;
    worker.sigkill();
    let killed = std::time::Instant::now();
    let failed = wait_terminal(&mut client, &job, Duration::from_secs(30)).await?;
    assert_eq!(state_of(&failed), JobState::Failed);
    assert!(failed.reason.contains("worker wrk-") && failed.reason.contains("(doomed) lost"), "{}", failed.reason);
    assert!(killed.elapsed() < Duration::from_secs(10), "detected after {:?}", killed.elapsed());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_the_job_resumes_from_its_checkpoint_elsewhere() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let mut client = coordinator.client().await?;
    let mut first = start_worker(dir.path(), &coordinator.url(), 1, "first")?;
    let mut spec = shoal_common::spec::parse_toml(LONG_JOB)?;
    spec.training.as_mut().expect("training").steps = 300;
    let job = client.submit_job(SubmitJobRequest { spec: Some(spec) }).await?.into_inner().job_id;
    watch_until(&mut client, &job, Duration::from_secs(60), |e| train_step(e).is_some_and(|s| s >= 60)).await?;
    first.sigterm();
    let status = first.wait_exit(Duration::from_secs(30))?;
    assert!(status.success(), "drained worker exit status {status}; log:\n{}", first.log_text());
    let requeued = get(&mut client, &job).await?;
    assert_eq!(state_of(&requeued), JobState::Queued, "{}", requeued.reason);
    assert!(requeued.reason.contains("will resume from its checkpoint"), "{}", requeued.reason);

    let _second = start_worker(dir.path(), &coordinator.url(), 1, "second")?;
    let done = wait_terminal(&mut client, &job, Duration::from_secs(120)).await?;
    assert_eq!(state_of(&done), JobState::Succeeded, "{}", done.reason);
    assert_eq!(done.attempt, 2);
    let events = watch_until(
        &mut client,
        &job,
        Duration::from_secs(5),
        |e| matches!(&e.kind, Some(job_event::Kind::State(s)) if s.state == JobState::Succeeded as i32),
    )
    .await?;
    let resumed = events
        .iter()
        .any(|e| matches!(&e.kind, Some(job_event::Kind::Notice(n)) if n.message.contains("resumed at step")));
    assert!(resumed, "the second attempt resumed from a checkpoint");
    // The second attempt did not start over: its first progress report is beyond step 60.
    let steps: Vec<u64> = events.iter().filter_map(train_step).collect();
    let restart_at = steps.windows(2).find(|w| w[1] <= w[0]).map(|w| w[1]);
    assert!(restart_at.is_none_or(|s| s > 60), "progress went back to step {restart_at:?}: {steps:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_stops_it_and_frees_the_worker() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let mut client = coordinator.client().await?;
    let _worker = start_worker(dir.path(), &coordinator.url(), 1, "w")?;
    let spec = shoal_common::spec::parse_toml(LONG_JOB)?;
    let long = client.submit_job(SubmitJobRequest { spec: Some(spec) }).await?.into_inner().job_id;
    let next = client
        .submit_job(SubmitJobRequest { spec: Some(shoal_common::spec::parse_toml(shoal_tests::DIGITS_JOB)?) })
        .await?
        .into_inner()
        .job_id;
    watch_until(&mut client, &long, Duration::from_secs(60), |e| train_step(e).is_some()).await?;
    let out = shoal(&coordinator.url(), &["cancel", &long, "--reason", "testing"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let cancelled = get(&mut client, &long).await?;
    assert_eq!(state_of(&cancelled), JobState::Cancelled);
    assert_eq!(cancelled.reason, "cancelled by user: testing");
    let done = wait_terminal(&mut client, &next, Duration::from_secs(60)).await?;
    assert_eq!(state_of(&done), JobState::Succeeded, "the freed worker ran the next job");
    let out = shoal(&coordinator.url(), &["cancel", &long]);
    assert_eq!(code(&out), 2, "cancelling a finished job is bad input");
    Ok(())
}
