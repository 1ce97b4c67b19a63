//! CSV files: one label column, every other column a numeric feature. Class labels may be numbers
//! or strings; they are numbered in sorted order (numbers numerically).

use std::path::Path;

use shoal_common::spec::{ColumnRef, Task};

use super::{Dataset, TargetData, read_file};
use crate::error::{Result, TrainError};

/// The cells of a CSV file: features row-major, and the label column's raw text when one is named.
pub struct Table {
    pub x: Vec<f32>,
    pub rows: usize,
    pub features: usize,
    /// One per row; empty when no label column was named.
    pub labels: Vec<String>,
}

/// Reads a CSV file whose every column but `label` (when given) is a number.
pub fn read_table(path: &Path, field: &str, label: Option<&ColumnRef>, header: bool) -> Result<Table> {
    let raw = read_file(path, field)?;
    let bad = |reason: String| TrainError::dataset(field, format!("{}: {reason}", path.display()));
    let mut reader = ::csv::ReaderBuilder::new().has_headers(header).trim(::csv::Trim::All).from_reader(raw.as_slice());
    let names: Vec<String> = if header {
        reader.headers().map_err(|e| bad(format!("bad header: {e}")))?.iter().map(str::to_owned).collect()
    } else {
        Vec::new()
    };
    let label_index = match label {
        None => None,
        Some(ColumnRef::Index(i)) => Some(*i),
        Some(ColumnRef::Name(n)) => Some(
            names
                .iter()
                .position(|h| h == n)
                .ok_or_else(|| bad(format!("no column named `{n}` (columns: {})", names.join(", "))))?,
        ),
    };

    let mut x = Vec::new();
    let mut labels = Vec::new();
    let mut rows = 0;
    let mut width = None;
    for (line, record) in reader.records().enumerate() {
        let row = line + 1 + usize::from(header);
        let record = record.map_err(|e| bad(format!("row {row}: {e}")))?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        let cols = record.len();
        if *width.get_or_insert(cols) != cols {
            return Err(bad(format!("row {row} has {cols} columns, the first row {}", width.unwrap_or(0))));
        }
        if let Some(l) = label_index
            && l >= cols
        {
            return Err(bad(format!("label column {l} does not exist (rows have {cols} columns)")));
        }
        for (j, cell) in record.iter().enumerate() {
            if Some(j) == label_index {
                labels.push(cell.to_owned());
                continue;
            }
            let v: f32 = cell.parse().map_err(|_| {
                let col = names.get(j).map_or_else(|| j.to_string(), |n| format!("`{n}`"));
                bad(format!("row {row}, column {col}: `{cell}` is not a number"))
            })?;
            x.push(v);
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(bad("has no data rows".into()));
    }
    let features = width.unwrap_or(1) - usize::from(label_index.is_some());
    if features == 0 {
        return Err(bad("has no feature columns besides the label".into()));
    }
    Ok(Table { x, rows, features, labels })
}

/// The names of a headed CSV file's feature columns (every column but `label`), from its first row.
pub fn feature_names(path: &Path, field: &str, label: &ColumnRef) -> Result<Vec<String>> {
    let bad = |reason: String| TrainError::dataset(field, format!("{}: {reason}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let mut reader = ::csv::ReaderBuilder::new().has_headers(true).trim(::csv::Trim::All).from_reader(file);
    let names: Vec<String> =
        reader.headers().map_err(|e| bad(format!("bad header: {e}")))?.iter().map(str::to_owned).collect();
    let label_index = match label {
        ColumnRef::Index(i) => *i,
        ColumnRef::Name(n) => names.iter().position(|h| h == n).ok_or_else(|| bad(format!("no column named `{n}`")))?,
    };
    Ok(names.into_iter().enumerate().filter(|(i, _)| *i != label_index).map(|(_, n)| n).collect())
}

/// Numbers class labels by `classes` (the training file's names).
pub fn number_classes(raw: &[String], classes: &[String], bad: impl Fn(String) -> TrainError) -> Result<Vec<u32>> {
    raw.iter()
        .map(|l| {
            classes
                .iter()
                .position(|n| n == l)
                .map(|p| p as u32)
                .ok_or_else(|| bad(format!("label `{l}` does not occur in the training file")))
        })
        .collect()
}

/// Loads a CSV file. For classification, `classes` fixes the label names (from the training file
/// when loading validation data); returns the dataset and the class names it used.
pub fn load(
    path: &Path,
    field: &str,
    label: &ColumnRef,
    header: bool,
    task: Task,
    classes: Option<&[String]>,
) -> Result<(Dataset, Option<Vec<String>>)> {
    let Table { x, rows, features, labels: raw_labels } = read_table(path, field, Some(label), header)?;
    let bad = |reason: String| TrainError::dataset(field, format!("{}: {reason}", path.display()));
    let (targets, names) = targets_of(&raw_labels, task, classes, usize::from(header), bad)?;
    Ok((Dataset { x, targets, rows, features, image: None }, names))
}

/// A label column's text as targets: numbers for regression, classes numbered in sorted order
/// (numbers numerically) for classification, or by `classes` when given (the training file's,
/// for validation data). `first_row` is the row number of the first label, for messages.
pub fn targets_of(
    raw_labels: &[String],
    task: Task,
    classes: Option<&[String]>,
    first_row: usize,
    bad: impl Fn(String) -> TrainError,
) -> Result<(TargetData, Option<Vec<String>>)> {
    match task {
        Task::Regression => {
            let values = raw_labels
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.parse::<f32>().map_err(|_| bad(format!("row {}: label `{v}` is not a number", i + 1 + first_row)))
                })
                .collect::<Result<Vec<f32>>>()?;
            Ok((TargetData::Values { values, width: 1 }, None))
        }
        Task::Classification => {
            let names = match classes {
                Some(c) => c.to_vec(),
                None => {
                    let mut distinct: Vec<String> = raw_labels.to_vec();
                    distinct.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
                        (Ok(x), Ok(y)) => x.total_cmp(&y),
                        _ => a.cmp(b),
                    });
                    distinct.dedup();
                    distinct
                }
            };
            if names.len() < 2 {
                return Err(bad("classification needs at least 2 distinct labels".into()));
            }
            let labels = number_classes(raw_labels, &names, bad)?;
            let classes = names.len();
            Ok((TargetData::Classes { labels, classes }, Some(names)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_named_label_column_with_string_classes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("d.csv");
        std::fs::write(&p, "a,species,b\n1.0,cat,2\n3,dog,4\n5,cat,6\n").expect("write");
        let (d, names) = load(&p, "dataset.path", &ColumnRef::Name("species".into()), true, Task::Classification, None)
            .expect("load");
        assert_eq!(names.expect("names"), vec!["cat", "dog"]);
        assert_eq!(d.x, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(d.targets, TargetData::Classes { labels: vec![0, 1, 0], classes: 2 });
    }

    #[test]
    fn bad_cells_name_row_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("d.csv");
        std::fs::write(&p, "x,y\n1,2\nabc,3\n").expect("write");
        let err =
            load(&p, "dataset.path", &ColumnRef::Name("y".into()), true, Task::Regression, None).expect_err("bad cell");
        assert!(err.to_string().contains("row 3, column `x`: `abc` is not a number"), "{err}");
        let err = load(&p, "dataset.path", &ColumnRef::Name("z".into()), true, Task::Regression, None)
            .expect_err("no column");
        assert!(err.to_string().contains("no column named `z`"), "{err}");
    }
}
