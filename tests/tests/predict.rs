//! `shoal predict` and `shoal compare` through the real binaries: every kind of artifact a digits
//! job produces (fp32, structurally pruned, magnitude-pruned with sparse storage, int8) predicts a
//! CSV and an IDX file with the accuracy its job or `shoal quantize` reported, and the comparison
//! report has one true row per artifact; `shoal evaluate` gives the same accuracy with an
//! interval around it, slices that add up to the data and fairness rates per group.

use std::path::Path;

use serde_json::Value;
use shoal_common::spec::load_toml;
use shoal_tests::{Coordinator, accuracy, code, digits_mlp, run_job, shoal, start_worker, stderr, stdout};
use shoal_train::data::{self, Dataset, TargetData};

fn base_job() -> String {
    digits_mlp("base", "[{ width = 128 }, { width = 128 }]", "epochs = 20\nseed = 1")
}

fn checkpoint(job: &Value) -> String {
    job["result"]["checkpoint"].as_str().expect("checkpoint").to_owned()
}

fn labels(d: &Dataset) -> &[u32] {
    let TargetData::Classes { labels, .. } = &d.targets else { panic!("digits are classes") };
    labels
}

/// The validation split as a CSV file with the label in the last column, and as IDX files
/// (float images of 8x8, unsigned byte labels).
fn write_validation(dir: &Path, v: &Dataset) -> anyhow::Result<()> {
    let mut csv = String::new();
    for (row, label) in v.x.chunks_exact(v.features).zip(labels(v)) {
        let cells: Vec<String> = row.iter().map(|x| format!("{x:?}")).collect();
        csv.push_str(&format!("{},{label}\n", cells.join(",")));
    }
    std::fs::write(dir.join("val.csv"), csv)?;
    let mut images = vec![0, 0, 0x0D, 3];
    for d in [v.rows as u32, 8, 8] {
        images.extend_from_slice(&d.to_be_bytes());
    }
    for x in &v.x {
        images.extend_from_slice(&x.to_be_bytes());
    }
    std::fs::write(dir.join("val-images.idx"), images)?;
    let mut label_file = vec![0, 0, 0x08, 1];
    label_file.extend_from_slice(&(v.rows as u32).to_be_bytes());
    label_file.extend(labels(v).iter().map(|&l| l as u8));
    std::fs::write(dir.join("val-labels.idx"), label_file)?;
    Ok(())
}

fn predict(args: &[&str]) -> (i32, String, String) {
    let out = shoal("http://127.0.0.1:9", &[&["predict"], args].concat());
    (code(&out), stdout(&out), stderr(&out))
}

