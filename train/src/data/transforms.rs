//! The job's feature transforms (`dataset.transforms`) on loaded data: fitted on the training
//! split only (LDA on its labels), or taken from the checkpoint a run continues from, and applied
//! alike to the training and validation splits. The fitted pipeline travels with the [`Splits`]
//! to the step loop, which saves it with every checkpoint.
//!
//! [`Splits`]: super::Splits

use std::path::Path;

use shoal_analysis::reduce::Pipeline;
use shoal_common::spec::{DatasetConfig, load_toml};

use super::{Dataset, TargetData};
use crate::checkpoint;
use crate::error::{Result, TrainError};

/// Fits the job's transforms on `train`, the training split; `None` when the job has none.
pub fn fit(cfg: &DatasetConfig, train: &Dataset) -> Result<Option<Pipeline>> {
    if cfg.transforms.is_empty() {
        return Ok(None);
    }
    let (labels, classes) = match &train.targets {
        TargetData::Classes { labels, classes } => (Some(labels.as_slice()), *classes),
        TargetData::Values { .. } => (None, 0),
    };
    Pipeline::fit(&cfg.transforms, &train.x, train.rows, train.features, labels, classes)
        .map(Some)
        .map_err(|source| TrainError::Transforms { source })
}

/// Applies `pipeline` to `data` in place: its features become the pipeline's outputs, flat (an
/// image is one no longer). `field` names the data when its width is not the pipeline's inputs.
pub fn apply(pipeline: &Pipeline, data: &mut Dataset, field: &str) -> Result<()> {
    if data.features != pipeline.inputs() {
        return Err(TrainError::dataset(
            field,
            format!("has {} features, the job's transforms take {}", data.features, pipeline.inputs()),
        ));
    }
    data.x = pipeline.apply(&data.x, data.rows);
    data.features = pipeline.outputs();
    data.image = None;
    Ok(())
}

/// The transforms saved in the checkpoint `path` (a step directory, or a job's checkpoint folder
/// for its newest step) when they were fitted from the same specs as `cfg`'s: a resumed run goes
/// on with what its weights were trained on, and so does a child inheriting a parent's weights.
/// `None` when the specs differ (the child fits its own) or the job has no transforms. A
/// checkpoint whose job lists the same transforms but that holds none is refused.
pub fn saved_for(cfg: &DatasetConfig, path: &Path) -> Result<Option<Pipeline>> {
    if cfg.transforms.is_empty() {
        return Ok(None);
    }
    let dir = checkpoint::step_dir(path);
    // An unreadable job file is the checkpoint loader's to report; here it only means no match.
    let Ok(text) = std::fs::read_to_string(dir.join(checkpoint::SPEC_FILE)) else { return Ok(None) };
    let Ok((_, job)) = load_toml(&text) else { return Ok(None) };
    if job.dataset.transforms != cfg.transforms {
        return Ok(None);
    }
    match checkpoint::transforms(&dir)? {
        Some(p) => Ok(Some(p)),
        None => Err(TrainError::checkpoint(
            &dir,
            format!("its job lists dataset.transforms, but it holds no {}", checkpoint::TRANSFORMS_FILE),
        )),
    }
}

#[cfg(test)]
mod tests {
    use shoal_common::spec::TrainConfig;

    use super::*;
    use crate::data::{load, load_unscaled};

    const JOB: &str = r#"
        name = "t"
        [model]
        kind = "mlp"
        layers = [{ width = 8 }]
        [dataset]
        kind = "synthetic_classification"
        samples = 300
        features = 6
        classes = 3
        noise = 0.1
        validation_split = 0.25
        transforms = [{ kind = "standardize" }, { kind = "pca", components = 3 }]
        [optimizer]
        kind = "sgd"
        lr = 0.1
        [training]
        batch_size = 30
        steps = 5
        seed = 2
    "#;

    fn job(text: &str) -> TrainConfig {
        load_toml(text).expect("valid job").1
    }

    #[test]
    fn fitted_on_the_training_split_and_applied_to_both() {
        // Reference: `Pipeline::fit` called directly on the raw training split; applied to the
        // raw validation split it must give the loaded validation features bit for bit.
        let cfg = job(JOB).dataset;
        let splits = load(&cfg).expect("load");
        let (raw, _) = load_unscaled(&cfg).expect("raw");
        let fitted = splits.transforms.clone().expect("the job has transforms");
        let direct = Pipeline::fit(&cfg.transforms, &raw.train.x, raw.train.rows, 6, None, 0).expect("fit");
        assert_eq!(fitted, direct);
        let (val, raw_val) = (splits.validation.as_ref().expect("validation"), raw.validation.expect("validation"));
        assert_eq!((splits.train.features, val.features, val.rows), (3, 3, 75));
        assert_eq!(val.x, fitted.apply(&raw_val.x, raw_val.rows));
        assert_eq!(splits.train.x, fitted.apply(&raw.train.x, raw.train.rows));
        // Fitting on every row instead would give another pipeline: the validation rows stay out.
        let all: Vec<f32> = raw.train.x.iter().chain(&raw_val.x).copied().collect();
        assert_ne!(Pipeline::fit(&cfg.transforms, &all, 300, 6, None, 0).expect("fit all"), fitted);

        // LDA is fitted on the training labels: 3 classes give 2 discriminants.
        let lda = job(&JOB.replace(r#"{ kind = "pca", components = 3 }"#, r#"{ kind = "lda" }"#)).dataset;
        let splits = load(&lda).expect("lda");
        assert_eq!(splits.train.features, 2);
        let none = DatasetConfig { transforms: Vec::new(), ..cfg.clone() };
        assert_eq!(load(&none).expect("plain").transforms, None);
    }

    #[test]
    fn a_checkpoint_lends_its_transforms_only_for_the_same_specs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = job(JOB).dataset;
        std::fs::write(dir.path().join(checkpoint::SPEC_FILE), JOB).expect("job file");
        std::fs::write(dir.path().join(checkpoint::MODEL_FILE), b"").expect("weights");
        let err = saved_for(&cfg, dir.path()).expect_err("no transforms.json");
        assert!(err.to_string().contains("holds no transforms.json"), "{err}");

        // A pipeline fitted on other rows, saved as the checkpoint's: it is the one applied.
        let (raw, _) = load_unscaled(&cfg).expect("raw");
        let other = Pipeline::fit(&cfg.transforms, &raw.train.x[..60 * 6], 60, 6, None, 0).expect("fit");
        std::fs::write(dir.path().join(checkpoint::TRANSFORMS_FILE), serde_json::to_vec(&other).expect("json"))
            .expect("write");
        let continued = crate::data::load_continuing(&cfg, Some(dir.path())).expect("continue");
        assert_eq!(continued.transforms.as_ref(), Some(&other));
        assert_eq!(continued.train.x, other.apply(&raw.train.x, raw.train.rows));
        // Another spec list fits its own.
        let four = job(&JOB.replace("components = 3", "components = 4")).dataset;
        assert_eq!(saved_for(&four, dir.path()).expect("other specs"), None);
        assert_eq!(crate::data::load_continuing(&four, Some(dir.path())).expect("fit").train.features, 4);
    }
}
