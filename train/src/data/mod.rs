//! Datasets held in memory: loading from every supported source, the train/validation split,
//! feature scaling and transforms, and batching with a prefetching loader thread.

mod columnar;
mod csv;
mod idx;
mod input;
mod loader;
mod scaling;
mod synthetic;
pub mod transforms;

use std::path::Path;

use shoal_analysis::reduce::Pipeline;
use shoal_common::spec::{DatasetConfig, DatasetSource, Normalize};

pub use input::{InputFile, Inputs, Preparation};
pub use loader::{Batch, BatchPlan, Loader, shard_order, steps_per_epoch};
pub use scaling::Scaling;

use crate::error::{Result, TrainError};
use crate::model::DataShape;
use crate::nn::loss::Targets;
use crate::rng::Rng;

/// Labels of every sample.
#[derive(Clone, Debug, PartialEq)]
pub enum TargetData {
    Classes { labels: Vec<u32>, classes: usize },
    Values { values: Vec<f32>, width: usize },
}

/// Samples as a row-major matrix plus their targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub x: Vec<f32>,
    pub targets: TargetData,
    pub rows: usize,
    pub features: usize,
    /// (channels, height, width) when samples are images.
    pub image: Option<[usize; 3]>,
}

impl Dataset {
    /// What a model for this data consumes and produces.
    pub fn shape(&self) -> DataShape {
        let outputs = match &self.targets {
            TargetData::Classes { classes, .. } => *classes,
            TargetData::Values { width, .. } => *width,
        };
        DataShape { features: self.features, image: self.image, outputs }
    }

    pub fn is_classification(&self) -> bool {
        matches!(self.targets, TargetData::Classes { .. })
    }

    /// Copies the given rows into a batch.
    pub fn gather(&self, rows: &[usize]) -> (Vec<f32>, Targets) {
        let f = self.features;
        let mut x = Vec::with_capacity(rows.len() * f);
        for &r in rows {
            x.extend_from_slice(&self.x[r * f..(r + 1) * f]);
        }
        let targets = match &self.targets {
            TargetData::Classes { labels, .. } => Targets::Classes(rows.iter().map(|&r| labels[r]).collect()),
            TargetData::Values { values, width } => {
                let mut v = Vec::with_capacity(rows.len() * width);
                for &r in rows {
                    v.extend_from_slice(&values[r * width..(r + 1) * width]);
                }
                Targets::Values { values: v, width: *width }
            }
        };
        (x, targets)
    }

    /// A new dataset of the given rows.
    pub fn select(&self, rows: &[usize]) -> Dataset {
        let (x, targets) = self.gather(rows);
        let targets = match (targets, &self.targets) {
            (Targets::Classes(labels), TargetData::Classes { classes, .. }) => {
                TargetData::Classes { labels, classes: *classes }
            }
            (Targets::Values { values, width }, _) => TargetData::Values { values, width },
            (Targets::Classes(_), TargetData::Values { .. }) => {
                unreachable!("gather keeps the target kind")
            }
        };
        Dataset { x, targets, rows: rows.len(), features: self.features, image: self.image }
    }
}

/// Training and validation sets.
#[derive(Clone, Debug, PartialEq)]
pub struct Splits {
    pub train: Dataset,
    /// Empty when `validation_split` is 0 and no validation file is given.
    pub validation: Option<Dataset>,
    /// The job's feature transforms as applied to both splits, when it has any: saved with every
    /// checkpoint.
    pub transforms: Option<Pipeline>,
}

/// Loads a dataset as the spec describes, splits it, scales its features and fits its transforms
/// on the training split.
pub fn load(cfg: &DatasetConfig) -> Result<Splits> {
    load_continuing(cfg, None)
}

/// [`load`] for a run that continues from the checkpoint `from` (a resumed job, a child that
/// inherits its parent's weights, an artifact quantized): the transforms saved there are applied
/// rather than fitted again when they come from the same specs (see [`transforms::saved_for`]).
pub fn load_continuing(cfg: &DatasetConfig, from: Option<&Path>) -> Result<Splits> {
    let (mut splits, _) = load_unscaled(cfg)?;
    if cfg.normalize == Normalize::Standard {
        let scaling = Scaling::fit(&splits.train);
        scaling.apply(&mut splits.train.x);
        if let Some(v) = splits.validation.as_mut() {
            scaling.apply(&mut v.x);
        }
    }
    let saved = match from {
        Some(dir) => transforms::saved_for(cfg, dir)?,
        None => None,
    };
    let pipeline = match saved {
        Some(p) => Some(p),
        None => transforms::fit(cfg, &splits.train)?,
    };
    if let Some(p) = &pipeline {
        transforms::apply(p, &mut splits.train, "dataset")?;
        if let Some(v) = splits.validation.as_mut() {
            transforms::apply(p, v, "dataset")?;
        }
    }
    splits.transforms = pipeline;
    Ok(splits)
}

