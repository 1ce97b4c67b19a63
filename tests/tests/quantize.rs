//! Post-training int8 quantization through the real binaries: a digits MLP trained on the cluster,
//! `shoal quantize` with each calibration method, the accuracy budget, and refused input.

use std::path::Path;

use serde_json::Value;
use shoal_tests::{Coordinator, code, digits_mlp, run_job, shoal, start_worker, stderr, stdout};

fn mlp() -> String {
    digits_mlp("mlp", "[{ width = 256 }, { width = 256 }]", "epochs = 20\nseed = 1")
}

fn quantize(args: &[&str]) -> (i32, String, String) {
    let out = shoal("http://127.0.0.1:9", &[&["quantize"], args].concat());
    (code(&out), stdout(&out), stderr(&out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int8_keeps_the_accuracy_and_is_four_times_smaller() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let _worker = start_worker(dir.path(), &coordinator.url(), 1, "w-1")?;
    let job = run_job(&coordinator.url(), dir.path(), "mlp", &mlp())?;
    let checkpoint = job["result"]["checkpoint"].as_str().expect("checkpoint").to_owned();
    let reported = job["result"]["validation_accuracy"].as_f64().expect("accuracy");

    for method in ["minmax", "percentile", "entropy"] {
        let out = dir.path().join(format!("int8-{method}"));
        let (rc, text, err) =
            quantize(&[&checkpoint, "--calibration", method, "--output", out.to_str().expect("utf-8"), "--json"]);
        assert_eq!(rc, 0, "{method}: {err}");
        let report: Value = serde_json::from_str(text.trim())?;
        eprintln!("{method}: {report}");
        let fp32 = report["fp32_accuracy"].as_f64().expect("fp32 accuracy");
        assert!((fp32 - reported).abs() < 1e-3, "the fp32 model evaluates as the job reported: {fp32} vs {reported}");
        let drop = report["accuracy_drop"].as_f64().expect("drop");
        assert!(drop <= 0.01, "{method}: int8 lost {drop}");
        let ratio = report["fp32_bytes"].as_f64().expect("bytes") / report["bytes"].as_f64().expect("bytes");
        assert!(ratio >= 3.5, "{method}: only {ratio:.2}x smaller");
        assert!(report["precision"].as_array().expect("layers").iter().all(|l| l[1] == "int8"), "{report}");
        assert!(out.join("quantization.json").is_file() && out.join("job.toml").is_file());
    }

    // A zero budget sends layers back to fp32, most sensitive first, until it holds (or all are).
    let strict = dir.path().join("strict");
    let (rc, text, err) =
        quantize(&[&checkpoint, "--max-accuracy-drop", "0", "--output", strict.to_str().expect("utf-8"), "--json"]);
    assert_eq!(rc, 0, "{err}");
    let report: Value = serde_json::from_str(text.trim())?;
    assert!(report["accuracy_drop"].as_f64().expect("drop") <= 0.0 || report["met"] == false, "{report}");
    assert_eq!(report["met"], report["accuracy_drop"].as_f64().expect("drop") <= 0.0, "{report}");

    let int8 = dir.path().join("int8-minmax");
    let (rc, _, err) = quantize(&[int8.to_str().expect("utf-8")]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("is already quantized"), "{err}");
    let (rc, _, err) = quantize(&[&checkpoint, "--batches", "0"]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("the calibration set is empty"), "{err}");
    let (rc, _, err) = quantize(&[&checkpoint, "--output", &checkpoint]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("would overwrite the checkpoint"), "{err}");
    let (rc, _, err) = quantize(&[&checkpoint, "--calibration", "mean"]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("--calibration: unknown `mean`"), "{err}");
    let (rc, _, err) = quantize(&[Path::new(&checkpoint).join("nowhere").to_str().expect("utf-8")]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("cannot read its job file"), "{err}");
    Ok(())
}
