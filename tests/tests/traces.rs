//! Traces end to end: a coordinator and two workers export their spans over OTLP/gRPC to a real
//! trace receiver while a two-rank job trains, and the spans it got form one trace per job (job >
//! rank > step windows) beside the RPC handlers' spans, which join a caller's trace context. A
//! parameter server's per-step pushes and pulls stay out of the trace.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};
use shoal_common::proto::GetJobRequest;
use shoal_tests::otlp::{Collector, find, named};
use shoal_tests::{Coordinator, code, digits_mlp, run_job, start_param_server_with, start_worker_with, stderr};

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[test]
fn a_two_rank_job_is_one_trace_from_the_coordinator_to_its_step_windows() -> Result<()> {
    let collector = Collector::start()?;
    let endpoint = collector.endpoint();
    let dir = tempfile::tempdir()?;
    let mut coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &["--otlp-endpoint", &endpoint])?;
    let env = [("SHOAL_OTLP_ENDPOINT", endpoint.as_str())];
    let mut workers = Vec::new();
    for i in 0..2 {
        workers.push(start_worker_with(dir.path(), &coordinator.url(), 1, &format!("w-trace-{i}"), &env)?);
    }
    let text = digits_mlp("traced", "[{ width = 32 }]", "steps = 300\nseed = 1\n[parallelism]\ndata = 2");
    let started = std::time::Instant::now();
    let job = run_job(&coordinator.url(), dir.path(), "traced", &text)?;
    eprintln!("job ran in {:?}", started.elapsed());
    assert_eq!(job["state"], "succeeded", "{job}");
    let job_id = job["job_id"].as_str().context("job id")?.to_owned();
    let mut ps = start_param_server_with(dir.path(), &coordinator.url(), "ps-trace", &env)?;
    let ps_job = digits_mlp("traced-ps", "[{ width = 32 }]", "steps = 50\nseed = 1");
    let ps_job = format!("sync = \"ps\"\n{ps_job}\n[parallelism]\ndata = 2\n[ps]\nmode = \"sync\"\n");
    let job = run_job(&coordinator.url(), dir.path(), "traced-ps", &ps_job)?;
    assert_eq!(job["state"], "succeeded", "{job}");

    // A caller's trace context reaches the handler; a failed call is marked as an error.
    tokio::runtime::Runtime::new()?.block_on(async {
        let mut client = coordinator.client().await?;
        for id in [job_id.as_str(), "no-such-job"] {
            let mut request = tonic::Request::new(GetJobRequest { job_id: id.into() });
            let parent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01").parse()?;
            request.metadata_mut().insert("traceparent", parent);
            let _ = client.get_job(request).await;
        }
        anyhow::Ok(())
    })?;

    // Stopping flushes what each process still holds (workers first: they leave the coordinator).
    for w in workers.iter_mut().chain([&mut ps]) {
        w.sigterm();
        w.wait_exit(Duration::from_secs(30))?;
    }
    coordinator.proc.sigterm();
    coordinator.proc.wait_exit(Duration::from_secs(30))?;
    eprintln!("all stopped after {:?}", started.elapsed());
    let spans = collector.wait_for(Duration::from_secs(20), "job, rank and RPC spans", |s| {
        let ours = s.iter().filter(|c| c.trace_id == CALLER_TRACE).count();
        named(s, "job").len() == 2 && named(s, "rank").len() == 4 && ours == 2
    })?;

    let root = find(&spans, "job", "job_id", &job_id)?;
    assert_eq!(root.service, "shoal-coordinator");
    assert!(root.parent_span_id.is_empty(), "the job's span is a root: {root:?}");
    assert_eq!(root.attr("job.state"), "JOB_STATE_SUCCEEDED", "{root:?}");
    assert_eq!(root.attr("job.name"), "traced");
    let submit = find(&spans, "shoal.v1.JobService/SubmitJob", "rpc.method", "SubmitJob")?;
    assert_eq!(root.links, vec![submit.span_id.clone()], "the job links to the request that submitted it");

    let ranks: Vec<_> = named(&spans, "rank").into_iter().filter(|r| r.attr("job_id") == job_id).collect();
    assert_eq!(ranks.len(), 2);
    let mut seen = BTreeSet::new();
    for rank in &ranks {
        assert_eq!(rank.service, "shoal-worker");
        assert_eq!(rank.trace_id, root.trace_id, "one trace per job: {rank:?}");
        assert_eq!(rank.parent_span_id, root.span_id, "ranks are children of the job: {rank:?}");
        assert_eq!(rank.attr("job_id"), job_id);
        seen.insert(rank.attr("rank").to_owned());
        let windows: Vec<_> = spans.iter().filter(|s| s.name == "steps" && s.parent_span_id == rank.span_id).collect();
        let mut bounds: Vec<(u64, u64)> = windows
            .iter()
            .map(|w| (w.attr("steps.first").parse().unwrap_or(0), w.attr("steps.last").parse().unwrap_or(0)))
            .collect();
        bounds.sort_unstable();
        assert_eq!(bounds, vec![(1, 100), (101, 200), (201, 300)], "a window per report of rank {}", rank.attr("rank"));
        for w in &windows {
            assert_eq!(w.trace_id, root.trace_id);
            let loss: f64 = w.attr("loss").parse()?;
            assert!(loss.is_finite() && loss > 0.0, "{w:?}");
            assert!(w.attr("samples_per_s").parse::<f64>()? > 0.0, "{w:?}");
            assert!(w.duration_ns > 0 && w.duration_ns <= rank.duration_ns, "{w:?} within {rank:?}");
        }
    }
    assert_eq!(seen, BTreeSet::from(["0".to_owned(), "1".to_owned()]));

    let calls: Vec<_> = spans.iter().filter(|c| c.trace_id == CALLER_TRACE).collect();
    for call in &calls {
        assert_eq!(call.name, "shoal.v1.JobService/GetJob", "{call:?}");
        assert_eq!(call.parent_span_id, CALLER_SPAN, "{call:?}");
        assert_eq!(call.attr("rpc.system"), "grpc");
    }
    let codes: BTreeSet<&str> = calls.iter().map(|c| c.attr("rpc.grpc.status_code")).collect();
    assert_eq!(codes, BTreeSet::from(["0", "5"]), "one found, one NOT_FOUND");
    let failed = calls.iter().find(|c| c.attr("rpc.grpc.status_code") == "5").context("the failed call")?;
    assert_eq!(failed.status_code, 2, "a failed call is an error span: {failed:?}");

    // The parameter server traces its shard's set-up, not its traffic.
    let ps_spans: Vec<&str> =
        spans.iter().filter(|s| s.service == "shoal-param-server").map(|s| s.name.as_str()).collect();
    assert!(ps_spans.contains(&"shoal.v1.ParamServerService/InitShard"), "{ps_spans:?}");
    assert!(!ps_spans.iter().any(|n| n.ends_with("/Push") || n.ends_with("/Pull")), "{ps_spans:?}");
    Ok(())
}