/// The splits before feature scaling, and the class names of a CSV classification file.
fn load_unscaled(cfg: &DatasetConfig) -> Result<(Splits, Option<Vec<String>>)> {
    let mut class_names = None;
    let (full, explicit_validation) = match &cfg.source {
        DatasetSource::SyntheticClassification { samples, features, classes, noise } => {
            (synthetic::classification(*samples, *features, *classes, *noise, cfg.seed), None)
        }
        DatasetSource::SyntheticRegression { samples, features, targets, noise } => {
            (synthetic::regression(*samples, *features, *targets, *noise, cfg.seed), None)
        }
        DatasetSource::Digits => (digits(), None),
        DatasetSource::Idx { images, labels, validation } => {
            let train = idx::load(images, labels, ("dataset.images", "dataset.labels"))?;
            let val = match validation {
                Some((vi, vl)) => Some(idx::load(vi, vl, ("dataset.validation_images", "dataset.validation_labels"))?),
                None => None,
            };
            (train, val)
        }
        DatasetSource::Csv { path, validation_path, label_column, header, task } => {
            let train = csv::load(path, "dataset.path", label_column, *header, *task, None)?;
            let val = match validation_path {
                Some(p) => {
                    let classes = train.1.as_deref();
                    Some(csv::load(p, "dataset.validation_path", label_column, *header, *task, classes)?.0)
                }
                None => None,
            };
            class_names = train.1;
            (train.0, val)
        }
        DatasetSource::Columnar { format, path, validation_path, label_column, feature_columns, task } => {
            let columns =
                columnar::Columns { format: *format, label: label_column, features: feature_columns, task: *task };
            let train = columnar::load(path, "dataset.path", &columns, None)?;
            let val = match validation_path {
                Some(p) => Some(columnar::load(p, "dataset.validation_path", &columns, train.1.as_deref())?.0),
                None => None,
            };
            class_names = train.1;
            (train.0, val)
        }
    };
    if full.rows == 0 {
        return Err(TrainError::dataset("dataset", "has no samples"));
    }
    let (mut train, validation) = match explicit_validation {
        Some(v) => {
            if v.features != full.features {
                return Err(TrainError::dataset(
                    "dataset",
                    format!("validation samples have {} features, training samples {}", v.features, full.features),
                ));
            }
            (full, Some(v))
        }
        None => split(full, cfg.validation_split, cfg.seed),
    };
    if train.rows == 0 {
        return Err(TrainError::dataset("dataset.validation_split", "leaves no training samples"));
    }
    if cfg.train_fraction < 1.0 {
        train = subset(train, cfg.train_fraction, cfg.seed);
    }
    Ok((Splits { train, validation, transforms: None }, class_names))
}

/// Holds out `round(rows · share)` random samples (seeded) for validation.
fn split(full: Dataset, share: f64, seed: u64) -> (Dataset, Option<Dataset>) {
    let held_out = (full.rows as f64 * share).round() as usize;
    if held_out == 0 {
        return (full, None);
    }
    let mut order: Vec<usize> = (0..full.rows).collect();
    Rng::derive(seed, "split", 0).shuffle(&mut order);
    let (val, train) = order.split_at(held_out.min(full.rows));
    let mut train = train.to_vec();
    let mut val = val.to_vec();
    train.sort_unstable();
    val.sort_unstable();
    (full.select(&train), Some(full.select(&val)))
}

/// A seeded random share of the samples (at least one), in their original order.
fn subset(data: Dataset, share: f64, seed: u64) -> Dataset {
    let keep = ((data.rows as f64 * share).round() as usize).clamp(1, data.rows);
    let mut order: Vec<usize> = (0..data.rows).collect();
    Rng::derive(seed, "subset", 0).shuffle(&mut order);
    let mut kept = order[..keep].to_vec();
    kept.sort_unstable();
    data.select(&kept)
}

/// The 8x8 digits shipped with smartcore, pixels scaled from 0..16 to [0, 1].
pub fn digits() -> Dataset {
    let d = smartcore::dataset::digits::load_dataset();
    Dataset {
        x: d.data.iter().map(|v| v / 16.0).collect(),
        targets: TargetData::Classes { labels: d.target.iter().map(|&t| t as u32).collect(), classes: 10 },
        rows: d.num_samples,
        features: d.num_features,
        image: Some([1, 8, 8]),
    }
}

/// Reads a whole file, naming the spec field in the error.
fn read_file(path: &Path, field: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| TrainError::dataset(field, format!("cannot read {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_the_real_dataset() {
        let d = digits();
        assert_eq!((d.rows, d.features), (1797, 64));
        assert!(d.x.iter().all(|v| (0.0..=1.0).contains(v)));
        let TargetData::Classes { labels, .. } = &d.targets else { panic!("digits are classes") };
        for class in 0..10 {
            assert!(labels.iter().filter(|&&l| l == class).count() > 150);
        }
    }

    #[test]
    fn split_is_disjoint_seeded_and_complete() {
        let d = digits();
        let (a, va) = split(d.clone(), 0.2, 3);
        let (b, _) = split(d.clone(), 0.2, 3);
        let (c, _) = split(d, 0.2, 4);
        let va = va.expect("validation");
        assert_eq!(a.rows + va.rows, 1797);
        assert_eq!(va.rows, 359);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn train_fraction_keeps_a_seeded_share_and_the_validation_set() {
        let mut cfg = DatasetConfig {
            source: DatasetSource::Digits,
            validation_split: 0.2,
            seed: 3,
            normalize: Normalize::Auto,
            train_fraction: 1.0,
            transforms: Vec::new(),
            loader_threads: 1,
            prefetch: 4,
        };
        let full = load(&cfg).expect("load");
        cfg.train_fraction = 0.25;
        let part = load(&cfg).expect("load");
        assert_eq!(part.train.rows, (full.train.rows as f64 * 0.25).round() as usize);
        assert_eq!(part.validation, full.validation);
        assert_eq!(part, load(&cfg).expect("load"));
    }
}
