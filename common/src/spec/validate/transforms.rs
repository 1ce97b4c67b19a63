//! `dataset.transforms`: each transform read into shoal-analysis's `TransformSpec` and checked by
//! its rules, plus what can be checked before any data is read: LDA only for classification,
//! component counts against the widths the dataset fixes, and flat features only.

use shoal_analysis::AnalysisError;
use shoal_analysis::reduce::{TRANSFORMS_FIELD, TransformSpec};

use crate::proto;
use crate::spec::config::{DatasetConfig, DatasetSource, ModelConfig, ModelKind, Task};
use crate::spec::errors::FieldErrors;

const KINDS: &[&str] = &["standardize", "pca", "whiten", "lda"];

/// The transforms of a dataset whose `task` is known and whose `features` and `classes` are, when
/// the source fixes them.
pub(super) fn transforms(
    c: &mut FieldErrors,
    specs: &[proto::TransformSpec],
    task: Task,
    features: Option<usize>,
    classes: Option<usize>,
) -> Vec<TransformSpec> {
    let mut out = Vec::with_capacity(specs.len());
    let mut width = features;
    for (i, t) in specs.iter().enumerate() {
        let field = format!("{TRANSFORMS_FIELD}[{i}]");
        let Some(spec) = one(c, &field, t) else {
            width = None;
            continue;
        };
        if let Err(e) = spec.validate(&field) {
            report(c, e);
            width = None;
            continue;
        }
        if spec.needs_labels() && task == Task::Regression {
            c.fail(format!("{field}.kind"), "lda needs class labels, but the dataset's task is regression");
        }
        // An unknown width bounds nothing, but LDA's components are still bounded by the classes.
        match spec.outputs(&field, width.unwrap_or(usize::MAX), classes) {
            Ok(outputs) => width = width.and(outputs),
            Err(e) => {
                report(c, e);
                width = None;
            }
        }
        out.push(spec);
    }
    out
}

/// One transform of the list, or `None` (with the error recorded) when its kind is bad.
fn one(c: &mut FieldErrors, field: &str, t: &proto::TransformSpec) -> Option<TransformSpec> {
    let kind =
        c.choice(&format!("{field}.kind"), &t.kind, None, |k| KINDS.iter().find(|n| **n == k).copied(), KINDS)?;
    let context = format!("transform kind `{kind}`");
    // A negative count becomes 0, which the spec's own check refuses as "must be at least 1".
    let components = t.components.map(|n| usize::try_from(n).unwrap_or(0));
    let variance = t.variance;
    match kind {
        "standardize" => {
            c.unused(&format!("{field}.components"), components.is_some(), &context);
            c.unused(&format!("{field}.variance"), variance.is_some(), &context);
            Some(TransformSpec::Standardize {})
        }
        "pca" => Some(TransformSpec::Pca { components, variance }),
        "whiten" => Some(TransformSpec::Whiten { components, variance }),
        _ => {
            c.unused(&format!("{field}.variance"), variance.is_some(), &context);
            Some(TransformSpec::Lda { components })
        }
    }
}

/// Records an analysis error under the field it names.
fn report(c: &mut FieldErrors, e: AnalysisError) {
    match e {
        AnalysisError::Invalid { field, reason } => c.fail(field, reason),
        other => c.fail(TRANSFORMS_FIELD, other.to_string()),
    }
}

/// The features and classes of a source, when they are known before it is loaded.
pub(super) fn known_counts(source: &DatasetSource) -> (Option<usize>, Option<usize>) {
    match *source {
        DatasetSource::Digits => (Some(64), Some(10)),
        DatasetSource::SyntheticClassification { features, classes, .. } => (Some(features), Some(classes)),
        DatasetSource::SyntheticRegression { features, .. } => (Some(features), None),
        _ => (None, None),
    }
}

/// The width of the features after the dataset's transforms, for `features` raw ones, when the
/// transforms fix it (see [`TransformSpec::outputs`]).
pub(super) fn width(d: &DatasetConfig, features: usize) -> Option<usize> {
    let (_, classes) = known_counts(&d.source);
    d.transforms.iter().try_fold(features, |w, t| t.outputs(TRANSFORMS_FIELD, w, classes).ok().flatten())
}

