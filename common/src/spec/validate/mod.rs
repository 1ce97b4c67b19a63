//! Validation of a wire [`JobSpec`] into a [`TrainConfig`]. Every check records an error and goes
//! on, so one pass reports every bad field with its path. One file per section of the spec.

mod command;
mod dataset;
mod distill;
mod evaluate;
mod model;
mod optimizer;
mod parallel;
mod pipeline;
mod prune;
mod quantize;
mod resources;
mod training;
mod transforms;

use std::path::PathBuf;

use super::config::{DatasetConfig, InheritConfig, TrainConfig};
use super::errors::{FieldError, FieldErrors};
use crate::proto::{self, JobSpec};

/// Validates a spec, applying defaults. Returns every problem found.
pub fn validate(spec: &JobSpec) -> Result<TrainConfig, Vec<FieldError>> {
    let mut c = FieldErrors::new();

    let name = spec.name.trim().to_owned();
    if name.is_empty() {
        c.fail("name", "must not be empty");
    } else if name.len() > 128 || name.chars().any(char::is_control) {
        c.fail("name", "must be at most 128 printable characters");
    }
    if spec.priority.abs() > 1_000_000 {
        c.fail("priority", "must be between -1000000 and 1000000");
    }

    // An evaluation job reads its model and data preparation from its artifact and trains
    // nothing: the training sections are placeholders then, and refused when given.
    let evaluate = spec.evaluate.as_ref().map(|e| {
        let config = evaluate::evaluate(&mut c, e);
        evaluate::refuse_training(&mut c, spec);
        config
    });
    let mut filled = if evaluate.is_some() { evaluate::placeholders(spec) } else { spec.clone() };
    let command = command::command(&mut c, filled.command.as_ref());
    // An external trial brings its own model and data: those sections are optional then.
    if command.is_some() {
        filled.training.get_or_insert_with(|| proto::TrainingSpec { batch_size: 1, steps: 1, ..Default::default() });
        filled.dataset.get_or_insert_with(|| proto::DatasetSpec { kind: "digits".into(), ..Default::default() });
        filled.model.get_or_insert_with(|| proto::ModelSpec { kind: "mlp".into(), ..Default::default() });
        if let Some(t) = filled.training.as_mut()
            && t.batch_size == 0
        {
            t.batch_size = 1;
        }
    }
    let spec = &filled;
    let training = training::training(&mut c, spec.training.as_ref());
    let dataset = dataset::dataset(&mut c, spec.dataset.as_ref(), training.seed);
    let model = model::model(&mut c, spec.model.as_ref(), &dataset);
    transforms::check_model(&mut c, &dataset, &model);
    let optimizer = optimizer::optimizer(&mut c, spec.optimizer.as_ref());
    let resources = resources::resources(&mut c, spec.resources.as_ref());
    let parallel = parallel::parallel(&mut c, spec, &resources, &model, &training);
    let inherit = spec.inherit.as_ref().map(|i| {
        if i.checkpoint.trim().is_empty() {
            c.fail("inherit.checkpoint", "must name the parent's checkpoint directory");
        }
        let parent = i.model.as_ref().map(|m| {
            let mut sub = FieldErrors::new();
            let parent = model::model(&mut sub, Some(m), &dataset);
            c.absorb("inherit.", sub);
            parent
        });
        InheritConfig { checkpoint: PathBuf::from(i.checkpoint.trim()), model: parent }
    });
    if !spec.trial_params.is_empty()
        && !serde_json::from_str::<serde_json::Value>(&spec.trial_params).is_ok_and(|v| v.is_object())
    {
        c.fail("trial_params", "must be a JSON object");
    }
    if command.is_some() && !dataset.transforms.is_empty() {
        c.fail("dataset.transforms", "external trials bring their own data preparation");
    }
    if command.is_some() && parallel.data * parallel.pipeline.stages > 1 {
        c.fail("command", "external trials run on one worker (parallelism must be 1)");
    }
    let distill = spec.distill.as_ref().map(|d| distill::distill(&mut c, d, &dataset, &parallel));
    let prune = spec.prune.as_ref().map(|p| prune::prune(&mut c, p, &model, &parallel));
    let qat = spec.training.as_ref().is_some_and(|t| t.qat);
    let quantize = if command.is_some() {
        None
    } else {
        quantize::quantize(&mut c, spec.quantize.as_ref(), qat, &model, &dataset, &parallel)
    };
    if command.is_some() && (distill.is_some() || prune.is_some() || spec.quantize.is_some() || qat) {
        c.fail("command", "external trials bring their own model: it cannot be distilled, pruned or quantized here");
    }

    c.into_result(TrainConfig {
        name,
        priority: spec.priority,
        model,
        dataset,
        optimizer,
        training,
        resources,
        parallel,
        inherit,
        command,
        trial_params: spec.trial_params.clone(),
        distill,
        prune,
        quantize,
        evaluate,
    })
}

pub use prune::{consumer_of, prunable_unit};

