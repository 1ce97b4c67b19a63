//! `shoal monitor` and `shoal evaluate --explain` through the real binaries, on a model trained on
//! a headed CSV file whose label is a rule of two of its four features.
//!
//! Monitoring: data from the training distribution does not drift; data whose columns shifted
//! does, column by column and as a data set, and where its labels flip half-way the change
//! detectors fire after the flip; `--follow` judges window files as they land and `--on-drift`
//! submits a retraining job to the coordinator when drift is confirmed; bad input exits 2 naming
//! the option or column. Explanations: the two features of the rule matter and the other two do
//! not, integrated gradients add up to f(x) − f(baseline), the probability rises along the rule's
//! main feature. Both commands' `--html` pages render in a real browser. An `[evaluate]` job on two
//! workers, each scoring half of the file's rows, gives the report `shoal evaluate` gives on the
//! whole file.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;
use shoal_tests::browser::{assert_ok, browser, dump};
use shoal_tests::{Coordinator, Normal, code, run_job, shoal, start_worker, stderr, stdout};

/// Where the labels of the shifted file flip.
const FLIP: usize = 1500;
const ROWS: usize = 3000;

/// How a data file departs from the training distribution.
#[derive(Clone, Copy)]
struct Shift {
    /// Added to f2 and f3.
    mean: f64,
    /// The share of rows in region `north`.
    north: f64,
    /// Rows from here on have the opposite label.
    flip_from: Option<usize>,
    region: bool,
}

const SAME: Shift = Shift { mean: 0.0, north: 0.5, flip_from: None, region: true };

/// `rows` rows of four features; the label is 1 when f0 + 0.5·f1 (plus a little noise) > 0.
fn write(path: &Path, rows: usize, seed: u64, shift: Shift) -> anyhow::Result<()> {
    let mut n = Normal(seed);
    let mut text = String::from(if shift.region { "f0,f1,f2,f3,region,label\n" } else { "f0,f1,f2,f3,label\n" });
    for r in 0..rows {
        let f: Vec<f64> = (0..4).map(|j| n.normal() + if j >= 2 { shift.mean } else { 0.0 }).collect();
        let mut label = u8::from(f[0] + 0.5 * f[1] + 0.2 * n.normal() > 0.0);
        if shift.flip_from.is_some_and(|from| r >= from) {
            label = 1 - label;
        }
        write!(text, "{:.5},{:.5},{:.5},{:.5},", f[0], f[1], f[2], f[3])?;
        if shift.region {
            text.push_str(if n.uniform() < shift.north { "north," } else { "south," });
        }
        writeln!(text, "{label}")?;
    }
    std::fs::write(path, text)?;
    Ok(())
}

fn job(name: &str, data: &Path, steps: u32) -> String {
    format!(
        "name = \"{name}\"\n[model]\nkind = \"mlp\"\nlayers = [{{ width = 16 }}]\n[dataset]\nkind = \"csv\"\n\
         path = \"{}\"\nlabel_column = \"label\"\n[optimizer]\nkind = \"sgd\"\nlr = 0.05\nmomentum = 0.9\n\
         [training]\nbatch_size = 32\nsteps = {steps}\nseed = 3\n",
        data.display()
    )
}

fn drifted_columns(report: &Value) -> Vec<String> {
    let columns = report["data"]["columns"].as_array().expect("columns");
    columns.iter().filter(|c| c["drifted"] == true).map(|c| c["column"].as_str().expect("name").to_owned()).collect()
}

fn first_drift(report: &Value, detector: &str) -> Option<u64> {
    report["model"]["errors"]["alarms"]
        .as_array()
        .expect("alarms")
        .iter()
        .find(|a| a["detector"] == detector && a["kind"] == "drift")
        .map(|a| a["row"].as_u64().expect("row"))
}

fn s(path: &Path) -> String {
    path.to_str().expect("utf-8").to_owned()
}