/// Transforms give flat features: a model that needs images cannot read them.
pub(super) fn check_model(c: &mut FieldErrors, d: &DatasetConfig, m: &ModelConfig) {
    if d.transforms.is_empty() {
        return;
    }
    if m.kind == ModelKind::Cnn || m.input_shape.is_some() {
        c.fail(
            TRANSFORMS_FIELD,
            "the transforms give flat features, which a model with convolutions (or model.input_shape) cannot read",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{DIGITS, errors_of};
    use crate::spec::load_toml;
    use shoal_analysis::reduce::TransformSpec;

    fn with(transforms: &str) -> String {
        DIGITS.replace("kind = \"digits\"", &format!("kind = \"digits\"\ntransforms = {transforms}"))
    }

    #[test]
    fn transforms_are_read_in_order() {
        let (spec, cfg) =
            load_toml(&with(r#"[{ kind = "standardize" }, { kind = "pca", components = 16 }, { kind = "lda" }]"#))
                .expect("valid");
        assert_eq!(
            cfg.dataset.transforms,
            [
                TransformSpec::Standardize {},
                TransformSpec::Pca { components: Some(16), variance: None },
                TransformSpec::Lda { components: None },
            ]
        );
        // The job file saved with a checkpoint carries them back.
        let (_, again) = load_toml(&crate::spec::to_toml(&spec)).expect("round trip");
        assert_eq!(again.dataset.transforms, cfg.dataset.transforms);
        let (_, none) = load_toml(DIGITS).expect("valid");
        assert!(none.dataset.transforms.is_empty());
        let (_, share) = load_toml(&with(r#"[{ kind = "whiten", variance = 0.9 }]"#)).expect("valid");
        assert_eq!(share.dataset.transforms, [TransformSpec::Whiten { components: None, variance: Some(0.9) }]);
    }

    #[test]
    fn bad_transforms_name_their_field() {
        let cases = [
            (
                r#"[{ kind = "standardize" }, { kind = "pca", components = 0 }]"#,
                "dataset.transforms[1].components: must be at least 1",
            ),
            (r#"[{ kind = "pca", components = -3 }]"#, "dataset.transforms[0].components: must be at least 1"),
            (
                r#"[{ kind = "umap" }]"#,
                "dataset.transforms[0].kind: unknown value `umap` (expected one of standardize, pca, whiten, lda)",
            ),
            (r#"[{ components = 2 }]"#, "dataset.transforms[0].kind: required (one of standardize, pca, whiten, lda)"),
            (
                r#"[{ kind = "standardize", components = 2 }]"#,
                "dataset.transforms[0].components: does not apply to transform kind `standardize`",
            ),
            (
                r#"[{ kind = "lda", variance = 0.5 }]"#,
                "dataset.transforms[0].variance: does not apply to transform kind `lda`",
            ),
            (
                r#"[{ kind = "pca", variance = 1.5 }]"#,
                "dataset.transforms[0].variance: must be a share in (0, 1], got 1.5",
            ),
            (
                r#"[{ kind = "pca", components = 2, variance = 0.5 }]"#,
                "dataset.transforms[0]: give `components` or `variance`, not both",
            ),
            // Digits have 64 features and 10 classes.
            (
                r#"[{ kind = "pca", components = 65 }]"#,
                "dataset.transforms[0].components: asks for 65 components of 64 input columns",
            ),
            (
                r#"[{ kind = "pca", components = 8 }, { kind = "whiten", components = 9 }]"#,
                "dataset.transforms[1].components: asks for 9 components of 8 input columns",
            ),
            (
                r#"[{ kind = "lda", components = 10 }]"#,
                "dataset.transforms[0].components: lda gives at most 9 components (classes − 1 = 9, inputs = 64), 10 asked",
            ),
        ];
        for (transforms, want) in cases {
            assert_eq!(errors_of(&with(transforms)), [want], "{transforms}");
        }
        // An unknown key is a parse error, not a silent default.
        let err = load_toml(&with(r#"[{ kind = "pca", component = 3 }]"#)).expect_err("unknown key");
        assert!(err.to_string().contains("unknown field `component`"), "{err}");
    }

    #[test]
    fn lda_needs_classes_and_transforms_need_a_flat_model() {
        let regression = r#"
            name = "r"
            [model]
            kind = "mlp"
            layers = [{ width = 8 }]
            [dataset]
            kind = "synthetic_regression"
            samples = 100
            features = 6
            transforms = [{ kind = "lda" }]
            [optimizer]
            kind = "sgd"
            lr = 0.1
            [training]
            batch_size = 10
            steps = 5
        "#;
        assert_eq!(
            errors_of(regression),
            ["dataset.transforms[0].kind: lda needs class labels, but the dataset's task is regression"]
        );
        let cnn = with(r#"[{ kind = "pca", components = 16 }]"#).replace("kind = \"mlp\"", "kind = \"cnn\"");
        let errors = errors_of(&cnn);
        assert!(
            errors.iter().any(|e| e.starts_with("dataset.transforms: the transforms give flat features")),
            "{errors:?}"
        );
    }
}
