//! A CSV file read for a trained model: its feature columns picked by name (the training file's
//! header) or, for models trained on other sources, every numeric column but the label and the
//! ones set aside; the label column numbered as the job numbered its classes; the rest of the
//! columns kept for slicing and grouping.

use shoal_analysis::{AnalysisError, Column, Frame};
use shoal_common::spec::{ColumnRef, DatasetSource, TrainConfig};
use shoal_train::compress::Artifact;
use shoal_train::data::Preparation;

use super::Failure;

/// Rows run through the model at once.
const BATCH: usize = 4096;

/// The true outputs of the rows.
#[derive(Clone, Debug)]
pub enum Truth {
    Classes(Vec<u32>),
    Values(Vec<f64>),
}

/// A data file as a model reads it.
pub struct Table {
    pub frame: Frame,
    /// The model's feature columns, in its input order.
    pub features: Vec<String>,
    /// `rows × features`, as in the file (before the job's scaling).
    pub raw: Vec<f32>,
    pub rows: usize,
    pub truth: Option<Truth>,
}

/// The label column of the job's own tabular data, when it names one.
pub fn job_label(job: &TrainConfig) -> Option<String> {
    match &job.dataset.source {
        DatasetSource::Csv { label_column: ColumnRef::Name(n), .. } => Some(n.clone()),
        DatasetSource::Columnar { label_column, .. } => Some(label_column.clone()),
        _ => None,
    }
}

/// The text of a cell, as the training file would have it.
fn cell_text(column: &Column, row: usize) -> String {
    match column {
        Column::Numeric(v) => v[row].to_string(),
        Column::Categorical { codes, levels } => levels[codes[row] as usize].clone(),
    }
}

impl Table {
    /// The table of `frame` (read from the file `field` names) for a model prepared by `prep`;
    /// `label` is the label column, `ignore` columns that are not features (only for models
    /// without names).
    pub fn of(
        frame: Frame,
        field: &str,
        prep: &Preparation,
        label: Option<&str>,
        ignore: &[String],
    ) -> Result<Self, Failure> {
        if let Some(l) = label {
            frame.column(l, "--label-column")?;
        }
        let features: Vec<String> = match &prep.feature_names {
            Some(names) => names.clone(),
            None => frame.names.iter().filter(|n| Some(n.as_str()) != label && !ignore.contains(n)).cloned().collect(),
        };
        let mut raw = vec![0f32; frame.rows * features.len()];
        for (j, name) in features.iter().enumerate() {
            let Some(i) = frame.names.iter().position(|n| n == name) else {
                return Err(AnalysisError::column(
                    name,
                    format!("the model reads it as a feature, but {field} has no such column"),
                )
                .into());
            };
            let Column::Numeric(v) = &frame.columns[i] else {
                let cell = cell_text(&frame.columns[i], first_text(&frame.columns[i]));
                let hint = match prep.feature_names {
                    Some(_) => "",
                    None => {
                        " (the model's job names no columns, so every column but the label is a feature: set the others aside with --ignore)"
                    }
                };
                let reason = format!("is a feature, so it must hold numbers; it has `{cell}`{hint}");
                return Err(AnalysisError::column(name, reason).into());
            };
            for (r, &value) in v.iter().enumerate() {
                raw[r * features.len() + j] = value as f32;
            }
        }
        let truth = match label {
            None => None,
            Some(l) => {
                let column = frame.column(l, "--label-column")?;
                Some(if prep.regression {
                    let Column::Numeric(v) = column else {
                        return Err(AnalysisError::column(l, "is a regression target, so it must hold numbers").into());
                    };
                    Truth::Values(v.clone())
                } else {
                    let text: Vec<String> = (0..frame.rows).map(|r| cell_text(column, r)).collect();
                    Truth::Classes(prep.number_labels(&text, "--label-column")?)
                })
            }
        };
        Ok(Self { rows: frame.rows, frame, features, raw, truth })
    }

    /// `raw` rows prepared as the job prepared its training data (rows of the model's width).
    pub fn prepared(&self, prep: &Preparation, raw: &[f32]) -> Result<Vec<f32>, Failure> {
        Ok(prep.prepare(raw.to_vec(), self.features.len())?)
    }
}

/// The row of a categorical column's first non-number (for the error message).
fn first_text(column: &Column) -> usize {
    match column {
        Column::Categorical { codes, levels } => {
            codes.iter().position(|&c| levels[c as usize].parse::<f64>().is_err()).unwrap_or(0)
        }
        Column::Numeric(_) => 0,
    }
}

/// The model's outputs for `rows` prepared rows of `x`, in batches.
pub fn outputs(artifact: &Artifact, x: &[f32], rows: usize) -> Result<Vec<f32>, Failure> {
    let f = x.len() / rows.max(1);
    let mut out = Vec::with_capacity(rows * artifact.outputs);
    for start in (0..rows).step_by(BATCH) {
        let n = BATCH.min(rows - start);
        out.extend(artifact.forward(&x[start * f..(start + n) * f], n)?);
    }
    Ok(out)
}