/// Accuracy of a predictions file against the labels.
fn scored(path: &Path, labels: &[u32]) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(path)?;
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("prediction,probability"));
    let predicted: Vec<u32> = lines.map(|l| l.split(',').next().expect("cell").parse().expect("class")).collect();
    assert_eq!(predicted.len(), labels.len(), "one prediction per row");
    Ok(predicted.iter().zip(labels).filter(|(p, l)| p == l).count() as f64 / labels.len() as f64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_artifact_predicts_with_its_reported_accuracy() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let url = coordinator.url();
    let _worker = start_worker(dir.path(), &url, 1, "w-1")?;

    let base = run_job(&url, dir.path(), "base", &base_job())?;
    let parent = format!("[inherit]\ncheckpoint = \"{}\"\n", checkpoint(&base));
    let tuned = |name: &str, prune: &str| {
        base_job().replace("epochs = 20", "steps = 100").replace("name = \"base\"", &format!("name = \"{name}\""))
            + &parent
            + prune
    };
    let structured = run_job(
        &url,
        dir.path(),
        "structured",
        &tuned("structured", "[prune]\nmethod = \"structured\"\nsparsity = 0.5\n"),
    )?;
    let sparse = run_job(&url, dir.path(), "sparse", &tuned("sparse", "[prune]\nsparsity = 0.8\n"))?;
    let int8 = dir.path().join("int8");
    let quantized =
        shoal("http://127.0.0.1:9", &["quantize", &checkpoint(&base), "-o", int8.to_str().expect("utf-8"), "--json"]);
    assert_eq!(code(&quantized), 0, "{}", stderr(&quantized));
    let report: Value = serde_json::from_str(stdout(&quantized).trim())?;

    let (_, cfg) = load_toml(&base_job())?;
    let validation = data::load(&cfg.dataset)?.validation.expect("a validation split");
    write_validation(dir.path(), &validation)?;
    let (csv, images, label_file) =
        (dir.path().join("val.csv"), dir.path().join("val-images.idx"), dir.path().join("val-labels.idx"));

    let artifacts = [
        ("fp32", checkpoint(&base), accuracy(&base)),
        ("structured", checkpoint(&structured), accuracy(&structured)),
        ("sparse", checkpoint(&sparse), accuracy(&sparse)),
        ("int8", int8.display().to_string(), report["accuracy"].as_f64().expect("int8 accuracy")),
    ];
    // One sample of 360 may flip where two evaluations sum in another order.
    let tolerance = 1.5 / validation.rows as f64;
    for (kind, path, reported) in &artifacts {
        let out = dir.path().join(format!("{kind}.csv"));
        let (rc, _, err) = predict(&[
            path,
            "--data",
            csv.to_str().expect("utf-8"),
            "--label-column",
            "64",
            "-o",
            out.to_str().expect("utf-8"),
        ]);
        assert_eq!(rc, 0, "{kind}: {err}");
        let got = scored(&out, labels(&validation))?;
        assert!((got - reported).abs() <= tolerance, "{kind}: predicted {got}, reported {reported}");
        assert!(err.contains(&format!("accuracy {got:.4}")), "{kind}: {err}");

        let (rc, text, err) = predict(&[
            path,
            "--data",
            images.to_str().expect("utf-8"),
            "--labels",
            label_file.to_str().expect("utf-8"),
        ]);
        assert_eq!(rc, 0, "{kind}: {err}");
        assert_eq!(text.lines().count(), validation.rows + 1, "{kind}: a header and a row each on stdout");
        assert!(err.contains(&format!("accuracy {got:.4}")), "{kind}: IDX and CSV agree: {err}");
    }

    // `shoal evaluate` on a headed CSV file with a column that is not a feature: the fp32 and
    // int8 artifacts' accuracy as reported, slices that add up, fairness rates for one class.
    let headed = dir.path().join("headed.csv");
    let mut names: Vec<String> = (0..64).map(|i| format!("f{i}")).collect();
    names.extend(["label".into(), "half".into()]);
    let mut text = names.join(",") + "\n";
    for (i, (row, label)) in validation.x.chunks_exact(64).zip(labels(&validation)).enumerate() {
        let cells: Vec<String> = row.iter().map(|x| format!("{x:?}")).collect();
        text.push_str(&format!("{},{label},{}\n", cells.join(","), if i % 2 == 0 { "even" } else { "odd" }));
    }
    std::fs::write(&headed, text)?;
    for (kind, path, reported) in [&artifacts[0], &artifacts[3]] {
        let args = [path.as_str(), "--data", headed.to_str().expect("utf-8"), "--label-column", "label"];
        let rest = ["--slice-by", "half", "--groups", "half", "--positive-class", "3", "--resamples", "200"];
        let out = shoal("http://127.0.0.1:9", &[&["evaluate"], &args[..], &rest[..]].concat());
        assert_eq!(code(&out), 0, "{kind}: {}", stderr(&out));
        let report: Value = serde_json::from_str(&stdout(&out))?;
        let acc = &report["evaluation"]["metrics"]["accuracy"];
        let got = acc["value"].as_f64().expect("accuracy");
        assert!((got - reported).abs() <= tolerance, "{kind}: evaluated {got}, reported {reported}");
        let (low, high) = (acc["low"].as_f64().expect("low"), acc["high"].as_f64().expect("high"));
        assert!(low < got && got < high, "{kind}: {acc}");
        let slices = report["evaluation"]["slices"][0]["slices"].as_array().expect("slices");
        let rows: u64 = slices.iter().map(|s| s["rows"].as_u64().expect("rows")).sum();
        assert_eq!(rows as usize, validation.rows, "{kind}");
        assert_eq!(report["fairness"]["groups"].as_array().expect("groups").len(), 2, "{kind}");
    }
    let args = [artifacts[0].1.as_str(), "--data", headed.to_str().expect("utf-8"), "--label-column", "label"];
    let bad = |extra: &[&str]| shoal("http://127.0.0.1:9", &[&["evaluate"], &args[..], extra].concat());
    let missing = bad(&["--ignore", "half", "--slice-by", "region"]);
    assert_eq!(code(&missing), 2);
    assert!(stderr(&missing).contains("--slice-by: the data has no column `region`"), "{}", stderr(&missing));
    // Without --ignore the text column would be a feature of this unnamed model: the error says so.
    let text_feature = bad(&[]);
    assert_eq!(code(&text_feature), 2);
    assert!(stderr(&text_feature).contains("column `half`: is a feature"), "{}", stderr(&text_feature));
    assert!(stderr(&text_feature).contains("--ignore"), "{}", stderr(&text_feature));

    let json = dir.path().join("compare.json");
    let paths: Vec<&str> = artifacts.iter().map(|(_, p, _)| p.as_str()).collect();
    let out = shoal(
        "http://127.0.0.1:9",
        &[&["compare"], &paths[..], &["--json", json.to_str().expect("utf-8"), "--seconds", "0.2"]].concat(),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 1 + artifacts.len(), "a header and a row each:\n{}", stdout(&out));
    let rows: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    let field = |i: usize, f: &str| rows[i][f].as_f64().unwrap_or_else(|| panic!("row {i} has no {f}: {}", rows[i]));
    let formats: Vec<&str> = rows.iter().map(|r| r["format"].as_str().expect("format")).collect();
    assert_eq!(formats, ["fp32", "fp32", "sparse", "int8"]);
    for (i, (kind, _, reported)) in artifacts.iter().enumerate() {
        assert!((field(i, "accuracy") - reported).abs() <= tolerance, "{kind}: {}", rows[i]);
        assert!((field(i, "accuracy_drop") - (field(0, "accuracy") - field(i, "accuracy"))).abs() < 1e-12);
        assert!(field(i, "latency_ms_b1") > 0.0 && field(i, "samples_per_s_b256") > 0.0, "{}", rows[i]);
    }
    assert_eq!(field(0, "accuracy_drop"), 0.0);
    assert!(field(1, "params") * 2.0 < field(0, "params"), "structured pruning halves the hidden layers: {rows:?}");
    assert!(field(1, "bytes") * 2.0 <= field(0, "bytes"), "{rows:?}");
    assert!((field(2, "sparsity") - 0.8).abs() < 0.01, "{rows:?}");
    assert!(field(2, "bytes") * 2.0 < field(0, "bytes"), "sparse storage: {rows:?}");
    assert_eq!(field(3, "params"), field(0, "params"), "{rows:?}");
    assert!(field(0, "bytes") / field(3, "bytes") >= 3.5, "{rows:?}");

    // Refused input names the option, with exit code 2.
    let base_path = checkpoint(&base);
    let (rc, _, err) = predict(&[&base_path, "--data", dir.path().join("none.csv").to_str().expect("utf-8")]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("--data") && err.contains("cannot read"), "{err}");
    let (rc, _, err) = predict(&[&base_path, "--data", images.to_str().expect("utf-8"), "--label-column", "3"]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("--label-column, --header: are for CSV files"), "{err}");
    let (rc, _, err) = predict(&[dir.path().to_str().expect("utf-8"), "--data", csv.to_str().expect("utf-8")]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("is not an artifact"), "{err}");
    // Without --label-column the label becomes a 65th feature, which the model does not take.
    let (rc, _, err) = predict(&[&base_path, "--data", csv.to_str().expect("utf-8")]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("65"), "{err}");
    let out = shoal("http://127.0.0.1:9", &["compare", &base_path, "--seconds", "0"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--seconds"), "{}", stderr(&out));
    Ok(())
}
