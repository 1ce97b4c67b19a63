//! The `dataset` section: the data source of each kind, the split, normalisation, the share of
//! the samples used and the feature transforms (checked in `transforms`).

use std::path::PathBuf;

use crate::proto;
use crate::spec::config::{ColumnRef, ColumnarFormat, DatasetConfig, DatasetSource, Normalize, Task};
use crate::spec::errors::FieldErrors;

const DEFAULT_VALIDATION_SPLIT: f64 = 0.2;
const DEFAULT_PREFETCH: i64 = 4;
const MAX_PREFETCH: i64 = 1024;
const MAX_LOADER_THREADS: i64 = 64;

pub(super) fn dataset(c: &mut FieldErrors, d: Option<&proto::DatasetSpec>, training_seed: u64) -> DatasetConfig {
    let default = proto::DatasetSpec::default();
    let d = match d {
        Some(d) => d,
        None => {
            c.fail("dataset", "required");
            &default
        }
    };
    const KINDS: &[&str] =
        &["synthetic_classification", "synthetic_regression", "digits", "idx", "csv", "parquet", "arrow"];
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
    let columnar = matches!(kind, Some("parquet" | "arrow"));
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
    if !csv && !columnar && kind.is_some() {
        c.unused("dataset.path", !d.path.is_empty(), &context);
        c.unused("dataset.validation_path", !d.validation_path.is_empty(), &context);
        c.unused("dataset.label_column", !d.label_column.is_empty(), &context);
        c.unused("dataset.task", !d.task.is_empty(), &context);
    }
    if !csv && kind.is_some() {
        c.unused("dataset.header", d.header.is_some(), &context);
    }
    if !columnar && kind.is_some() {
        c.unused("dataset.feature_columns", !d.feature_columns.is_empty(), &context);
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
            DatasetSource::Csv {
                path: path(c, "dataset.path", &d.path, true),
                validation_path: validation_path(c, d),
                label_column,
                header,
                task: task(c, d),
            }
        }
        Some(k @ ("parquet" | "arrow")) => {
            let label_column = d.label_column.trim().to_owned();
            if label_column.is_empty() {
                c.fail("dataset.label_column", format!("required for {k} (a column name)"));
            }
            let mut seen = std::collections::HashSet::new();
            for (i, col) in d.feature_columns.iter().enumerate() {
                let field = format!("dataset.feature_columns[{i}]");
                if col.trim().is_empty() {
                    c.fail(&field, "must not be empty");
                } else if col.trim() == label_column {
                    c.fail(&field, format!("`{col}` is the label column"));
                } else if !seen.insert(col.trim()) {
                    c.fail(&field, format!("`{col}` is listed twice"));
                }
            }
            DatasetSource::Columnar {
                format: if k == "parquet" { ColumnarFormat::Parquet } else { ColumnarFormat::ArrowIpc },
                path: path(c, "dataset.path", &d.path, true),
                validation_path: validation_path(c, d),
                label_column,
                feature_columns: d.feature_columns.iter().map(|f| f.trim().to_owned()).collect(),
                task: task(c, d),
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
    let loader_threads = c.count("dataset.loader_threads", d.loader_threads, 1, MAX_LOADER_THREADS);
    let prefetch = c.count("dataset.prefetch", d.prefetch, DEFAULT_PREFETCH, MAX_PREFETCH);
    DatasetConfig { source, validation_split, seed, normalize, train_fraction, transforms, loader_threads, prefetch }
}

/// `dataset.task` of the tabular kinds.
fn task(c: &mut FieldErrors, d: &proto::DatasetSpec) -> Task {
    const TASKS: &[&str] = &["classification", "regression"];
    c.choice(
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
    .unwrap_or(Task::Classification)
}

fn validation_path(c: &mut FieldErrors, d: &proto::DatasetSpec) -> Option<PathBuf> {
    (!d.validation_path.is_empty()).then(|| path(c, "dataset.validation_path", &d.validation_path, true))
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
    fn columnar_data_sets_need_a_label_and_distinct_feature_columns() {
        let parquet = "kind = \"parquet\"\npath = \"data/*.parquet\"";
        let text = DIGITS.replace("kind = \"digits\"", parquet);
        assert_eq!(errors_of(&text), vec!["dataset.label_column: required for parquet (a column name)"]);
        let cols = format!("{parquet}\nlabel_column = \"y\"\nfeature_columns = [\"a\", \"y\", \"a\", \" \"]");
        assert_eq!(
            errors_of(&DIGITS.replace("kind = \"digits\"", &cols)),
            vec![
                "dataset.feature_columns[1]: `y` is the label column",
                "dataset.feature_columns[2]: `a` is listed twice",
                "dataset.feature_columns[3]: must not be empty",
            ]
        );
        let header = "kind = \"arrow\"\npath = \"d.arrow\"\nlabel_column = \"y\"\nheader = true";
        assert_eq!(
            errors_of(&DIGITS.replace("kind = \"digits\"", header)),
            vec!["dataset.header: does not apply to dataset kind `arrow`"]
        );
        let csv = "kind = \"csv\"\npath = \"d.csv\"\nlabel_column = \"y\"\nfeature_columns = [\"a\"]";
        assert_eq!(
            errors_of(&DIGITS.replace("kind = \"digits\"", csv)),
            vec!["dataset.feature_columns: does not apply to dataset kind `csv`"]
        );
    }

    #[test]
    fn loader_threads_and_prefetch_are_bounded() {
        let text = DIGITS.replace("kind = \"digits\"", "kind = \"digits\"\nloader_threads = 0\nprefetch = 5000");
        assert_eq!(
            errors_of(&text),
            vec!["dataset.loader_threads: must be in 1..=64, got 0", "dataset.prefetch: must be in 1..=1024, got 5000"]
        );
        let ok = DIGITS.replace("kind = \"digits\"", "kind = \"digits\"\nloader_threads = 4\nprefetch = 16");
        let (_, cfg) = crate::spec::load_toml(&ok).expect("valid");
        assert_eq!((cfg.dataset.loader_threads, cfg.dataset.prefetch), (4, 16));
    }

    #[test]
    fn dataset_fields_of_other_kinds_are_rejected() {
        let errors = errors_of(&DIGITS.replace("kind = \"digits\"", "kind = \"digits\"\nimages = \"a.idx\""));
        assert_eq!(errors, vec!["dataset.images: does not apply to dataset kind `digits`"]);
    }
}
