//! Data a trained model runs on (`shoal predict`, `evaluate`, `monitor`): a CSV or IDX file read
//! like the job's own training files and prepared as its training data was (the job's feature
//! scaling, fitted on its training split, then the transforms saved with the artifact, and its
//! class names), with labels when the file has them.

use std::path::{Path, PathBuf};

use shoal_analysis::reduce::Pipeline;
use shoal_common::spec::{ColumnRef, DatasetConfig, DatasetSource, Normalize, Task, TrainConfig};

use super::{Scaling, csv, idx, load_unscaled};
use crate::checkpoint;
use crate::error::{Result, TrainError};

/// A file to predict on.
#[derive(Clone, Debug)]
pub enum InputFile {
    /// Every column a feature except `label` (when given); `header` when the first row names them.
    Csv { path: PathBuf, label: Option<ColumnRef>, header: bool },
    /// An IDX images file and, optionally, its labels file.
    Idx { images: PathBuf, labels: Option<PathBuf> },
}

/// Samples ready for a model, with their labels when the file had them.
#[derive(Clone, Debug)]
pub struct Inputs {
    pub x: Vec<f32>,
    pub rows: usize,
    /// The model's input width: the transforms' outputs when the job has transforms.
    pub features: usize,
    pub image: Option<[usize; 3]>,
    /// Class indices (classification) when the file has labels.
    pub labels: Option<Vec<u32>>,
}

/// What the job did to its data before training.
#[derive(Clone, Debug, Default)]
pub struct Preparation {
    scaling: Option<Scaling>,
    /// The transforms saved with the artifact, applied after the scaling.
    transforms: Option<Pipeline>,
    /// Class names in index order, for CSV classification jobs.
    pub classes: Option<Vec<String>>,
    pub regression: bool,
    /// The training file's feature columns in order, when it is a CSV file with a header.
    pub feature_names: Option<Vec<String>>,
}

impl Preparation {
    /// The preparation of the artifact folder `path` trained by `job` (its saved job file): the
    /// job's scaling and class names, then the transforms saved beside the weights.
    pub fn of_artifact(path: &Path, job: &TrainConfig) -> Result<Self> {
        let mut prep = Self::of_job(&job.dataset)?;
        prep.transforms = checkpoint::transforms(path)?;
        match (job.dataset.transforms.is_empty(), &prep.transforms) {
            (false, None) => Err(TrainError::checkpoint(
                path,
                format!("its job lists dataset.transforms, but it holds no {}", checkpoint::TRANSFORMS_FILE),
            )),
            (true, Some(_)) => Err(TrainError::checkpoint(
                path,
                format!("holds {}, but its job lists no dataset.transforms", checkpoint::TRANSFORMS_FILE),
            )),
            _ => Ok(prep),
        }
    }

    /// The preparation of a job without transforms (those are fitted with a checkpoint, so a job
    /// that has some is prepared from its artifact: [`Preparation::of_artifact`]).
    pub fn of(cfg: &DatasetConfig) -> Result<Self> {
        if !cfg.transforms.is_empty() {
            return Err(TrainError::dataset(
                "dataset.transforms",
                "are fitted on the training split and saved with each checkpoint: prepare inputs from the artifact",
            ));
        }
        Self::of_job(cfg)
    }

    /// Reads the job's training split only when it must: for standardized features (their
    /// statistics) and for class labels read from files (their numbering).
    fn of_job(cfg: &DatasetConfig) -> Result<Self> {
        let regression = cfg.task() == Task::Regression;
        let file_classes =
            !regression && matches!(cfg.source, DatasetSource::Csv { .. } | DatasetSource::Columnar { .. });
        let feature_names = match &cfg.source {
            DatasetSource::Csv { path, label_column, header: true, .. } => {
                Some(csv::feature_names(path, "dataset.path", label_column)?)
            }
            _ => None,
        };
        if cfg.normalize != Normalize::Standard && !file_classes {
            return Ok(Self { scaling: None, transforms: None, classes: None, regression, feature_names });
        }
        let (splits, classes) = load_unscaled(cfg)?;
        let scaling = (cfg.normalize == Normalize::Standard).then(|| Scaling::fit(&splits.train));
        Ok(Self { scaling, transforms: None, classes, regression, feature_names })
    }

    /// The raw features the job reads, when known: the transforms' inputs, the scaling's, or the
    /// training file's feature columns.
    pub fn inputs(&self) -> Option<usize> {
        match (&self.transforms, &self.scaling, &self.feature_names) {
            (Some(t), _, _) => Some(t.inputs()),
            (None, Some(s), _) => Some(s.features()),
            (None, None, Some(names)) => Some(names.len()),
            (None, None, None) => None,
        }
    }

    /// The model's input width for rows of `features` raw values: the transforms' outputs, or
    /// `features` when the job has none.
    pub fn outputs(&self, features: usize) -> usize {
        self.transforms.as_ref().map_or(features, Pipeline::outputs)
    }

    /// `x`, rows of `features` raw values, prepared for the model: scaled, then transformed
    /// (rows of [`Preparation::outputs`] values).
    pub fn prepare(&self, mut x: Vec<f32>, features: usize) -> Result<Vec<f32>> {
        self.scale(&mut x, features)?;
        let Some(t) = &self.transforms else { return Ok(x) };
        if t.inputs() != features {
            return Err(TrainError::dataset(
                "--data",
                format!("has {features} features, the model's transforms take {}", t.inputs()),
            ));
        }
        let rows = x.len() / features.max(1);
        if rows * features != x.len() {
            return Err(TrainError::dataset("--data", format!("{} values are not rows of {features}", x.len())));
        }
        Ok(t.apply(&x, rows))
    }