/// Classes (or regression targets) of a dataset, when they are known before it is loaded.
pub fn known_outputs(dataset: &DatasetConfig) -> Option<usize> {
    model::raw_data(dataset, None).map(|s| s.outputs).filter(|&n| n > 0)
}

/// A valid job file and a helper that collects a bad one's errors, for the tests of every section.
#[cfg(test)]
mod fixtures {
    use crate::spec::{SpecError, load_toml};

    pub const DIGITS: &str = r#"
        name = "digits"
        [model]
        kind = "mlp"
        layers = [{ width = 64 }, { width = 32, activation = "tanh" }]
        [dataset]
        kind = "digits"
        [optimizer]
        kind = "adamw"
        lr = 0.003
        [optimizer.schedule]
        kind = "cosine"
        warmup_steps = 20
        [training]
        batch_size = 32
        epochs = 5
        seed = 7
    "#;

    pub fn errors_of(text: &str) -> Vec<String> {
        match load_toml(text) {
            Err(SpecError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
            Err(other) => panic!("expected field errors, got {other}"),
            Ok(_) => panic!("expected field errors, spec was accepted"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{DIGITS, errors_of};
    use crate::spec::{
        Activation, Backend, Duration, LayerConfig, OptimizerKind, Resources, SpecError, load_toml, parse_toml,
    };

    #[test]
    fn a_good_spec_gets_its_defaults() {
        let (_, cfg) = load_toml(DIGITS).expect("valid");
        assert_eq!(cfg.model.layers.len(), 2);
        assert_eq!(cfg.model.layers[1], LayerConfig::Linear { width: 32, activation: Activation::Tanh, skip: false });
        assert_eq!(cfg.dataset.validation_split, 0.2);
        assert_eq!(cfg.dataset.seed, 7);
        assert_eq!(cfg.training.duration, Duration::Epochs(5));
        assert_eq!(cfg.training.log_every, 10);
        assert!(matches!(cfg.optimizer.kind, OptimizerKind::AdamW { beta1, .. } if beta1 == 0.9));
        assert_eq!(cfg.optimizer.weight_decay, 0.01);
        assert_eq!(cfg.resources, Resources { cpus: 1, memory_mb: 512, gpus: 0 });
        assert_eq!(cfg.parallel.data, 1);
        assert_eq!(cfg.parallel.backend, Backend::Auto);
        assert_eq!(cfg.training.accumulate_steps, 1);
        assert_eq!(cfg.training.collective_timeout, std::time::Duration::from_secs(60));
    }

    #[test]
    fn every_bad_field_is_reported_with_its_path() {
        let text = r#"
            name = ""
            [model]
            kind = "mlp"
            dropout = 1.5
            layers = [{ width = 64 }, { width = 32 }, { width = 0 }, { width = -4 }]
            [dataset]
            kind = "synthetic_classification"
            samples = -10
            features = 8
            classes = 3
            [optimizer]
            lr = -1.0
            [training]
            batch_size = 0
            epochs = 3
            [resources]
            cpus = 0
        "#;
        let errors = errors_of(text);
        for expected in [
            "name: must not be empty",
            "model.dropout: must be in [0, 1), got 1.5",
            "model.layers[2].width: must be > 0 (required)",
            "model.layers[3].width: must be > 0",
            "dataset.samples: must be > 0",
            "optimizer.lr: must be a finite number > 0, got -1",
            "training.batch_size: must be > 0 (required)",
            "resources.cpus: must be > 0 (required)",
        ] {
            assert!(errors.iter().any(|e| e == expected), "missing `{expected}` in {errors:#?}");
        }
        assert_eq!(errors.len(), 8, "{errors:#?}");
    }

    #[test]
    fn unknown_keys_and_bad_toml_fail_to_parse() {
        let err = parse_toml("name = \"x\"\n[model]\nkind = \"mlp\"\nwidht = 3\n").expect_err("unknown key");
        assert!(err.to_string().contains("unknown field `widht`"), "{err}");
        let err = parse_toml("name = \"x\n").expect_err("broken string");
        assert!(matches!(err, SpecError::Parse { .. }));
        let err = parse_toml("[training]\nbatch_size = \"big\"\n").expect_err("wrong type");
        assert!(err.to_string().contains("batch_size"), "{err}");
    }

    #[test]
    fn missing_sections_are_named() {
        let errors = errors_of("name = \"empty\"\n");
        assert!(errors.contains(&"model: required".to_owned()), "{errors:#?}");
        assert!(errors.contains(&"dataset: required".to_owned()), "{errors:#?}");
        assert!(errors.iter().any(|e| e.starts_with("training: required")), "{errors:#?}");
    }

    #[test]
    fn spec_round_trips_through_toml() {
        let (spec, _) = load_toml(DIGITS).expect("valid");
        let again = parse_toml(&crate::spec::to_toml(&spec)).expect("re-parse");
        assert_eq!(spec, again);
    }
}