#[test]
fn a_bad_otlp_endpoint_is_refused_with_the_setting_named() -> Result<()> {
    for bin in ["shoal-coordinator", "shoal-worker", "shoal-param-server"] {
        let out = std::process::Command::new(shoal_tests::bin(bin))
            .args(["--otlp-endpoint", "https://collector:4317"])
            .env_remove("SHOAL_CONFIG")
            .output()?;
        assert_eq!(code(&out), 2, "{bin}: {}", stderr(&out));
        assert!(stderr(&out).contains("otlp_endpoint: `https://collector:4317`"), "{bin}: {}", stderr(&out));
    }
    let out = std::process::Command::new(shoal_tests::bin("shoal"))
        .args(["local", "--otlp-endpoint", "collector:4317"])
        .output()?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--otlp-endpoint: `collector:4317` must start with http://"), "{}", stderr(&out));
    Ok(())
}

/// `shoal local --otlp-endpoint` traces its in-process coordinator and the workers it starts, and
/// flushes them as it stops.
#[test]
fn shoal_local_exports_the_spans_of_every_process_it_starts() -> Result<()> {
    let collector = Collector::start()?;
    let dir = tempfile::tempdir()?;
    let file = shoal_tests::job_file(dir.path(), "local", shoal_tests::DIGITS_JOB);
    let out = std::process::Command::new(shoal_tests::bin("shoal"))
        .args(["local", "--workers", "1", "--otlp-endpoint", &collector.endpoint(), "--data-dir"])
        .arg(dir.path().join("data"))
        .arg(&file)
        .env("RAYON_NUM_THREADS", "1")
        .output()?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let spans = collector.wait_for(Duration::from_secs(20), "the local job's spans", |s| {
        !named(s, "job").is_empty() && !named(s, "rank").is_empty()
    })?;
    let root = find(&spans, "job", "job.name", "digits-e2e")?;
    assert_eq!(root.service, "shoal-coordinator");
    let rank = named(&spans, "rank")[0];
    assert_eq!((rank.service.as_str(), rank.parent_span_id.as_str()), ("shoal-worker", root.span_id.as_str()));
    assert!(spans.iter().any(|s| s.name == "steps" && s.parent_span_id == rank.span_id), "step windows");
    Ok(())
}