    /// Applies the job's feature scaling to `rows` of `features` values, in place.
    pub fn scale(&self, x: &mut [f32], features: usize) -> Result<()> {
        if let Some(s) = &self.scaling {
            if s.features() != features {
                return Err(TrainError::dataset(
                    "--data",
                    format!("has {features} features, the model was trained on {}", s.features()),
                ));
            }
            s.apply(x);
        }
        Ok(())
    }

    /// Turns gradients with respect to the prepared features (row-major, the model's width) into
    /// gradients with respect to the raw ones (rows of [`Preparation::inputs`]), in place:
    /// explanations are read in the data's own columns. Back through the transforms first, then
    /// the scaling, the reverse of [`Preparation::prepare`].
    pub fn pull_back(&self, grad: &mut Vec<f32>) {
        if let Some(t) = &self.transforms {
            let rows = grad.len() / t.outputs();
            *grad = t.pull_back(grad, rows);
        }
        if let Some(s) = &self.scaling {
            s.pull_back(grad);
        }
    }

    /// Class indices of raw CSV labels: by the training file's class names, or as numbers when
    /// the job's classes have none; `field` names the option for errors.
    pub fn number_labels(&self, raw: &[String], field: &str) -> Result<Vec<u32>> {
        let bad = |reason: String| TrainError::dataset(field, reason);
        match &self.classes {
            Some(names) => csv::number_classes(raw, names, bad),
            None => raw
                .iter()
                .map(|l| l.parse::<u32>().map_err(|_| bad(format!("label `{l}` is not a class index"))))
                .collect(),
        }
    }

    /// Reads `file` and prepares its samples; the field names in errors are the command's options.
    pub fn read(&self, file: &InputFile) -> Result<Inputs> {
        let mut inputs = match file {
            InputFile::Csv { path, label, header } => {
                let table = csv::read_table(path, "--data", label.as_ref(), *header)?;
                let bad =
                    |reason: String| TrainError::dataset("--label-column", format!("{}: {reason}", path.display()));
                let labels = match label {
                    Some(_) if !self.regression => {
                        Some(self.number_labels(&table.labels, "--label-column").map_err(|e| match e {
                            TrainError::Dataset { reason, .. } => bad(reason),
                            e => e,
                        })?)
                    }
                    _ => None,
                };
                Inputs { x: table.x, rows: table.rows, features: table.features, image: None, labels }
            }
            InputFile::Idx { images, labels } => match labels {
                Some(l) => {
                    let d = idx::load(images, l, ("--data", "--labels"))?;
                    let labels = match d.targets {
                        super::TargetData::Classes { labels, .. } => Some(labels),
                        super::TargetData::Values { .. } => None,
                    };
                    Inputs { x: d.x, rows: d.rows, features: d.features, image: d.image, labels }
                }
                None => {
                    let d = idx::load_images(images, "--data")?;
                    Inputs { x: d.x, rows: d.rows, features: d.features, image: d.image, labels: None }
                }
            },
        };
        inputs.x = self.prepare(std::mem::take(&mut inputs.x), inputs.features)?;
        if self.transforms.is_some() {
            inputs.features = self.outputs(inputs.features);
            inputs.image = None;
        }
        Ok(inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv_job(dir: &std::path::Path, normalize: Normalize) -> DatasetConfig {
        let train = dir.join("train.csv");
        std::fs::write(&train, "a,b,kind\n1,10,cat\n3,30,dog\n5,50,cat\n7,70,dog\n").expect("write");
        DatasetConfig {
            source: DatasetSource::Csv {
                path: train,
                validation_path: None,
                label_column: ColumnRef::Name("kind".into()),
                header: true,
                task: Task::Classification,
            },
            validation_split: 0.0,
            seed: 1,
            normalize,
            train_fraction: 1.0,
            transforms: Vec::new(),
            loader_threads: 1,
            prefetch: 4,
        }
    }

    #[test]
    fn inputs_get_the_jobs_scaling_and_class_numbers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let prep = Preparation::of(&csv_job(dir.path(), Normalize::Standard)).expect("preparation");
        assert_eq!(prep.classes.as_deref(), Some(&["cat".to_owned(), "dog".to_owned()][..]));
        assert_eq!(prep.feature_names, Some(vec!["a".to_owned(), "b".to_owned()]));
        let file = dir.path().join("new.csv");
        std::fs::write(&file, "kind,a,b\ndog,4,40\ncat,1,10\n").expect("write");
        let read = |label: Option<ColumnRef>| prep.read(&InputFile::Csv { path: file.clone(), label, header: true });
        let inputs = read(Some(ColumnRef::Name("kind".into()))).expect("read");
        assert_eq!(inputs.labels, Some(vec![1, 0]));
        // Mean 4 and standard deviation √5 of column a in the training file.
        assert!(inputs.x[0].abs() < 1e-6, "{:?}", inputs.x);
        assert!((inputs.x[2] + 3.0 / 5f32.sqrt()).abs() < 1e-5, "{:?}", inputs.x);
        // Without a label column every column is a feature.
        std::fs::write(&file, "a,b\n4,40\n").expect("write");
        assert_eq!(read(None).expect("unlabelled").labels, None);
        std::fs::write(&file, "a,b,c\n4,40,1\n").expect("write");
        let err = read(None).expect_err("three features");
        assert!(err.to_string().contains("3 features, the model was trained on 2"), "{err}");
        std::fs::write(&file, "kind,a,b\nbird,4,40\n").expect("write");
        let err = read(Some(ColumnRef::Name("kind".into()))).expect_err("unknown class");
        assert!(err.to_string().contains("`bird` does not occur"), "{err}");
    }
}
