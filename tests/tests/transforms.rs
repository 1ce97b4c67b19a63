//! `dataset.transforms` and `shoal analyze-data` through the real binaries: a job that
//! standardizes six features on very different scales and keeps three principal components
//! trains well, saves the fitted pipeline with its checkpoint, and `shoal predict`, `shoal
//! evaluate`, `shoal monitor` and an int8 artifact from `shoal quantize` give its reported
//! accuracy on the raw six columns (so the transforms are applied as in training); a student
//! distilled from it on half of the rows applies the teacher's; LDA works on a three-class
//! problem; bad transforms are refused with exit 2 naming `dataset.transforms[...]`;
//! `analyze-data` reports the explained variance that sizes the PCA.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;
use shoal_common::spec::load_toml;
use shoal_tests::{Coordinator, Normal, accuracy, code, job_file, run_job, shoal, start_worker, stderr, stdout};
use shoal_train::data::{self, TargetData};

const ROWS: usize = 1000;
const COLUMNS: &str = "f0,f1,f2,f3,f4,f5";

/// Six columns on scales from 0.2 to 50 that are mixtures of three latent factors z (plus 2%
/// noise), so standardized they lie close to a 3-dimensional subspace; the label is 1 where
/// z0 + z1 > 0, or with `classes = 3` one of three bands of z0 + z1.
fn write(path: &Path, classes: u32, seed: u64) -> anyhow::Result<()> {
    let mut n = Normal(seed);
    let mut text = format!("{COLUMNS},label\n");
    for _ in 0..ROWS {
        let z = [n.normal(), n.normal(), n.normal()];
        let clean =
            [5.0 * z[0], 0.2 * z[1], 50.0 * z[2], 5.0 * (z[0] + z[1]), 0.2 * (z[1] - z[2]), 50.0 * (z[0] - z[2])];
        let scales = [5.0, 0.2, 50.0, 5.0, 0.2, 50.0];
        let cells: Vec<String> =
            clean.iter().zip(scales).map(|(c, s)| format!("{:.5}", c + 0.02 * s * n.normal())).collect();
        let t = z[0] + z[1];
        let label = match classes {
            2 => u32::from(t > 0.0),
            _ => u32::from(t > -0.6) + u32::from(t > 0.6),
        };
        writeln!(text, "{},{label}", cells.join(","))?;
    }
    std::fs::write(path, text)?;
    Ok(())
}

fn job(name: &str, data: &Path, transforms: &str) -> String {
    format!(
        "name = \"{name}\"\n[model]\nkind = \"mlp\"\nlayers = [{{ width = 16 }}]\n[dataset]\nkind = \"csv\"\n\
         path = \"{}\"\nlabel_column = \"label\"\ntransforms = {transforms}\n[optimizer]\nkind = \"sgd\"\n\
         lr = 0.05\nmomentum = 0.9\n[training]\nbatch_size = 32\nsteps = 300\nseed = 3\nlog_every = 100\n",
        data.display()
    )
}

fn s(path: &Path) -> String {
    path.to_str().expect("utf-8").to_owned()
}

fn tool(args: &[&str]) -> (i32, String, String) {
    let out = shoal("http://127.0.0.1:9", args);
    (code(&out), stdout(&out), stderr(&out))
}

/// The job's validation split as a headed CSV file of the raw columns, and its labels.
fn raw_validation(text: &str, out: &Path) -> anyhow::Result<Vec<u32>> {
    let (_, mut cfg) = load_toml(text)?;
    cfg.dataset.transforms.clear();
    let v = data::load(&cfg.dataset)?.validation.expect("a validation split");
    let TargetData::Classes { labels, .. } = &v.targets else { panic!("classes") };
    let mut csv = format!("{COLUMNS},label\n");
    for (row, label) in v.x.chunks_exact(6).zip(labels) {
        let cells: Vec<String> = row.iter().map(|x| format!("{x:?}")).collect();
        writeln!(csv, "{},{label}", cells.join(","))?;
    }
    std::fs::write(out, csv)?;
    Ok(labels.clone())
}

