//! `shoal-worker analyze-data FILE`: statistics of every column of a CSV file, and the share of
//! the variance each principal component of its numeric columns explains, to choose the size of a
//! `pca` or `whiten` step of `dataset.transforms`. Prints tables on standard output; `--json OUT`
//! also writes the report as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;
use shoal_analysis::Frame;
use shoal_analysis::reduce::{ColumnProfile, DataProfile, Explained, explained_variance, profile};

use shoal_worker::analysis::Failure;

use super::{exit, write_json};

/// The variance shares whose component counts the summary line gives.
const SHARES: [f64; 3] = [0.9, 0.95, 0.99];
/// Frequent values listed per categorical column in the table (the JSON has more).
const TOP_SHOWN: usize = 3;

/// Arguments of `analyze-data`.
#[derive(clap::Args, Debug)]
pub struct AnalyzeDataArgs {
    /// A CSV file with a header.
    pub file: PathBuf,
    /// The numeric columns whose principal components are computed, comma-separated (default:
    /// every numeric column).
    #[arg(long, value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// Components of the covariance of the raw columns, rather than of the correlation matrix
    /// (the columns standardized first, as `{ kind = "standardize" }` before `pca` does).
    #[arg(long)]
    pub no_standardize: bool,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// What `analyze-data` reports.
#[derive(Serialize)]
pub struct Report {
    pub file: String,
    pub profile: DataProfile,
    /// `None` when the file has no numeric column and none was named.
    pub explained: Option<Explained>,
}

pub fn analyze_data(args: AnalyzeDataArgs) -> ExitCode {
    match run(&args) {
        Ok(report) => {
            print!("{}", render(&report));
            match args.json.as_deref().map(|p| write_json(&report, Some(p))) {
                Some(Err(e)) => exit(e),
                _ => ExitCode::SUCCESS,
            }
        }
        Err(e) => exit(e),
    }
}

fn run(args: &AnalyzeDataArgs) -> Result<Report, Failure> {
    let frame = Frame::read_csv(&args.file, "FILE")?;
    if let Some(columns) = &args.columns
        && columns.iter().any(|c| c.trim().is_empty())
    {
        return Err(Failure::usage("--columns", "names an empty column: give names separated by commas"));
    }
    let any_numeric = frame.columns.iter().any(|c| c.is_numeric());
    let explained = match (&args.columns, any_numeric) {
        // A file of text columns only still has statistics to show.
        (None, false) => None,
        (columns, _) => Some(explained_variance(&frame, columns.as_deref(), !args.no_standardize)?),
    };
    Ok(Report { file: args.file.display().to_string(), profile: profile(&frame), explained })
}

/// The report as text tables.
fn render(report: &Report) -> String {
    let p = &report.profile;
    let mut out = format!("{}: {} rows, {} columns\n\n", report.file, p.rows, p.columns.len());
    let names: Vec<&str> = p
        .columns
        .iter()
        .map(|c| match c {
            ColumnProfile::Numeric(n) => n.column.as_str(),
            ColumnProfile::Categorical(c) => c.column.as_str(),
        })
        .collect();
    let w = names.iter().map(|n| n.chars().count()).max().unwrap_or(0).max("column".len());
    out.push_str(&format!(
        "{:<w$}  {:<11}  {:>7}  {:>7}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}  {:>8}\n",
        "column", "kind", "count", "missing", "mean", "std", "min", "p25", "median", "p75", "max", "distinct"
    ));
    for (c, name) in p.columns.iter().zip(&names) {
        match c {
            ColumnProfile::Numeric(n) => out.push_str(&format!(
                "{name:<w$}  {:<11}  {:>7}  {:>7}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}  {:>8}\n",
                "numeric",
                n.count,
                n.missing,
                number(n.mean),
                number(n.std),
                number(n.min),
                number(n.p25),
                number(n.median),
                number(n.p75),
                number(n.max),
                n.distinct
            )),
            ColumnProfile::Categorical(k) => {
                let top: Vec<String> =
                    k.top.iter().take(TOP_SHOWN).map(|v| format!("{} ({})", v.value, v.count)).collect();
                out.push_str(&format!(
                    "{name:<w$}  {:<11}  {:>7}  {:>7}  {:>82}  {:>8}  top: {}\n",
                    "categorical",
                    k.count,
                    k.missing,
                    "",
                    k.distinct,
                    top.join(", ")
                ));
            }
        }
    }
    let Some(e) = &report.explained else {
        out.push_str("\nno numeric columns: no principal components\n");
        return out;
    };
    let of = if e.standardized { "correlation matrix (standardized columns)" } else { "covariance of the raw columns" };
    out.push_str(&format!(
        "\nprincipal components of {} numeric columns, {} of {} rows ({} with a missing value skipped); {of}\n",
        e.columns.len(),
        e.rows,
        e.rows + e.skipped_rows,
        e.skipped_rows
    ));
    out.push_str(&format!("{:>9}  {:>12}  {:>9}  {:>10}\n", "component", "eigenvalue", "explained", "cumulative"));
    for (i, ((v, r), c)) in e.eigenvalues.iter().zip(&e.explained_ratio).zip(&e.cumulative_ratio).enumerate() {
        out.push_str(&format!("{:>9}  {:>12}  {:>9.4}  {:>10.4}\n", i + 1, number(Some(*v)), r, c));
    }
    let needed: Vec<String> = SHARES
        .iter()
        .map(|&s| {
            let k = e.cumulative_ratio.iter().position(|&c| c >= s - 1e-12).map_or(e.columns.len(), |i| i + 1);
            format!("{k} for {:.0}%", s * 100.0)
        })
        .collect();
    out.push_str(&format!("components needed: {}\n", needed.join(", ")));
    out
}

/// A statistic in at most 10 characters: fixed point for ordinary magnitudes, scientific
/// otherwise; blank when there is none.
fn number(v: Option<f64>) -> String {
    match v {
        None => String::new(),
        Some(0.0) => "0".into(),
        Some(x) if (1e-3..1e6).contains(&x.abs()) => format!("{x:.4}"),
        Some(x) => format!("{x:.3e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_show_every_column_and_component() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("d.csv");
        // b = 2a exactly and c constant: the correlation matrix [[1, 1, 0], [1, 1, 0], [0, 0, 0]]
        // (a constant keeps scale 1, so no variance) has eigenvalues 2, 0, 0: shares 1, 0, 0.
        std::fs::write(&file, "a,b,c,g\n1,2,5,x\n2,4,5,y\n4,8,5,x\n7,14,5,x\n").expect("write");
        let args = AnalyzeDataArgs { file: file.clone(), columns: None, no_standardize: false, json: None };
        let report = run(&args).expect("report");
        let e = report.explained.as_ref().expect("components");
        assert_eq!(e.columns, ["a", "b", "c"]);
        assert!((e.explained_ratio[0] - 1.0).abs() < 1e-12, "{:?}", e.explained_ratio);
        let text = render(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("{}: 4 rows, 4 columns", file.display()));
        assert!(lines[3].starts_with("a       numeric") && lines[3].contains("3.5000"), "{text}");
        assert!(lines[6].starts_with("g       categorical") && lines[6].ends_with("top: x (3), y (1)"), "{text}");
        assert!(text.contains("        1  ") && text.contains("components needed: 1 for 90%, 1 for 95%, 1 for 99%"));

        let named = AnalyzeDataArgs { columns: Some(vec!["a".into(), "zz".into()]), ..args };
        let Err(Failure::Analysis(err)) = run(&named) else { panic!("a missing column is an error") };
        assert!(err.to_string().contains("no column `zz`"), "{err}");
        assert_eq!(
            (number(Some(1234567.0)), number(Some(-0.5)), number(None)),
            ("1.235e6".into(), "-0.5000".into(), "".into())
        );
    }
}
