//! Keeping strangers out: client and join tokens, per-user tokens from a file, and the refusal to
//! listen beyond loopback without TLS.

use std::time::Duration;

use shoal_common::proto::{ListJobsRequest, ListWorkersRequest, SubmitJobRequest};
use shoal_tests::{Coordinator, DIGITS_JOB, bin, code, shoal, start_worker_with, stderr};

const CLIENT: &str = "client-token-0123456789";
const JOIN: &str = "join-token-0123456789abc";

fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    shoal_common::auth::attach(&mut r, token);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_and_workers_without_the_right_token_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "alice alice-token-0123456789\n")?;
    let coordinator = Coordinator::start(
        dir.path(),
        &dir.path().join("c.db"),
        &["--client-token", CLIENT, "--join-token", JOIN, "--tokens-file", tokens.to_str().unwrap_or_default()],
    )?;
    let mut client = coordinator.client().await?;

    // Clients: no token, a wrong one, then the right ones.
    let none = client.list_jobs(ListJobsRequest::default()).await.expect_err("no token");
    assert_eq!(none.code(), tonic::Code::Unauthenticated);
    let wrong = client.list_jobs(authed(ListJobsRequest::default(), "guess-guess-guess")).await.expect_err("wrong");
    assert_eq!((wrong.code(), wrong.message()), (tonic::Code::Unauthenticated, "invalid client token"));
    client.list_jobs(authed(ListJobsRequest::default(), CLIENT)).await?;
    client.list_jobs(authed(ListJobsRequest::default(), "alice-token-0123456789")).await?;
    let cli = shoal(&coordinator.url(), &["list"]);
    assert_eq!(code(&cli), 2, "{}", stderr(&cli));
    assert!(stderr(&cli).contains("requires a client token"), "{}", stderr(&cli));
    assert_eq!(code(&shoal(&coordinator.url(), &["--token", CLIENT, "list"])), 0);
    // The client token does not let anyone join as a worker, and health stays open for probes.
    let mut worker_api =
        shoal_common::proto::worker_service_client::WorkerServiceClient::connect(coordinator.url()).await?;
    let join = worker_api
        .register(authed(shoal_common::proto::RegisterRequest::default(), CLIENT))
        .await
        .expect_err("client token is no join token");
    assert_eq!((join.code(), join.message()), (tonic::Code::Unauthenticated, "invalid join token"));

    // Workers: a wrong join token makes the worker exit with the reason; the right one joins.
    let mut intruder = start_worker_with(
        dir.path(),
        &coordinator.url(),
        1,
        "intruder",
        &[("SHOAL_JOIN_TOKEN", "wrong-wrong-wrong-wrong")],
    )?;
    let status = intruder.wait_exit(Duration::from_secs(20))?;
    assert!(!status.success());
    assert!(intruder.log_text().contains("invalid join token"), "{}", intruder.log_text());
    let _worker = start_worker_with(dir.path(), &coordinator.url(), 1, "member", &[("SHOAL_JOIN_TOKEN", JOIN)])?;
    let spec = shoal_common::spec::parse_toml(DIGITS_JOB)?;
    let job = client.submit_job(authed(SubmitJobRequest { spec: Some(spec) }, CLIENT)).await?.into_inner().job_id;
    // wait_terminal watches without a token: use the CLI, which carries it.
    let watched = shoal(&coordinator.url(), &["--token", CLIENT, "watch", &job]);
    assert_eq!(code(&watched), 0, "{}", stderr(&watched));
    let workers = client.list_workers(authed(ListWorkersRequest {}, CLIENT)).await?.into_inner().workers;
    let names: Vec<String> = workers.iter().filter_map(|w| w.info.as_ref().map(|i| i.hostname.clone())).collect();
    assert_eq!(names, vec!["member".to_owned()], "the intruder never registered");
    Ok(())
}

#[test]
fn a_non_loopback_listen_address_needs_an_explicit_opt_in() {
    let dir = tempfile::tempdir().expect("dir");
    let out = std::process::Command::new(bin("shoal-coordinator"))
        .args(["--listen", "0.0.0.0:0", "--database"])
        .arg(dir.path().join("c.db"))
        .env_remove("SHOAL_CONFIG")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen: 0.0.0.0:0 is not a loopback address") && err.contains("insecure_listen"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_paths_outside_the_workers_data_roots_and_oversized_specs_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("data");
    std::fs::create_dir_all(&root)?;
    let rows: String = (0..60).map(|i| format!("{},{},{}\n", i % 7, (i * 3) % 5, i % 2)).collect();
    std::fs::write(root.join("inside.csv"), format!("a,b,label\n{rows}"))?;
    std::fs::write(dir.path().join("outside.csv"), format!("a,b,label\n{rows}"))?;
    std::os::unix::fs::symlink(dir.path().join("outside.csv"), root.join("sneaky.csv"))?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let mut client = coordinator.client().await?;
    let roots = root.display().to_string();
    let _worker = start_worker_with(dir.path(), &coordinator.url(), 1, "w0", &[("SHOAL_DATA_ROOTS", roots.as_str())])?;
    let job_for = |path: &std::path::Path| {
        format!(
            "name = \"csv\"\n[model]\nkind = \"mlp\"\nlayers = [{{ width = 8 }}]\n[dataset]\nkind = \"csv\"\npath = \"{}\"\n\
             label_column = \"label\"\n[training]\nbatch_size = 8\nsteps = 5\nmax_retries = 0\n",
            path.display()
        )
    };
    for (file, ok) in
        [(root.join("inside.csv"), true), (root.join("../outside.csv"), false), (root.join("sneaky.csv"), false)]
    {
        let spec = shoal_common::spec::parse_toml(&job_for(&file))?;
        let job = client.submit_job(SubmitJobRequest { spec: Some(spec) }).await?.into_inner().job_id;
        let done = shoal_tests::wait_terminal(&mut client, &job, Duration::from_secs(60)).await?;
        if ok {
            assert_eq!(shoal_tests::state_of(&done), shoal_common::proto::JobState::Succeeded, "{}", done.reason);
        } else {
            assert_eq!(shoal_tests::state_of(&done), shoal_common::proto::JobState::Failed);
            assert!(
                done.reason.starts_with("dataset.path: ") && done.reason.contains("outside the folders"),
                "{}",
                done.reason
            );
        }
    }
    let mut huge = shoal_common::spec::parse_toml(shoal_tests::DIGITS_JOB)?;
    huge.trial_params = format!("{{\"x\": \"{}\"}}", "y".repeat(300_000));
    let refused = client.submit_job(SubmitJobRequest { spec: Some(huge) }).await.expect_err("too big");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("at most 262144"), "{}", refused.message());
    // Past the 1 MiB request limit the message is not even decoded.
    let mut giant = shoal_common::spec::parse_toml(shoal_tests::DIGITS_JOB)?;
    giant.trial_params = "y".repeat(2 << 20);
    let refused = client.submit_job(SubmitJobRequest { spec: Some(giant) }).await.expect_err("too big");
    assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused:?}");
    assert!(refused.message().contains("too large"), "{}", refused.message());
    Ok(())
}
