//! `shoal-worker predict`: runs any artifact (fp32, pruned, sparse, int8) on a CSV or IDX file and
//! writes one prediction per row, so a compressed model can be used where it was made.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use shoal_common::spec::ColumnRef;
use shoal_train::compress::{Artifact, argmax};
use shoal_train::data::{InputFile, Preparation};

use super::{failed, usage};

/// Rows run through the model at once.
const BATCH: usize = 256;

/// Arguments of `predict`.
#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// The artifact: a checkpoint step directory, a pruned checkpoint or an int8 artifact.
    pub artifact: PathBuf,
    /// The samples: a CSV file (`.csv`) or an IDX images file (anything else, gzip or not).
    #[arg(long)]
    pub data: PathBuf,
    /// CSV: the label column, by 0-based index or header name (names imply `--header`); the
    /// accuracy against it is printed. Without it every column is a feature.
    #[arg(long)]
    pub label_column: Option<String>,
    /// CSV: the first row names the columns.
    #[arg(long)]
    pub header: bool,
    /// IDX: the labels file of the images; the accuracy against it is printed.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Where the predictions go, as CSV (default: standard output).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

pub fn predict(args: PredictArgs) -> ExitCode {
    let is_csv = args.data.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let file = if is_csv {
        if args.labels.is_some() {
            return usage("--labels: is for IDX images; a CSV file names its label column with --label-column".into());
        }
        let label = args.label_column.as_deref().map(|c| match c.parse::<usize>() {
            Ok(i) => ColumnRef::Index(i),
            Err(_) => ColumnRef::Name(c.to_owned()),
        });
        let header = args.header || matches!(label, Some(ColumnRef::Name(_)));
        InputFile::Csv { path: args.data.clone(), label, header }
    } else {
        if args.label_column.is_some() || args.header {
            return usage("--label-column, --header: are for CSV files (give the data a .csv name)".into());
        }
        InputFile::Idx { images: args.data.clone(), labels: args.labels.clone() }
    };
    match run(&args, &file) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Train(e)) => failed(e),
        Err(Failure::Output(e)) => usage(format!("--output: {e}")),
    }
}

enum Failure {
    Train(shoal_train::TrainError),
    Output(std::io::Error),
}

impl From<shoal_train::TrainError> for Failure {
    fn from(e: shoal_train::TrainError) -> Self {
        Failure::Train(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Output(e)
    }
}

fn run(args: &PredictArgs, file: &InputFile) -> Result<(), Failure> {
    // The job file says how its data was prepared; read it before the data.
    let job = Artifact::job_of(&args.artifact)?;
    let prep = Preparation::of_artifact(&args.artifact, &job)?;
    let inputs = prep.read(file)?;
    let artifact = Artifact::open(&args.artifact, inputs.features, inputs.image)?;
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let width = artifact.outputs;
    if prep.regression {
        let names: Vec<String> = (0..width).map(|i| format!("y{i}")).collect();
        writeln!(out, "{}", names.join(","))?;
    } else {
        writeln!(out, "prediction,probability")?;
    }
    let mut correct = 0usize;
    for start in (0..inputs.rows).step_by(BATCH) {
        let rows = BATCH.min(inputs.rows - start);
        let x = &inputs.x[start * inputs.features..(start + rows) * inputs.features];
        let y = artifact.forward(x, rows)?;
        for (r, row) in y.chunks_exact(width.max(1)).enumerate() {
            if prep.regression {
                let cells: Vec<String> = row.iter().map(f32::to_string).collect();
                writeln!(out, "{}", cells.join(","))?;
                continue;
            }
            let best = argmax(row);
            let label = prep.classes.as_ref().and_then(|c| c.get(best)).cloned().unwrap_or_else(|| best.to_string());
            writeln!(out, "{label},{:.6}", softmax_at(row, best))?;
            if let Some(labels) = &inputs.labels {
                correct += usize::from(labels[start + r] as usize == best);
            }
        }
    }
    out.flush()?;
    let accuracy = match (&inputs.labels, prep.regression) {
        (Some(_), false) => format!("; accuracy {:.4} against the labels", correct as f64 / inputs.rows.max(1) as f64),
        _ => String::new(),
    };
    eprintln!(
        "shoal-worker: predicted {} rows with {} ({}){accuracy}",
        inputs.rows,
        artifact.path.display(),
        artifact.format.name()
    );
    Ok(())
}

/// The softmax probability of output `i`.
fn softmax_at(row: &[f32], i: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&v| f64::from(v - max).exp()).sum();
    f64::from(row[i] - max).exp() / sum
}
