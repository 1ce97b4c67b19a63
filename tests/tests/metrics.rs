//! Prometheus metrics end to end: a real Prometheus scrapes a coordinator and a worker every
//! second while a job trains, and the series are queried back from it. The coordinator's
//! `/metrics` sits behind its client tokens.

use std::time::Duration;

use shoal_tests::prometheus::{self, Prometheus, Target};
use shoal_tests::{Coordinator, Proc, digits_mlp, http, run_job, start_worker_with};

const TOKEN: &str = "metrics-test-token-0123456789";

#[test]
fn prometheus_scrapes_the_coordinator_and_a_worker_during_a_job() -> anyhow::Result<()> {
    let Some(binary) = prometheus::binary() else { return Ok(()) };
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let http_addr = coordinator.http.expect("the coordinator's HTTP port");
    let worker_metrics = prometheus::free_addr()?;
    let _worker = start_worker_with(
        dir.path(),
        &coordinator.url(),
        1,
        "w-metrics",
        &[("SHOAL_METRICS_LISTEN", &worker_metrics.to_string())],
    )?;
    let ps_metrics = prometheus::free_addr()?;
    let _ps = Proc {
        child: std::process::Command::new(shoal_tests::bin("shoal-param-server"))
            .args(["--coordinator", &coordinator.url(), "--hostname", "ps-metrics"])
            .args(["--metrics-listen", &ps_metrics.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("ps.log"))?)
            .spawn()?,
        log: dir.path().join("ps.log"),
    };
    let prom = Prometheus::start(
        &binary,
        dir.path(),
        &[
            Target { job: "shoal-coordinator", addr: http_addr, token: None },
            Target { job: "shoal-worker", addr: worker_metrics, token: None },
            Target { job: "shoal-param-server", addr: ps_metrics, token: None },
        ],
    )?;
    let limit = Duration::from_secs(60);
    // The worker and the parameter server both register.
    prom.wait_for_value(limit, "shoal_workers{role=\"worker\",state=\"ready\"}", |v| v == 1.0)?;
    prom.wait_for_value(limit, "shoal_workers{role=\"param-server\",state=\"ready\"}", |v| v == 1.0)?;
    let job = run_job(
        &coordinator.url(),
        dir.path(),
        "scraped",
        &digits_mlp("scraped", "[{ width = 64 }]", "epochs = 30\nseed = 1"),
    )?;
    assert_eq!(job["state"], "succeeded", "{job}");

    // All three targets are up (each scraped at least once), and what happened reached Prometheus.
    prom.wait_for_value(limit, "count(up == 1)", |v| v == 3.0)?;
    assert_eq!(prom.query("up")?.len(), 3, "three targets");
    prom.wait_for_value(limit, "shoal_ps_shards", |v| v == 0.0)?;
    prom.wait_for_value(limit, "shoal_jobs_submitted_total{kind=\"train\"}", |v| v == 1.0)?;
    prom.wait_for_value(limit, "shoal_jobs_succeeded_total{kind=\"train\"}", |v| v == 1.0)?;
    prom.wait_for_value(limit, "shoal_jobs{state=\"succeeded\"}", |v| v == 1.0)?;
    prom.wait_for_value(limit, "shoal_scheduling_latency_seconds_count", |v| v == 1.0)?;
    prom.wait_for_value(limit, "shoal_rpc_duration_seconds_count{method=\"SubmitJob\"}", |v| v >= 1.0)?;
    prom.wait_for_value(limit, "shoal_queue_depth", |v| v == 0.0)?;
    prom.wait_for_value(limit, "shoal_worker_training_points_total", |v| v >= 1.0)?;
    prom.wait_for_value(limit, "max_over_time(shoal_worker_samples_per_second[5m])", |v| v > 100.0)?;
    prom.wait_for_value(limit, "max_over_time(shoal_worker_step_seconds[5m])", |v| v > 0.0 && v < 1.0)?;
    // Histograms carry their explicit buckets and no job ids.
    let buckets = prom.query("shoal_scheduling_latency_seconds_bucket")?;
    assert!(buckets.len() >= 18, "{} buckets", buckets.len());
    for (labels, _) in prom.query("{__name__=~\"shoal_.*\"}")? {
        let text = labels.to_string();
        assert!(!text.contains("job-"), "a job id in the labels of {text}");
    }
    Ok(())
}

#[test]
fn the_coordinators_metrics_need_its_client_token() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &["--client-token", TOKEN])?;
    let addr = coordinator.http.expect("the coordinator's HTTP port");
    let (status, _) = http::get(addr, "/metrics", None)?;
    assert_eq!(status, 401, "no token");
    let (status, _) = http::get(addr, "/metrics", Some("not-the-token-0123456789"))?;
    assert_eq!(status, 401, "a wrong token");
    let (status, body) = http::get(addr, "/metrics", Some(TOKEN))?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("shoal_queue_depth 0"), "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    // A non-loopback address without TLS needs insecure_listen.
    let out = std::process::Command::new(shoal_tests::bin("shoal-coordinator"))
        .args(["--listen", "127.0.0.1:0", "--http-listen", "0.0.0.0:0", "--database"])
        .arg(dir.path().join("other.db"))
        .output()?;
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http_listen: 0.0.0.0:0 is not a loopback address"), "{err}");
    Ok(())
}

/// `deploy/prometheus`: the scrape configuration and alert rules pass `promtool`, and the rules'
/// own tests (each alert fires on a made-up series) pass.
#[test]
fn the_deploy_prometheus_files_pass_promtool() -> anyhow::Result<()> {
    let Some(prometheus) = prometheus::binary() else { return Ok(()) };
    let promtool = prometheus.with_file_name("promtool");
    let dir = tempfile::tempdir()?;
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    for entry in std::fs::read_dir(&source)? {
        let path = entry?.path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("a file name")))?;
    }
    // The token file the configuration names, as an operator would write it.
    std::fs::write(dir.path().join("shoal-token"), TOKEN)?;
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "shoal-alerts.yml"],
        vec!["test", "rules", "shoal-alerts.test.yml"],
    ] {
        let out = std::process::Command::new(&promtool).args(&args).current_dir(dir.path()).output()?;
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