/// A coordinator, a worker, and a model trained on `train.csv` in `dir`; the checkpoint.
fn trained(dir: &Path) -> anyhow::Result<(Coordinator, shoal_tests::Proc, String)> {
    write(&dir.join("train.csv"), 2000, 1, Shift { region: false, ..SAME })?;
    let coordinator = Coordinator::start(dir, &dir.join("c.db"), &[])?;
    let worker = start_worker(dir, &coordinator.url(), 1, "w-1")?;
    let trained = run_job(&coordinator.url(), dir, "model", &job("model", &dir.join("train.csv"), 400))?;
    let checkpoint = trained["result"]["checkpoint"].as_str().expect("checkpoint").to_owned();
    Ok((coordinator, worker, checkpoint))
}

/// Checks an `--html` page in the browser, when there is one: it renders, its script ran without
/// errors and saw `charts` charts, among them the `kinds`.
fn check_page(path: &Path, charts: usize, kinds: &[&str]) -> anyhow::Result<()> {
    let html = std::fs::read_to_string(path)?;
    assert!(html.len() < 300_000, "{} is {} bytes", path.display(), html.len());
    if let Some(chromium) = browser() {
        let name = path.file_stem().and_then(|n| n.to_str()).expect("name");
        let dom = dump(&chromium, path.parent().expect("folder"), &format!("{name}-checked"), &html);
        assert_ok(&dom, charts, kinds);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_finds_drift_in_data_predictions_and_errors() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let p = |name: &str| dir.path().join(name);
    write(&p("reference.csv"), ROWS, 2, SAME)?;
    write(&p("same.csv"), ROWS, 3, SAME)?;
    let shifted = Shift { mean: 1.5, north: 0.85, flip_from: Some(FLIP), region: true };
    write(&p("shifted.csv"), ROWS, 4, shifted)?;
    let (coordinator, _worker, checkpoint) = trained(dir.path())?;
    let url = coordinator.url();
    let base = ["monitor", "--reference", &s(&p("reference.csv")), "--artifact", &checkpoint];
    let monitor = |extra: &[&str]| shoal(&url, &[&base[..], extra].concat());

    // The same distribution: nothing drifts, and the detectors, warmed up on the reference's
    // errors, stay quiet.
    let out = monitor(&["--current", &s(&p("same.csv"))]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let same: Value = serde_json::from_str(&stdout(&out))?;
    assert_eq!(drifted_columns(&same), Vec::<String>::new(), "{}", stderr(&out));
    let columns: Vec<&str> = same["data"]["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["column"].as_str().expect("name"))
        .collect();
    assert_eq!(columns, ["f0", "f1", "f2", "f3", "region"], "the label is not a data column");
    assert_eq!(same["drifted"], false, "{}", stderr(&out));
    assert_eq!(same["model"]["prediction"]["drifted"], false);
    assert_eq!(same["model"]["margin_density"]["drift"]["drifted"], false);
    let errors = &same["model"]["errors"];
    assert!(errors["error_rate"].as_f64().expect("rate") < 0.1, "a model that learned the rule: {errors}");
    assert_eq!(errors["detectors"], serde_json::json!(["adwin", "ddm", "page_hinkley"]));
    assert!(errors["series"].as_array().expect("series").len() <= 200);

    // Shifted columns drift (a wider share than half: the data set too), the predictions
    // follow f2 and f3 little, and the flipped labels set off every detector after row 1500.
    let out = monitor(&["--current", &s(&p("shifted.csv")), "--html", &s(&p("monitor.html"))]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Five columns' distributions, the predictions', the error stream with its alarms.
    check_page(&p("monitor.html"), 7, &["histograms", "stream"])?;
    let moved: Value = serde_json::from_str(&stdout(&out))?;
    assert_eq!(drifted_columns(&moved), ["f2", "f3", "region"], "{}", stderr(&out));
    assert_eq!(moved["data"]["drifted"], true);
    assert_eq!(moved["confirmed"], true);
    for detector in ["adwin", "ddm", "page_hinkley"] {
        let row = first_drift(&moved, detector).unwrap_or_else(|| panic!("{detector} raised no alarm"));
        assert!((FLIP as u64..FLIP as u64 + 300).contains(&row), "{detector} at {row}");
    }
    let reasons = moved["reasons"].as_array().expect("reasons");
    assert!(reasons.contains(&Value::from("data")) && reasons.contains(&Value::from("errors")), "{reasons:?}");

    // --follow: both windows judged as they land, in name order; the second confirms drift and
    // the CLI submits the retraining job.
    let windows = p("windows");
    std::fs::create_dir(&windows)?;
    for (name, from) in [("w0.csv", "same.csv"), ("w1.csv", "shifted.csv")] {
        std::fs::copy(p(from), windows.join("partial"))?;
        std::fs::rename(windows.join("partial"), windows.join(name))?;
    }
    std::fs::write(p("retrain.toml"), job("retrain", &p("train.csv"), 5))?;
    let follow = ["--follow", &s(&windows), "--windows", "2", "--idle-timeout", "60", "--poll-ms", "50"];
    let out = monitor(&[&follow[..], &["--on-drift", &s(&p("retrain.toml"))]].concat());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out).lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 2, "{}", stdout(&out));
    assert_eq!((lines[0]["window"].as_u64(), lines[0]["confirmed"].as_bool()), (Some(0), Some(false)));
    assert_eq!((lines[1]["window"].as_u64(), lines[1]["confirmed"].as_bool()), (Some(1), Some(true)));
    assert!(lines[1]["current"].as_str().expect("current").ends_with("w1.csv"));
    assert!(stderr(&out).contains("drift confirmed in window 1"), "{}", stderr(&out));
    let listed = shoal(&url, &["list", "--json"]);
    assert!(stdout(&listed).contains("\"retrain\""), "the retraining job was submitted: {}", stdout(&listed));

    // Bad input: exit 2, naming the option or the column.
    let refused = |extra: &[&str], needle: &str| {
        let out = monitor(extra);
        assert_eq!(code(&out), 2, "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{extra:?}: {}", stderr(&out));
    };
    refused(&["--current", &s(&p("same.csv")), "--test", "t-test"], "--test");
    refused(&["--current", &s(&p("same.csv")), "--columns", "f0,altitude"], "altitude");
    refused(&["--current", &s(&p("nowhere.csv"))], "--current");
    refused(&["--current", &s(&p("same.csv")), "--on-drift", &s(&p("nowhere.toml"))], "nowhere.toml");
    std::fs::write(p("text.csv"), "f0,f1,f2,f3,region,label\n0.1,0.2,abc,0.4,north,1\n")?;
    refused(&["--current", &s(&p("text.csv"))], "column `f2`");
    std::fs::write(p("tiny.csv"), "f0,f1,f2,f3,region,label\n0.1,0.2,0.3,0.4,north,1\n0.2,0.1,0.3,0.4,south,0\n")?;
    let tiny =
        shoal(&url, &["monitor", "--reference", &s(&p("tiny.csv")), "--current", &s(&p("same.csv")), "--test", "ks"]);
    assert_eq!(code(&tiny), 2, "{}", stderr(&tiny));
    assert!(stderr(&tiny).contains("needs at least"), "{}", stderr(&tiny));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explanations_find_the_rule_and_add_up() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let p = |name: &str| dir.path().join(name);
    write(&p("data.csv"), 1500, 5, SAME)?;
    let (_coordinator, _worker, checkpoint) = trained(dir.path())?;
    let out = shoal(
        "http://127.0.0.1:9",
        &[
            "evaluate",
            &checkpoint,
            "--data",
            &s(&p("data.csv")),
            "--slice-by",
            "region",
            "--resamples",
            "200",
            "--explain",
            "--explain-samples",
            "60",
            "--html",
            &s(&p("evaluate.html")),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out))?;
    let e = &report["explanation"];
    let order: Vec<&str> = e["importance"]["importances"]
        .as_array()
        .expect("importances")
        .iter()
        .map(|i| i["feature"].as_str().expect("feature"))
        .collect();
    assert_eq!(&order[..2], ["f0", "f1"], "the rule's features lead: {}", e["importance"]);
    let importance = |f: &str| {
        let list = e["importance"]["importances"].as_array().expect("importances");
        list.iter().find(|i| i["feature"] == f).and_then(|i| i["importance"].as_f64()).expect("importance")
    };
    assert!(importance("f0") > 0.2, "shuffling f0 costs accuracy: {}", e["importance"]);
    for unused in ["f2", "f3"] {
        assert!(importance(unused).abs() < 0.03, "{unused} plays no part: {}", e["importance"]);
    }
    // Completeness: every sample's attributions add up to f(x) - f(baseline).
    let ig = &e["integrated_gradients"];
    let samples = ig["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 60);
    for sample in samples {
        let sum: f64 =
            sample["attributions"].as_array().expect("attributions").iter().map(|a| a.as_f64().expect("number")).sum();
        let change = sample["output"].as_f64().expect("output") - sample["baseline_output"].as_f64().expect("baseline");
        assert!((sum - change).abs() <= 1e-3, "{sample}");
    }
    assert_eq!(ig["unconverged"], 0);
    assert_eq!(ig["features"][0]["feature"], "f0", "{}", ig["features"]);
    assert_eq!(ig["slices"][0]["by"], "region");
    // The probability of class 1 rises along f0.
    let curves = e["sensitivity"]["curves"].as_array().expect("curves");
    let f0 = curves.iter().find(|c| c["feature"] == "f0").expect("a curve for f0");
    let mean: Vec<f64> = f0["mean"].as_array().expect("mean").iter().map(|v| v.as_f64().expect("number")).collect();
    assert!(mean.windows(2).all(|w| w[1] >= w[0] - 1e-3), "{mean:?}");
    assert!(mean[mean.len() - 1] - mean[0] > 0.5, "{mean:?}");
    assert!(e["residuals"].is_null(), "residuals are for regression");
    // Slice bars, fairness-free, importances, attributions and one curve per feature shown.
    check_page(&p("evaluate.html"), 3 + curves.len(), &["bars", "lines"])?;
    Ok(())
}

/// The first place where two reports differ beyond float rounding (numbers within 1e-9 of each
/// other, relative), or `None`.
fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64()?, y.as_f64()?);
            ((x - y).abs() > 1e-9 * x.abs().max(1.0)).then(|| format!("{at}: {x} vs {y}"))
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (p, q))| first_difference(p, q, &format!("{at}[{i}]")))
        }
        (Value::Object(x), Value::Object(y)) if x.len() == y.len() => x.iter().find_map(|(k, v)| match y.get(k) {
            Some(w) => first_difference(v, w, &format!("{at}.{k}")),
            None => Some(format!("{at}.{k} is missing")),
        }),
        _ => (a != b).then(|| format!("{at}: {a} vs {b}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evaluation_job_shards_the_file_across_workers_and_matches_the_command() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let p = |name: &str| dir.path().join(name);
    write(&p("data.csv"), ROWS, 7, SAME)?;
    let (coordinator, _worker, checkpoint) = trained(dir.path())?;
    let _second = start_worker(dir.path(), &coordinator.url(), 1, "w-2")?;
    let url = coordinator.url();
    let eval_job = |name: &str, slices: &str| {
        format!(
            "name = \"{name}\"\n[parallelism]\ndata = 2\n[evaluate]\nartifact = \"{checkpoint}\"\n\
             data = \"{}\"\nslice_by = [{slices}]\ngroups = \"region\"\nresamples = 200\nseed = 4\n\
             output = \"{}\"\nhtml = \"{}\"\n",
            s(&p("data.csv")),
            s(&p(&format!("{name}.json"))),
            s(&p(&format!("{name}.html"))),
        )
    };
    let job = run_job(&url, dir.path(), "sharded", &eval_job("sharded", r#""region", "f2", "region*f2""#))?;
    let result = &job["result"];
    assert_eq!(result["checkpoint"], s(&p("sharded.json")), "{job}");
    assert_eq!(result["extra"]["rows"], ROWS as f64, "{job}");
    assert_eq!(result["extra"]["ranks"], 2.0, "{job}");
    // Both workers ran a share.
    let workers: Vec<&str> =
        job["ranks"].as_array().expect("ranks").iter().map(|r| r["worker_id"].as_str().unwrap_or("")).collect();
    assert_eq!(workers.len(), 2, "{job}");
    assert_ne!(workers[0], workers[1], "{job}");
    let sharded: Value = serde_json::from_str(&std::fs::read_to_string(p("sharded.json"))?)?;
    let accuracy = sharded["evaluation"]["metrics"]["accuracy"]["value"].as_f64().expect("accuracy");
    assert!(accuracy > 0.85, "{}", sharded["evaluation"]["metrics"]);
    assert_eq!(result["validation_accuracy"].as_f64(), Some(accuracy));
    // The same evaluation in one process, on the whole file.
    let out = shoal(
        "http://127.0.0.1:9",
        &[
            "evaluate",
            &checkpoint,
            "--data",
            &s(&p("data.csv")),
            "--slice-by",
            "region",
            "--slice-by",
            "f2",
            "--slice-by",
            "region*f2",
            "--groups",
            "region",
            "--resamples",
            "200",
            "--seed",
            "4",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let whole: Value = serde_json::from_str(&stdout(&out))?;
    assert_eq!(whole["ranks"], 1);
    for part in ["evaluation", "fairness"] {
        assert_eq!(first_difference(&whole[part], &sharded[part], part), None);
    }
    let sets = sharded["evaluation"]["slices"].as_array().expect("slice sets");
    assert_eq!(sets.len(), 3);
    assert_eq!(sets[1]["slices"].as_array().expect("f2 buckets").len(), 4);
    assert_eq!(sets[2]["slices"].as_array().expect("crossed").len(), 8);
    // A bar chart per slice set (3), one per fairness rate across thresholds (7) and the groups' AUC.
    check_page(&p("sharded.html"), 11, &["bars", "lines"])?;
    // A slice column the file lacks fails the job, naming the field and the column.
    let failed = run_job(&url, dir.path(), "missing", &eval_job("missing", r#""zone""#)).expect_err("no zone column");
    let text = failed.to_string();
    assert!(text.contains("evaluate.slice_by: the data has no column `zone`"), "{text}");
    // A bad spec is refused at submit with exit code 2, naming the field.
    let file = shoal_tests::job_file(
        dir.path(),
        "bad",
        &eval_job("bad", r#""region""#).replace("resamples = 200", "resamples = 0"),
    );
    let out = shoal(&url, &["submit", &s(&file)]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("evaluate.resamples"), "{}", stderr(&out));
    Ok(())
}

#[test]
fn the_analysis_benchmark_prints_its_records() {
    let out = shoal("http://127.0.0.1:9", &["bench", "analysis", "--rows", "3000", "--resamples", "50"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let lines: Vec<Value> =
        stdout(&out).lines().map(serde_json::from_str).collect::<Result<_, _>>().expect("JSON lines");
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().expect("kind")).collect();
    assert_eq!(kinds, ["meta", "evaluate", "monitor", "monitor_model"]);
    assert_eq!(lines[1]["slices"], 10);
    assert!(lines[1]["accuracy"].as_f64().expect("accuracy") > 0.9, "{}", lines[1]);
    for l in &lines[1..] {
        assert!(l["seconds"].as_f64().expect("seconds") > 0.0 && l["within_target"].is_boolean(), "{l}");
    }
    // The current file's last ten columns are shifted by half a standard deviation.
    assert_eq!(lines[2]["drifted_columns"], 10, "{}", lines[2]);
    let bad = shoal("http://127.0.0.1:9", &["bench", "analysis", "--rows", "5"]);
    assert_eq!(code(&bad), 2, "{}", stderr(&bad));
    assert!(stderr(&bad).contains("--rows"), "{}", stderr(&bad));
}
