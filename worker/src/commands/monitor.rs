//! `shoal-worker monitor`: drift between a reference data set and current data, column by column
//! with Evidently's default tests (or `--test`), and with `--artifact` the model's own drift:
//! its predictions' distribution, its margin density and, where the current data has labels,
//! ADWIN, DDM and Page–Hinkley over its stream of errors. `--follow DIR` watches a folder and
//! judges each window file that lands in it; a window is confirmed drifted after `--confirm`
//! drifted windows in a row, which is what `shoal monitor --on-drift` submits a retraining job on.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;
use shoal_analysis::Frame;
use shoal_analysis::drift::{DatasetDrift, Test, dataset_drift};

use super::follow::Folder;
use super::model::{ModelDrift, Monitored};
use shoal_worker::analysis::{Failure, write_html};

use super::{exit, monitor_page, write_json};

/// Arguments of `monitor`.
#[derive(clap::Args, Debug)]
pub struct MonitorArgs {
    /// The reference data (a CSV file with a header): what the model was trained or validated on.
    #[arg(long)]
    pub reference: PathBuf,
    /// The current data to compare with the reference (or `--follow`).
    #[arg(long)]
    pub current: Option<PathBuf>,
    /// Watch this folder for window files (`*.csv`, judged in name order once fully written; write
    /// each under another name and rename it) and report each as it lands.
    #[arg(long)]
    pub follow: Option<PathBuf>,
    /// With `--follow`: stop after this many windows.
    #[arg(long)]
    pub windows: Option<usize>,
    /// With `--follow`: stop when no window has landed for this many seconds.
    #[arg(long)]
    pub idle_timeout: Option<f64>,
    /// With `--follow`: how often the folder is read, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub poll_ms: u64,
    /// The test for every column: ks, chi_square, z, wasserstein, jensen_shannon, psi or
    /// hellinger (default: chosen per column, as Evidently does).
    #[arg(long)]
    pub test: Option<String>,
    /// The columns to compare (default: all of the reference's but the label and `--ignore`).
    #[arg(long, value_delimiter = ',')]
    pub columns: Vec<String>,
    /// Columns left out of the comparison (and, for models trained without names, not features).
    #[arg(long)]
    pub ignore: Vec<String>,
    /// Also monitor this model (a checkpoint step directory, a pruned checkpoint or an int8
    /// artifact).
    #[arg(long)]
    pub artifact: Option<PathBuf>,
    /// The label column (default: the one the model's job trained on); labels in the current
    /// data turn on the error stream's change detectors.
    #[arg(long)]
    pub label_column: Option<String>,
    /// A classification sample is near the decision boundary when its two most likely classes'
    /// probabilities are closer than this.
    #[arg(long, default_value_t = 0.2)]
    pub margin: f64,
    /// A regression prediction counts as an error when it misses by more than this (default:
    /// the reference's 90th percentile of absolute errors).
    #[arg(long)]
    pub error_tolerance: Option<f64>,
    /// Drifted windows in a row that confirm drift.
    #[arg(long, default_value_t = 1)]
    pub confirm: usize,
    /// Where the JSON report goes (default: standard output); with `--follow`, one line per
    /// window is appended.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also write the report as one self-contained HTML page with charts (with `--follow`, the
    /// latest window's, rewritten as each lands).
    #[arg(long)]
    pub html: Option<PathBuf>,
}

/// What `monitor` writes for one current data set (one window with `--follow`).
#[derive(Clone, Debug, Serialize)]
pub struct Window {
    pub reference: String,
    pub current: String,
    /// The window's number, from 0 (always 0 without `--follow`).
    pub window: usize,
    pub rows: usize,
    pub data: DatasetDrift,
    pub model: Option<ModelDrift>,
    /// What drifted: `data`, `prediction`, `margin_density`, `errors`.
    pub reasons: Vec<&'static str>,
    pub drifted: bool,
    /// Drifted in `--confirm` windows in a row (counting restarts after each confirmation).
    pub confirmed: bool,
}

/// A window file that could not be judged, with `--follow` (the monitor goes on).
#[derive(Serialize)]
struct Unreadable {
    current: String,
    window: usize,
    error: String,
}

/// The reference side, read once: its data, the columns compared and the model.
struct Monitor {
    reference_path: PathBuf,
    reference: Frame,
    columns: Vec<String>,
    test: Option<Test>,
    model: Option<Monitored>,
    confirm: usize,
    drifted_in_a_row: usize,
}

