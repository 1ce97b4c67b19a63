//! The main path through the real binaries: a coordinator and a worker as separate processes,
//! jobs submitted and watched with the `shoal` CLI.

use shoal_tests::{Coordinator, DIGITS_JOB, code, job_file, shoal, start_worker, stderr, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digits_job_submitted_with_the_cli_trains_to_accuracy() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let _worker = start_worker(dir.path(), &coordinator.url(), 1, "e2e-worker")?;
    let file = job_file(dir.path(), "digits", DIGITS_JOB);

    let out = shoal(&coordinator.url(), &["submit", file.to_str().expect("utf-8 path"), "--watch"]);
    assert_eq!(code(&out), 0, "submit --watch failed:\n{}\n{}", stdout(&out), stderr(&out));
    let job_id = stdout(&out).lines().next().expect("job id line").trim().to_owned();
    assert!(job_id.starts_with("job-"), "{}", stdout(&out));
    assert!(stdout(&out).contains("final validation accuracy"), "{}", stdout(&out));

    let status = shoal(&coordinator.url(), &["status", &job_id, "--json"]);
    assert_eq!(code(&status), 0, "{}", stderr(&status));
    let job: serde_json::Value = serde_json::from_str(&stdout(&status))?;
    assert_eq!(job["state"], "succeeded");
    let result = &job["result"];
    let accuracy = result["validation_accuracy"].as_f64().expect("accuracy");
    assert!(accuracy >= 0.90, "validation accuracy {accuracy}");
    let (first, last) =
        (result["first_train_loss"].as_f64().expect("first"), result["train_loss"].as_f64().expect("last"));
    assert!(last < 0.5 * first, "loss did not fall: {first} -> {last}");

    let list = shoal(&coordinator.url(), &["list", "--state", "succeeded"]);
    assert!(stdout(&list).contains(&job_id), "{}", stdout(&list));
    let workers = shoal(&coordinator.url(), &["workers", "--json"]);
    let workers: serde_json::Value = serde_json::from_str(&stdout(&workers))?;
    assert_eq!(workers[0]["hostname"], "e2e-worker");
    assert_eq!(workers[0]["state"], "ready");
    assert_eq!(workers[0]["free_cpus"], 1);
    assert!(!workers[0]["gpu_note"].as_str().unwrap_or_default().is_empty(), "a CPU-only worker says why");
    assert_eq!(workers[0]["gpus"].as_array().map(Vec::len), Some(0));
    let table = shoal(&coordinator.url(), &["workers"]);
    assert_eq!(code(&table), 0, "{}", stderr(&table));
    assert!(stdout(&table).contains("\nno GPUs: "), "a CPU-only cluster says why it has no GPUs:\n{}", stdout(&table));
    assert!(!stdout(&table).contains("MEMORY USED"), "no GPU table without GPUs:\n{}", stdout(&table));

    // A late watcher gets the whole history and the final summary.
    let again = shoal(&coordinator.url(), &["watch", &job_id]);
    assert_eq!(code(&again), 0);
    assert!(stdout(&again).contains("final validation accuracy"), "{}", stdout(&again));
    Ok(())
}

/// On a machine without a GPU driver (where the tests run) every GPU library says why it is
/// missing, and the command still succeeds. What it prints on a GPU host cannot be checked here.
#[test]
fn worker_devices_names_each_gpu_library_or_why_it_is_missing() -> anyhow::Result<()> {
    let run = |args: &[&str]| std::process::Command::new(shoal_tests::bin("shoal-worker")).args(args).output();
    let out = run(&["devices"])?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    for name in ["driver", "CUDA", "cuBLAS", "NVRTC", "NCCL", "NVML"] {
        let line = text.lines().find(|l| l.trim_start().starts_with(&format!("{name} "))).unwrap_or_default();
        assert!(!line.trim().is_empty(), "no {name} line:\n{text}");
        let answer = line.trim_start()[name.len()..].trim();
        assert!(
            answer.starts_with("missing: ") || answer.starts_with(|c: char| c.is_ascii_digit()),
            "{name}: neither a version nor a reason: {line}"
        );
    }

    let out = run(&["devices", "--json"])?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out))?;
    assert!(v["cpu_cores"].as_u64().unwrap_or_default() >= 1, "{v}");
    for name in ["driver", "cuda", "cublas", "nvrtc", "nccl", "nvml"] {
        let lib = &v["libraries"][name];
        assert!(lib["version"].is_string() || lib["missing"].is_string(), "{name}: {lib}");
    }
    if v["gpus"].as_array().is_some_and(Vec::is_empty) {
        assert!(!v["gpu_note"].as_str().unwrap_or_default().is_empty(), "no GPUs must come with a reason: {v}");
    }
    Ok(())
}

/// Health checks stay open for probes; reflection has its own scenarios in `reflection.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_served() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let channel = tonic::transport::Endpoint::from_shared(coordinator.url())?.connect().await?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest { service: "shoal.v1.JobService".into() })
        .await?
        .into_inner();
    assert_eq!(status.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    Ok(())
}

