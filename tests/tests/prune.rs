//! Pruning through the real binaries on digits: a trained model pruned to half its hidden units
//! and fine-tuned (a smaller dense artifact whose job file has the reduced widths), gradual
//! magnitude pruning from scratch (a sparse artifact), whole conv channels of a CNN, and the
//! settings that are refused.

use std::path::Path;

use serde_json::Value;
use shoal_tests::{Coordinator, accuracy, code, digits_mlp, job_file, run_job, shoal, start_worker, stderr};

fn base_job() -> String {
    digits_mlp("base", "[{ width = 128 }, { width = 128 }]", "epochs = 20\nseed = 1")
}

fn checkpoint(job: &Value) -> String {
    job["result"]["checkpoint"].as_str().expect("checkpoint").to_owned()
}

fn model_bytes(dir: &str) -> u64 {
    std::fs::metadata(Path::new(dir).join("model.safetensors")).expect("model file").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruned_models_are_really_smaller_and_keep_their_accuracy() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let url = coordinator.url();
    let _workers = [start_worker(dir.path(), &url, 1, "w-1")?, start_worker(dir.path(), &url, 1, "w-2")?];

    let base = run_job(&url, dir.path(), "base", &base_job())?;
    // Half the hidden units of both layers go, then 200 fine-tuning steps on two ranks. The
    // parent's model comes from the job file saved with its checkpoint.
    let structured = base_job()
        .replace("epochs = 20", "steps = 200")
        .replace("name = \"base\"", "name = \"structured\"")
        + &format!(
            "[parallelism]\ndata = 2\n[inherit]\ncheckpoint = \"{}\"\n[prune]\nmethod = \"structured\"\nsparsity = 0.5\n",
            checkpoint(&base)
        );
    let structured = run_job(&url, dir.path(), "structured", &structured)?;
    assert!(accuracy(&structured) >= accuracy(&base) - 0.02, "{} vs {}", accuracy(&structured), accuracy(&base));
    let report = &structured["result"]["extra"];
    assert_eq!(report["width/layers.0"], 64.0, "{report}");
    assert_eq!(report["width/layers.1"], 64.0, "{report}");
    let artifact = checkpoint(&structured);
    assert!(model_bytes(&artifact) * 2 <= model_bytes(&checkpoint(&base)), "the artifact must halve");
    let job = std::fs::read_to_string(Path::new(&artifact).join("job.toml"))?;
    assert_eq!(job.matches("width = 64").count(), 2, "{job}");

    // The smaller model is an ordinary checkpoint: a job can start from it as it is.
    let child = base_job().replace("epochs = 20", "steps = 10").replace("128", "64")
        + &format!("[inherit]\ncheckpoint = \"{artifact}\"\n");
    let child = run_job(&url, dir.path(), "child", &child)?;
    assert!(accuracy(&child) >= accuracy(&structured) - 0.02, "{}", accuracy(&child));

    let gradual = base_job().replace("epochs = 20", "steps = 600").replace("name = \"base\"", "name = \"gradual\"")
        + "[prune]\nsparsity = 0.8\nschedule = \"gradual\"\nbegin_step = 100\nend_step = 400\nfrequency = 50\n";
    let gradual = run_job(&url, dir.path(), "gradual", &gradual)?;
    let report = &gradual["result"]["extra"];
    assert!((report["sparsity"].as_f64().expect("sparsity") - 0.8).abs() < 1e-3, "{report}");
    assert!(report["sparsity/layers.0.weight"].as_f64().is_some(), "a row per layer: {report}");
    assert!(accuracy(&gradual) >= accuracy(&base) - 0.03, "{}", accuracy(&gradual));
    assert!(model_bytes(&checkpoint(&gradual)) * 2 < model_bytes(&checkpoint(&base)), "stored sparsely");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_pruning_removes_whole_conv_channels() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let url = coordinator.url();
    let _worker = start_worker(dir.path(), &url, 1, "w-1")?;
    let cnn = base_job().replace("epochs = 20", "epochs = 4").replace(
        "kind = \"mlp\"\nlayers = [{ width = 128 }, { width = 128 }]",
        "kind = \"cnn\"\nlayers = [{ type = \"conv\", channels = 8, kernel = 3, padding = 1 }, \
         { type = \"pool\", pool = \"max\", size = 2 }, { type = \"conv\", channels = 8, kernel = 3, padding = 1 }, \
         { width = 32 }]",
    );
    let base = run_job(&url, dir.path(), "cnn", &cnn)?;
    let pruned = cnn.replace("epochs = 4", "steps = 100").replace("name = \"base\"", "name = \"cnn-pruned\"")
        + &format!(
            "[inherit]\ncheckpoint = \"{}\"\n[prune]\nmethod = \"structured\"\nsparsity = 0.5\n",
            checkpoint(&base)
        );
    let pruned = run_job(&url, dir.path(), "cnn-pruned", &pruned)?;
    let report = &pruned["result"]["extra"];
    assert_eq!(report["width/layers.0"], 4.0, "{report}");
    assert_eq!(report["width/layers.2"], 4.0, "{report}");
    assert!(accuracy(&pruned) >= accuracy(&base) - 0.03, "{} vs {}", accuracy(&pruned), accuracy(&base));
    let artifact = checkpoint(&pruned);
    let job = std::fs::read_to_string(Path::new(&artifact).join("job.toml"))?;
    assert_eq!(job.matches("channels = 4").count(), 2, "{job}");
    assert!(model_bytes(&artifact) * 2 <= model_bytes(&checkpoint(&base)), "the artifact must halve");
    // The smaller CNN is an ordinary artifact: it evaluates as the job reported.
    let rows = dir.path().join("compare.json");
    let out = shoal(
        "http://127.0.0.1:9",
        &["compare", &checkpoint(&base), &artifact, "--json", rows.to_str().expect("utf-8"), "--seconds", "0.05"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rows: Value = serde_json::from_slice(&std::fs::read(&rows)?)?;
    assert!((rows[1]["accuracy"].as_f64().expect("accuracy") - accuracy(&pruned)).abs() < 1.5 / 360.0, "{rows}");
    assert!(rows[1]["params"].as_f64() < rows[0]["params"].as_f64(), "{rows}");
    Ok(())
}

#[test]
fn bad_pruning_settings_are_refused_with_the_field() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let validate = |name: &str, prune: &str| {
        let (top, prune) = prune.split_once("[prune]").expect("a prune section");
        let text = base_job().replace("name = \"base\"", &format!("name = \"base\"\n{top}"));
        let file = job_file(dir.path(), name, &format!("{text}\n[prune]{prune}"));
        shoal("http://127.0.0.1:9", &["validate", file.to_str().expect("utf-8 path")])
    };
    for (prune, expected) in [
        ("[prune]\nsparsity = 1.0\n", "prune.sparsity: must be in [0, 1), got 1"),
        ("[prune]\nmethod = \"structured\"\n", "prune.sparsity: required"),
        ("[prune]\nsparsity = 0.5\nschedule = \"gradual\"\n", "prune.end_step: required for a gradual schedule"),
        ("[prune]\nsparsity = 0.5\nmethod = \"random\"\n", "prune.method: unknown value `random`"),
        ("[prune]\nsparsity = 0.5\nnorm = \"l2\"\n", "prune.norm: does not apply to magnitude pruning"),
        ("sync = \"ps\"\n[prune]\nsparsity = 0.5\n", "prune: parameter servers own the weights"),
    ] {
        let out = validate("bad", prune);
        assert_eq!(code(&out), 2, "{prune}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{prune}: expected `{expected}` in\n{}", stderr(&out));
    }
    let skips =
        base_job().replace("layers = [{ width = 128 }, { width = 128 }]", "layers = [{ width = 64, skip = true }]");
    let file = job_file(dir.path(), "skips", &format!("{skips}\n[prune]\nmethod = \"structured\"\nsparsity = 0.5\n"));
    let out = shoal("http://127.0.0.1:9", &["validate", file.to_str().expect("utf-8 path")]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("prune.method: structured pruning needs a hidden linear layer"), "{}", stderr(&out));
    Ok(())
}