pub fn monitor(args: MonitorArgs) -> ExitCode {
    let result = Monitor::open(&args).and_then(|mut m| match (&args.current, &args.follow) {
        (Some(current), None) => {
            let window = m.judge(current, 0)?;
            summarize(&window);
            write_json(&window, args.json.as_deref())?;
            args.html.as_ref().map_or(Ok(()), |p| write_html(&monitor_page::page(&window), p, "--html"))
        }
        (None, Some(dir)) => follow(&mut m, dir, &args),
        (Some(_), Some(_)) => Err(Failure::usage("--follow", "give either --current or --follow, not both")),
        (None, None) => Err(Failure::usage("--current", "name the current data, or a folder to --follow")),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit(e),
    }
}

impl Monitor {
    fn open(args: &MonitorArgs) -> Result<Self, Failure> {
        if !(0.0..1.0).contains(&args.margin) || args.margin == 0.0 {
            return Err(Failure::usage("--margin", format!("must be in (0, 1), got {}", args.margin)));
        }
        if args.confirm == 0 {
            return Err(Failure::usage("--confirm", "must be at least 1"));
        }
        let test = args.test.as_deref().map(Test::parse).transpose()?;
        let reference = Frame::read_csv(&args.reference, "--reference")?;
        let model = match &args.artifact {
            Some(a) => Some(Monitored::open(a, &reference, args)?),
            None => None,
        };
        let label = model.as_ref().and_then(Monitored::label).or(args.label_column.as_deref());
        let columns: Vec<String> = if args.columns.is_empty() {
            reference.names.iter().filter(|n| Some(n.as_str()) != label && !args.ignore.contains(n)).cloned().collect()
        } else {
            for c in &args.columns {
                reference.column(c, "--columns")?;
            }
            args.columns.clone()
        };
        Ok(Monitor {
            reference_path: args.reference.clone(),
            reference,
            columns,
            test,
            model,
            confirm: args.confirm,
            drifted_in_a_row: 0,
        })
    }

    /// The report on one current data file, `window` its number.
    fn judge(&mut self, path: &Path, window: usize) -> Result<Window, Failure> {
        let current = Frame::read_csv(path, "--current")?;
        let data = dataset_drift(&self.reference, &current, Some(&self.columns), self.test)?;
        let rows = current.rows;
        let model = match &mut self.model {
            Some(m) => Some(m.judge(current)?),
            None => None,
        };
        let mut reasons = Vec::new();
        if data.drifted {
            reasons.push("data");
        }
        if let Some(m) = &model {
            reasons.extend(m.reasons());
        }
        let drifted = !reasons.is_empty();
        self.drifted_in_a_row = if drifted { self.drifted_in_a_row + 1 } else { 0 };
        let confirmed = self.drifted_in_a_row >= self.confirm;
        if confirmed {
            self.drifted_in_a_row = 0;
        }
        Ok(Window {
            reference: self.reference_path.display().to_string(),
            current: path.display().to_string(),
            window,
            rows,
            data,
            model,
            reasons,
            drifted,
            confirmed,
        })
    }
}

/// Judges each window that lands in `dir`, one JSON line each, until `--windows` or
/// `--idle-timeout` says stop (or the process is stopped).
fn follow(m: &mut Monitor, dir: &Path, args: &MonitorArgs) -> Result<(), Failure> {
    if args.windows == Some(0) {
        return Err(Failure::usage("--windows", "must be at least 1"));
    }
    let idle = match args.idle_timeout {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            return Err(Failure::usage("--idle-timeout", format!("must be a positive number of seconds, got {s}")));
        }
        s => s.map(std::time::Duration::from_secs_f64),
    };
    if !(10..=60_000).contains(&args.poll_ms) {
        return Err(Failure::usage("--poll-ms", format!("must be in [10, 60000], got {}", args.poll_ms)));
    }
    let mut folder = Folder::open(dir, std::time::Duration::from_millis(args.poll_ms))?;
    let mut window = 0;
    while args.windows.is_none_or(|n| window < n) {
        let Some(path) = folder.next(idle)? else { break };
        let line = match m.judge(&path, window) {
            Ok(w) => {
                summarize(&w);
                if let Some(p) = &args.html {
                    write_html(&monitor_page::page(&w), p, "--html")?;
                }
                serde_json::to_string(&w)
            }
            Err(e) => {
                eprintln!("shoal-worker: window {window}: {e}");
                serde_json::to_string(&Unreadable { current: path.display().to_string(), window, error: e.to_string() })
            }
        };
        let line = line.map_err(|e| Failure::usage("--json", e.to_string()))?;
        emit(&line, args.json.as_deref())?;
        window += 1;
    }
    Ok(())
}

/// One JSON line: appended to `path`, or printed.
fn emit(line: &str, path: Option<&Path>) -> Result<(), Failure> {
    use std::io::Write;
    match path {
        Some(p) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .and_then(|mut f| writeln!(f, "{line}"))
            .map_err(|source| Failure::Output { field: "--json", source }),
        None => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}")
                .and_then(|()| out.flush())
                .map_err(|source| Failure::Output { field: "stdout", source })
        }
    }
}

/// A few lines on standard error: what drifted.
fn summarize(w: &Window) {
    let d = &w.data;
    eprintln!(
        "shoal-worker: window {} ({} rows): {} of {} columns drifted{}",
        w.window,
        w.rows,
        d.drifted_columns,
        d.columns.len(),
        if d.drifted { ", the data set drifted" } else { "" }
    );
    for c in d.columns.iter().filter(|c| c.drifted) {
        eprintln!("  column {} drifted: {} {:.4}", c.column, c.test.name(), c.statistic);
    }
    if let Some(m) = &w.model {
        m.summarize();
    }
    if w.confirmed {
        eprintln!("  drift confirmed ({})", w.reasons.join(", "));
    }
}
