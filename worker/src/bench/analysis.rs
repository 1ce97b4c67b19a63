//! `shoal bench analysis`: the analysis commands timed through the real binary on large files, as
//! the analysis issue states its targets: `evaluate` with 10 slices and 1,000 bootstrap resamples
//! on 1 million rows of 30 features (under 30 s on one core), and `monitor` on two files of 1
//! million rows and 30 columns (under 10 s). The model is a small MLP trained here on a sample of
//! the same distribution; the current file's last ten columns are shifted, so drift is found.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::error::BenchError;
use super::train::train_job;

/// What `shoal bench analysis` runs.
#[derive(Clone, Debug)]
pub struct AnalysisPlan {
    pub rows: usize,
    pub features: usize,
    /// Values of the slice column.
    pub slices: usize,
    pub resamples: usize,
    /// Where the files and the model go.
    pub dir: PathBuf,
}

/// Rows of the training file.
const TRAIN_ROWS: usize = 20_000;
const EVALUATE_TARGET_S: f64 = 30.0;
const MONITOR_TARGET_S: f64 = 10.0;

/// Writes `rows` rows: features `x0..`, with `shift` added to the last ten, then (unless
/// `train`) a slice column `segment` of `slices` values, then the label (x0 + 0.5·x1 > 0).
fn write_csv(
    path: &Path,
    plan: &AnalysisPlan,
    rows: usize,
    seed: u64,
    shift: f64,
    train: bool,
) -> Result<(), BenchError> {
    let failed = |source| BenchError::Write { path: path.to_path_buf(), source };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).map_err(failed)?);
    let mut header: Vec<String> = (0..plan.features).map(|j| format!("x{j}")).collect();
    if !train {
        header.push("segment".into());
    }
    header.push("label".into());
    writeln!(out, "{}", header.join(",")).map_err(failed)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let shifted_from = plan.features.saturating_sub(10);
    let mut line = String::with_capacity(16 * plan.features);
    let mut row = vec![0f64; plan.features];
    for _ in 0..rows {
        line.clear();
        for (j, v) in row.iter_mut().enumerate() {
            *v = normal(&mut rng) + if j >= shifted_from { shift } else { 0.0 };
            use std::fmt::Write as _;
            let _ = write!(line, "{v:.4},");
        }
        if !train {
            use std::fmt::Write as _;
            let _ = write!(line, "s{},", rng.random_range(0..plan.slices));
        }
        let label = u8::from(row[0] + 0.5 * row.get(1).copied().unwrap_or(0.0) > 0.0);
        writeln!(out, "{line}{label}").map_err(failed)?;
    }
    out.flush().map_err(failed)
}

/// A standard normal number (Box–Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Trains the MLP on the training file and returns its checkpoint.
fn train_model(dir: &Path, data_path: &Path) -> Result<PathBuf, BenchError> {
    let text = format!(
        "name = \"bench-analysis\"\n[model]\nkind = \"mlp\"\nlayers = [{{ width = 32 }}]\n[dataset]\nkind = \"csv\"\n\
         path = \"{}\"\nlabel_column = \"label\"\n[optimizer]\nkind = \"sgd\"\nlr = 0.05\nmomentum = 0.9\n\
         [training]\nbatch_size = 64\nsteps = 300\nseed = 1\n",
        data_path.display()
    );
    train_job(&dir.join("model"), text, "bench-analysis")
}

/// Runs this binary with `args` (its report to `json`) and returns the wall-clock seconds.
fn timed(args: &[String], json: &Path) -> Result<(f64, Value), BenchError> {
    let exe = std::env::current_exe()
        .map_err(|e| BenchError::Command { command: "shoal-worker".into(), reason: e.to_string() })?;
    let command = format!("shoal-worker {}", args.join(" "));
    let started = Instant::now();
    let out = Command::new(exe)
        .args(args)
        .arg("--json")
        .arg(json)
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| BenchError::Command { command: command.clone(), reason: e.to_string() })?;
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(BenchError::Command { command, reason: String::from_utf8_lossy(&out.stderr).into_owned() });
    }
    let text =
        std::fs::read_to_string(json).map_err(|source| BenchError::Write { path: json.to_path_buf(), source })?;
    let report = serde_json::from_str(&text).map_err(|e| BenchError::Command { command, reason: e.to_string() })?;
    Ok((seconds, report))
}

/// The benchmark's records: one for evaluate, one for monitor on the data, one with the model.
pub fn run(plan: &AnalysisPlan) -> Result<Vec<Value>, BenchError> {
    let p = |name: &str| plan.dir.join(name);
    let started = Instant::now();
    write_csv(&p("train.csv"), plan, TRAIN_ROWS, 1, 0.0, true)?;
    write_csv(&p("reference.csv"), plan, plan.rows, 2, 0.0, false)?;
    write_csv(&p("current.csv"), plan, plan.rows, 3, 0.5, false)?;
    let model = train_model(&plan.dir, &p("train.csv"))?;
    let setup_s = started.elapsed().as_secs_f64();
    let s = |path: &Path| path.display().to_string();
    let evaluate: Vec<String> = [
        "evaluate",
        &s(&model),
        "--data",
        &s(&p("reference.csv")),
        "--slice-by",
        "segment",
        "--resamples",
        &plan.resamples.to_string(),
    ]
    .map(String::from)
    .to_vec();
    let (seconds, report) = timed(&evaluate, &p("evaluate.json"))?;
    let slices = report["evaluation"]["slices"][0]["slices"].as_array().map_or(0, Vec::len);
    let mut records = vec![json!({
        "bench": "analysis",
        "kind": "evaluate",
        "rows": plan.rows,
        "features": plan.features,
        "slices": slices,
        "resamples": plan.resamples,
        "accuracy": report["evaluation"]["metrics"]["accuracy"]["value"],
        "seconds": seconds,
        "target_s": EVALUATE_TARGET_S,
        "within_target": seconds < EVALUATE_TARGET_S,
        "setup_s": setup_s,
    })];
    let monitor: Vec<String> =
        ["monitor", "--reference", &s(&p("reference.csv")), "--current", &s(&p("current.csv")), "--ignore", "label"]
            .map(String::from)
            .to_vec();
    for with_model in [false, true] {
        let mut args = monitor.clone();
        if with_model {
            args.extend(["--artifact".to_owned(), s(&model)]);
        }
        let (seconds, report) = timed(&args, &p("monitor.json"))?;
        records.push(json!({
            "bench": "analysis",
            "kind": if with_model { "monitor_model" } else { "monitor" },
            "rows": plan.rows,
            "columns": report["data"]["columns"].as_array().map_or(0, Vec::len),
            "drifted_columns": report["data"]["drifted_columns"],
            "seconds": seconds,
            "target_s": MONITOR_TARGET_S,
            "within_target": seconds < MONITOR_TARGET_S,
        }));
    }
    Ok(records)
}