#[test]
fn shoal_local_runs_the_bundled_demo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(shoal_tests::bin("shoal"))
        .args(["local", "--workers", "2", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run shoal local");
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let line = stdout(&out)
        .lines()
        .find(|l| l.starts_with("final validation accuracy:"))
        .map(str::to_owned)
        .expect("accuracy line");
    let accuracy: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("number");
    assert!(accuracy >= 0.90, "{line}");
    assert!(dir.path().join("coordinator.db").exists());
    assert!(std::fs::read_dir(dir.path().join("checkpoints")).expect("checkpoints").next().is_some());
}

#[test]
fn bench_train_prints_the_peer_fields() {
    let out = std::process::Command::new(shoal_tests::bin("shoal"))
        .args(["bench", "train", "--steps", "40", "--warmup", "10"])
        .output()
        .expect("run bench");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let records: Vec<serde_json::Value> =
        stdout(&out).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(records[0]["kind"], "meta");
    let r = &records[1];
    for field in [
        "world_size",
        "threads_per_rank",
        "batch_per_rank",
        "global_batch",
        "steps",
        "warmup",
        "samples_per_s",
        "step_time_ms",
        "loss_first",
        "loss_final",
        "loss_final_avg10",
        "eval_loss",
        "eval_acc",
        "foreign_cpu_frac",
    ] {
        assert!(!r[field].is_null(), "field {field} missing in {r}");
    }
    assert_eq!(r["world_size"], 1);
    assert_eq!(r["threads_per_rank"], 1);
    assert_eq!(r["device"], "cpu");
    assert_eq!(r["precision"], "fp32");
    assert!(r["samples_per_s"].as_f64().expect("number") > 0.0);
    assert!(r["loss_final"].as_f64().expect("loss") < r["loss_first"].as_f64().expect("loss"));
}

fn bench(args: &[&str]) -> std::process::Output {
    std::process::Command::new(shoal_tests::bin("shoal")).arg("bench").args(args).output().expect("run bench")
}

#[test]
fn bench_train_takes_the_batch_sizes_of_the_gpu_peer() {
    let out = bench(&["train", "--steps", "3", "--warmup", "1", "--batch", "1024"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let last = stdout(&out).lines().last().map(str::to_owned).unwrap_or_default();
    let r: serde_json::Value = serde_json::from_str(&last).expect("JSON line");
    assert_eq!(r["batch_per_rank"], 1024);
    assert_eq!(r["global_batch"], 1024);
}

#[test]
fn bench_train_on_a_gpu_fails_cleanly_where_there_is_none() {
    // The test binaries are built without the `cuda` feature; a build with it on a machine without
    // a GPU fails the same way with the driver's reason. Either way: exit 2, naming --device.
    let out = bench(&["train", "--device", "cuda", "--steps", "20", "--warmup", "5"]);
    if code(&out) == 0 {
        let last = stdout(&out).lines().last().map(str::to_owned).unwrap_or_default();
        let r: serde_json::Value = serde_json::from_str(&last).expect("JSON line");
        assert_eq!(r["device"], "cuda:0", "a GPU is here: it must have trained on it");
        return;
    }
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("--device `cuda`"), "{err}");
    assert!(err.contains("`cuda` feature") || err.contains("cannot open GPU 0"), "{err}");
    assert!(stdout(&out).is_empty(), "no records from a run that did not start: {}", stdout(&out));

    let parity = bench(&["parity", "--steps", "10"]);
    assert_eq!(code(&parity), 2, "{}", stderr(&parity));
    assert!(stderr(&parity).contains("--device `cuda`"), "{}", stderr(&parity));
}

#[test]
fn bench_train_rejects_unknown_devices_and_precisions_naming_the_flag() {
    for (args, flag) in [
        (&["train", "--device", "tpu"][..], "--device `tpu`"),
        (&["train", "--device", "cuda:x"], "--device `cuda:x`"),
        (&["train", "--device", "cuda", "--precision", "fp16"], "--precision `fp16`"),
        (&["train", "--precision", "bf16"], "--precision `bf16`"),
        (&["train", "--batch", "0"], "--batch `0`"),
        (&["train", "--device", "cuda", "--ranks", "2"], "--device `cuda`"),
        (&["parity", "--device", "tpu"], "--device `tpu`"),
    ] {
        let out = bench(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(flag), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn bench_parity_of_the_cpu_with_itself_finds_no_difference() {
    let out = bench(&["parity", "--device", "cpu", "--steps", "6"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let records: Vec<serde_json::Value> =
        stdout(&out).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(records[0]["kind"], "meta");
    let models: Vec<(&str, &str)> = records[1..]
        .iter()
        .map(|r| (r["model"].as_str().unwrap_or_default(), r["kind"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(models, [("mlp", "parity"), ("cnn", "parity"), ("cnn", "resume")]);
    for r in &records[1..] {
        assert_eq!(r["max_rel_diff"], 0.0, "{r}");
        assert_eq!(r["within_1e-4"], true, "{r}");
        assert_eq!(r["steps"], 6, "{r}");
    }
    // Every weight and bias of 784-512-512-10.
    assert_eq!(records[1]["params"], 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10);
}