/// The accuracy `shoal predict` prints on standard error.
fn predicted_accuracy(err: &str) -> f64 {
    let (_, rest) = err.split_once("accuracy ").unwrap_or_else(|| panic!("no accuracy in: {err}"));
    rest.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("bad accuracy in: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transforms_are_fitted_saved_and_applied_everywhere() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let p = |name: &str| dir.path().join(name);
    write(&p("two.csv"), 2, 1)?;
    write(&p("three.csv"), 3, 2)?;

    // analyze-data: the six columns' components explain all of the variance, three of them
    // nearly all; a column that is not there is named, with exit 2.
    let (rc, text, err) = tool(&["analyze-data", &s(&p("two.csv")), "--columns", COLUMNS, "--json", &s(&p("a.json"))]);
    assert_eq!(rc, 0, "{err}");
    assert!(text.contains("principal components of 6 numeric columns"), "{text}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(p("a.json"))?)?;
    assert_eq!(report["profile"]["rows"], ROWS);
    assert_eq!(report["profile"]["columns"].as_array().expect("columns").len(), 7);
    let ratios: Vec<f64> = serde_json::from_value(report["explained"]["explained_ratio"].clone())?;
    assert_eq!(ratios.len(), 6);
    assert!((ratios.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{ratios:?}");
    let cumulative: Vec<f64> = serde_json::from_value(report["explained"]["cumulative_ratio"].clone())?;
    assert!(cumulative[2] > 0.99 && cumulative[1] < 0.95, "{cumulative:?}");
    let (rc, _, err) = tool(&["analyze-data", &s(&p("two.csv")), "--columns", "f0,nope"]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("no column `nope`"), "{err}");

    // Bad transforms are refused before anything runs, naming the transform.
    let pca = r#"[{ kind = "standardize" }, { kind = "pca", components = 3 }]"#;
    let pca_job = job("pca", &p("two.csv"), pca);
    for (transforms, want) in [
        (
            r#"[{ kind = "standardize" }, { kind = "pca", components = 0 }]"#,
            "dataset.transforms[1].components: must be at least 1",
        ),
        (r#"[{ kind = "umap" }]"#, "dataset.transforms[0].kind: unknown value `umap`"),
    ] {
        let file = job_file(dir.path(), "bad", &job("bad", &p("two.csv"), transforms));
        let (rc, _, err) = tool(&["validate", &s(&file)]);
        assert_eq!(rc, 2, "{transforms}: {err}");
        assert!(err.contains(want), "{transforms}: {err}");
    }
    let regression = job("bad", &p("two.csv"), r#"[{ kind = "lda" }]"#)
        .replace("label_column", "task = \"regression\"\nlabel_column");
    let (rc, _, err) = tool(&["validate", &s(&job_file(dir.path(), "bad", &regression))]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("dataset.transforms[0].kind: lda needs class labels"), "{err}");

    let coordinator = Coordinator::start(dir.path(), &p("c.db"), &[])?;
    let url = coordinator.url();
    let _worker = start_worker(dir.path(), &url, 1, "w-1")?;
    // A CSV file's width is known once it is read: a PCA larger than it fails the job then.
    let wide = job("wide", &p("two.csv"), r#"[{ kind = "pca", components = 7 }]"#);
    let err = run_job(&url, dir.path(), "wide", &wide).expect_err("7 components of 6 columns").to_string();
    assert!(err.contains("dataset.transforms[0].components: asks for 7 components of 6 input columns"), "{err}");

    // Standardize, then three principal components: the checkpoint holds the pipeline, and the
    // model reads its three outputs.
    let trained = run_job(&url, dir.path(), "pca", &pca_job)?;
    let reported = accuracy(&trained);
    assert!(reported > 0.9, "validation accuracy {reported}");
    let checkpoint = trained["result"]["checkpoint"].as_str().expect("checkpoint").to_owned();
    let saved = shoal_train::checkpoint::transforms(Path::new(&checkpoint))?.expect("transforms.json");
    assert_eq!((saved.inputs(), saved.outputs(), saved.steps().len()), (6, 3, 2));
    let labels = raw_validation(&pca_job, &p("val.csv"))?;
    let tolerance = 1.5 / labels.len() as f64;

    // predict and evaluate on the raw six columns give the reported accuracy.
    let (rc, _, err) = tool(&[
        "predict",
        &checkpoint,
        "--data",
        &s(&p("val.csv")),
        "--label-column",
        "label",
        "-o",
        &s(&p("out.csv")),
    ]);
    assert_eq!(rc, 0, "{err}");
    assert!((predicted_accuracy(&err) - reported).abs() <= tolerance, "predicted: {err}, reported {reported}");
    let (rc, text, err) = tool(&["evaluate", &checkpoint, "--data", &s(&p("val.csv")), "--resamples", "50"]);
    assert_eq!(rc, 0, "{err}");
    let evaluated: Value = serde_json::from_str(&text)?;
    let got = evaluated["evaluation"]["metrics"]["accuracy"]["value"].as_f64().expect("accuracy");
    assert!((got - reported).abs() <= tolerance, "evaluated {got}, reported {reported}");
    // So does monitor: its error rate on the same rows is the accuracy's complement.
    let val = s(&p("val.csv"));
    let out = shoal(&url, &["monitor", "--reference", &val, "--current", &val, "--artifact", &checkpoint]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let monitored: Value = serde_json::from_str(&stdout(&out))?;
    let rate = monitored["model"]["errors"]["error_rate"].as_f64().expect("error rate");
    assert!((rate - (1.0 - reported)).abs() <= tolerance, "monitor's error rate {rate}, reported accuracy {reported}");
    std::fs::write(p("five.csv"), "f0,f1,f2,f3,f4\n1,2,3,4,5\n")?;
    let (rc, _, err) = tool(&["predict", &checkpoint, "--data", &s(&p("five.csv")), "--header"]);
    assert_eq!(rc, 2, "five features: {err}");
    assert!(err.contains("has 5 features, the model's transforms take 6"), "{err}");

    // The int8 artifact carries the transforms and predicts as its report says.
    let int8 = p("int8");
    let (rc, text, err) = tool(&["quantize", &checkpoint, "-o", &s(&int8), "--json"]);
    assert_eq!(rc, 0, "{err}");
    let quantized: Value = serde_json::from_str(text.trim())?;
    assert_eq!(shoal_train::checkpoint::transforms(&int8)?.as_ref(), Some(&saved));
    let (rc, _, err) =
        tool(&["predict", &s(&int8), "--data", &s(&p("val.csv")), "--label-column", "label", "-o", &s(&p("q.csv"))]);
    assert_eq!(rc, 0, "{err}");
    let want = quantized["accuracy"].as_f64().expect("int8 accuracy");
    assert!((predicted_accuracy(&err) - want).abs() <= tolerance, "int8: {err}, reported {want}");

    // A student distilled from it on half of the rows applies the teacher's transforms: refitted
    // on its half they would differ, and the teacher would misread the student's batches.
    let student = pca_job
        .replace("name = \"pca\"", "name = \"student\"")
        .replace("transforms =", "train_fraction = 0.5\ntransforms =")
        + &format!("[distill]\nteacher = \"{checkpoint}\"\n");
    let distilled = run_job(&url, dir.path(), "student", &student)?;
    let student_checkpoint = distilled["result"]["checkpoint"].as_str().expect("checkpoint");
    assert_eq!(shoal_train::checkpoint::transforms(Path::new(student_checkpoint))?.as_ref(), Some(&saved));

    // LDA on three classes: two discriminants.
    let lda = run_job(
        &url,
        dir.path(),
        "lda",
        &job("lda", &p("three.csv"), r#"[{ kind = "standardize" }, { kind = "lda" }]"#),
    )?;
    assert!(accuracy(&lda) > 0.85, "lda validation accuracy {}", accuracy(&lda));
    let lda_checkpoint = lda["result"]["checkpoint"].as_str().expect("checkpoint");
    let fitted = shoal_train::checkpoint::transforms(Path::new(lda_checkpoint))?.expect("transforms.json");
    assert_eq!(fitted.outputs(), 2);
    Ok(())
}
