//! `shoal-worker quantize`: post-training int8 quantization of a checkpoint.

use std::path::PathBuf;
use std::process::ExitCode;

use shoal_train::compress::{self, Calibration, QuantizeOptions};

use super::{failed, usage};

/// Arguments of `quantize`.
#[derive(clap::Args, Debug)]
pub struct QuantizeArgs {
    /// The fp32 checkpoint: a step directory (with its job.toml).
    pub checkpoint: PathBuf,
    /// Where the int8 artifact goes (default: the checkpoint's path with `-int8` appended).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// How each layer's input range is found: minmax, percentile or entropy.
    #[arg(long, default_value = "minmax")]
    pub calibration: String,
    /// The percentile of `--calibration percentile`, in (0, 100].
    #[arg(long, default_value_t = Calibration::DEFAULT_PERCENTILE)]
    pub percentile: f64,
    /// Calibration batches from the training split, and their size.
    #[arg(long, default_value_t = 8)]
    pub batches: usize,
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Largest validation accuracy drop accepted (e.g. 0.01); layers return to fp32 until met.
    #[arg(long)]
    pub max_accuracy_drop: Option<f64>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn quantize(args: QuantizeArgs) -> ExitCode {
    let Some(calibration) = Calibration::parse(&args.calibration, args.percentile) else {
        return usage(format!(
            "--calibration: unknown `{}` (expected one of {})",
            args.calibration,
            Calibration::NAMES.join(", ")
        ));
    };
    if !(args.percentile > 0.0 && args.percentile <= 100.0) {
        return usage(format!("--percentile: must be in (0, 100], got {}", args.percentile));
    }
    if let Some(d) = args.max_accuracy_drop
        && !(0.0..=1.0).contains(&d)
    {
        return usage(format!("--max-accuracy-drop: must be in [0, 1], got {d}"));
    }
    let output = args.output.clone().unwrap_or_else(|| {
        let mut name = args.checkpoint.as_os_str().to_owned();
        name.push("-int8");
        PathBuf::from(name)
    });
    let opts = QuantizeOptions {
        calibration,
        batches: args.batches,
        batch: args.batch,
        max_accuracy_drop: args.max_accuracy_drop,
    };
    match compress::quantize(&args.checkpoint, &output, &opts) {
        Ok(report) => {
            if args.json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                let kept: Vec<String> = report.precision.iter().map(|(l, p)| format!("{l} {p}")).collect();
                println!(
                    "{}: accuracy {:.4} (fp32 {:.4}, drop {:.4}{}), {} -> {} bytes ({:.2}x smaller); {}",
                    report.artifact.display(),
                    report.accuracy,
                    report.fp32_accuracy,
                    report.accuracy_drop + 0.0, // no "-0.0000"
                    if report.met { "" } else { ", over the budget: the best model found was saved" },
                    report.fp32_bytes,
                    report.bytes,
                    report.fp32_bytes as f64 / report.bytes.max(1) as f64,
                    kept.join(", ")
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => failed(e),
    }
}
