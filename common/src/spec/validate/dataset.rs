//! The `dataset` section: the data source of each kind, the split, normalisation, the share of
//! the samples used and the feature transforms (checked in `transforms`).

use std::path::PathBuf;

use crate::proto;
use crate::spec::config::{ColumnRef, DatasetConfig, DatasetSource, Normalize, Task};
use crate::spec::errors::FieldErrors;

const DEFAULT_VALIDATION_SPLIT: f64 = 0.2;

pub(super) fn dataset(c: &mut FieldErrors, d: Option<&proto::DatasetSpec>, training_seed: u64) -> DatasetConfig {
    let default = proto::DatasetSpec::default();
    let d = match d {
        Some(d) => d,
        None => {
            c.fail("dataset", "required");
            &default
        }
    };
    const KINDS: &[&str] = &["synthetic_classification", "synthetic_regression", "digits", "idx", "csv"];
    let kind = c.choice("dataset.kind", &d.kind, None, |k| KINDS.iter().find(|n| **n == k).copied(), KINDS);
    let context = format!("dataset kind `{}`", kind.unwrap_or("?"));

    let validation_split = d.validation_split.unwrap_or(DEFAULT_VALIDATION_SPLIT);
    c.in_range("dataset.validation_split", validation_split, 0.0, 1.0, false);
    let seed = match d.seed {
        Some(s) => c.non_negative("dataset.seed", s),
        None => training_seed,
    };
    const NORMALIZE: &[&str] = &["auto", "none", "standard"];
    let normalize = c
        .choice(
            "dataset.normalize",
            &d.normalize,
            Some(Normalize::Auto),
            |n| match n {
                "auto" => Some(Normalize::Auto),
                "none" => Some(Normalize::None),
                "standard" => Some(Normalize::Standard),
                _ => None,
            },
            NORMALIZE,
        )
        .unwrap_or(Normalize::Auto);

    let synthetic = matches!(kind, Some("synthetic_classification" | "synthetic_regression"));
    let idx = kind == Some("idx");
    let csv = kind == Some("csv");
    if !synthetic && kind.is_some() {
        c.unused("dataset.samples", d.samples != 0, &context);
        c.unused("dataset.features", d.features != 0, &context);
        c.unused("dataset.noise", d.noise != 0.0, &context);
    }
    if kind != Some("synthetic_classification") && kind.is_some() {
        c.unused("dataset.classes", d.classes != 0, &context);
    }
    if kind != Some("synthetic_regression") && kind.is_some() {
        c.unused("dataset.targets", d.targets.is_some(), &context);
    }
    if !idx && kind.is_some() {
        c.unused("dataset.images", !d.images.is_empty(), &context);
        c.unused("dataset.labels", !d.labels.is_empty(), &context);
        c.unused("dataset.validation_images", !d.validation_images.is_empty(), &context);
        c.unused("dataset.validation_labels", !d.validation_labels.is_empty(), &context);
    }
    if !csv && kind.is_some() {
        c.unused("dataset.path", !d.path.is_empty(), &context);
        c.unused("dataset.validation_path", !d.validation_path.is_empty(), &context);
        c.unused("dataset.label_column", !d.label_column.is_empty(), &context);
        c.unused("dataset.header", d.header.is_some(), &context);
        c.unused("dataset.task", !d.task.is_empty(), &context);
    }

    let source = match kind {
        Some("synthetic_classification") => DatasetSource::SyntheticClassification {
            samples: c.size("dataset.samples", d.samples),
            features: c.size("dataset.features", d.features),
            classes: {
                let classes = c.size("dataset.classes", d.classes);
                if classes == 1 {
                    c.fail("dataset.classes", "must be >= 2");
                }
                classes
            },
            noise: c.in_range("dataset.noise", d.noise, 0.0, 1e6, true),
        },
        Some("synthetic_regression") => DatasetSource::SyntheticRegression {
            samples: c.size("dataset.samples", d.samples),
            features: c.size("dataset.features", d.features),
            targets: c.size_or("dataset.targets", d.targets, 1),
            noise: c.in_range("dataset.noise", d.noise, 0.0, 1e6, true),
        },
        Some("idx") => {
            let images = path(c, "dataset.images", &d.images, true);
            let labels = path(c, "dataset.labels", &d.labels, true);
            let validation = match (d.validation_images.is_empty(), d.validation_labels.is_empty()) {
                (true, true) => None,
                (false, false) => Some((
                    path(c, "dataset.validation_images", &d.validation_images, true),
                    path(c, "dataset.validation_labels", &d.validation_labels, true),
                )),
                (false, true) => {
                    c.fail("dataset.validation_labels", "required when validation_images is set");
                    None
                }
                (true, false) => {
                    c.fail("dataset.validation_images", "required when validation_labels is set");
                    None
                }
            };
            DatasetSource::Idx { images, labels, validation }
        }
        Some("csv") => {
            let header = d.header.unwrap_or(true);
            let label_column = if d.label_column.trim().is_empty() {
                c.fail("dataset.label_column", "required for csv (a header name or a 0-based index)");
                ColumnRef::Index(0)
            } else if let Ok(i) = d.label_column.trim().parse::<usize>() {
                ColumnRef::Index(i)
            } else if header {
                ColumnRef::Name(d.label_column.trim().to_owned())
            } else {
                c.fail("dataset.label_column", "must be a 0-based index when header = false");
                ColumnRef::Index(0)
            };
            const TASKS: &[&str] = &["classification", "regression"];
            let task = c
                .choice(
                    "dataset.task",
                    &d.task,
                    Some(Task::Classification),
                    |t| match t {
                        "classification" => Some(Task::Classification),
                        "regression" => Some(Task::Regression),
                        _ => None,
                    },
                    TASKS,
                )
                .unwrap_or(Task::Classification);
            DatasetSource::Csv {
                path: path(c, "dataset.path", &d.path, true),
                validation_path: (!d.validation_path.is_empty())
                    .then(|| path(c, "dataset.validation_path", &d.validation_path, true)),
                label_column,
                header,
                task,
            }
        }
        _ => DatasetSource::Digits,
    };
    let train_fraction = d.train_fraction.unwrap_or(1.0);
    c.in_range("dataset.train_fraction", train_fraction, 0.0, 1.0, true);
    if train_fraction <= 0.0 {
        c.fail("dataset.train_fraction", "must be > 0");
    }
    let (features, classes) = super::transforms::known_counts(&source);
    let transforms = super::transforms::transforms(c, &d.transforms, source.task(), features, classes);
    DatasetConfig { source, validation_split, seed, normalize, train_fraction, transforms }
}

fn path(c: &mut FieldErrors, field: &str, value: &str, required: bool) -> PathBuf {
    if value.trim().is_empty() {
        if required {
            c.fail(field, "required");
        }
    } else if value.contains('\0') {
        c.fail(field, "must not contain NUL bytes");
    }
    PathBuf::from(value)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{DIGITS, errors_of};

    #[test]
    fn dataset_fields_of_other_kinds_are_rejected() {
        let errors = errors_of(&DIGITS.replace("kind = \"digits\"", "kind = \"digits\"\nimages = \"a.idx\""));
        assert_eq!(errors, vec!["dataset.images: does not apply to dataset kind `digits`"]);
    }
}
