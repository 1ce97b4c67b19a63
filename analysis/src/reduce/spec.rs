//! `TransformSpec`: one feature transform as written in a job file, before it is fitted, e.g.
//! `[dataset] transforms = [{ kind = "standardize" }, { kind = "pca", components = 16 }]`.

use serde::{Deserialize, Serialize};

use crate::error::{AnalysisError, Result};

/// A transform to fit on the training split. Tagged by `kind` (snake_case); unknown keys are
/// refused so that a misspelt option is not silently ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransformSpec {
    /// Each column centred by its training mean and divided by its training standard deviation.
    /// (A struct variant without fields rather than a unit one, so that a stray key such as
    /// `{ kind = "standardize", components = 4 }` is refused like any other.)
    Standardize {},
    /// Projection on the leading principal components of the training covariance: `components`
    /// of them, or as many as explain a `variance` share (0, 1] of the total, or all if neither.
    Pca {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        components: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        variance: Option<f64>,
    },
    /// PCA with each kept component scaled to unit variance on the training data.
    Whiten {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        components: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        variance: Option<f64>,
    },
    /// Linear discriminant analysis on the training labels: at most classes − 1 components
    /// (all of those if not given).
    Lda {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        components: Option<usize>,
    },
}

impl TransformSpec {
    /// The transform's `kind` as written in a job file.
    pub fn kind(&self) -> &'static str {
        match self {
            TransformSpec::Standardize {} => "standardize",
            TransformSpec::Pca { .. } => "pca",
            TransformSpec::Whiten { .. } => "whiten",
            TransformSpec::Lda { .. } => "lda",
        }
    }

    /// Whether fitting needs the training labels.
    pub fn needs_labels(&self) -> bool {
        matches!(self, TransformSpec::Lda { .. })
    }

    /// Checks the options that need no data; `field` names this transform in errors (e.g.
    /// `dataset.transforms[1]`, giving `dataset.transforms[1].components: must be at least 1`).
    pub fn validate(&self, field: &str) -> Result<()> {
        let (components, variance) = match *self {
            TransformSpec::Standardize {} => return Ok(()),
            TransformSpec::Pca { components, variance } | TransformSpec::Whiten { components, variance } => {
                (components, variance)
            }
            TransformSpec::Lda { components } => (components, None),
        };
        if components == Some(0) {
            return Err(AnalysisError::invalid(format!("{field}.components"), "must be at least 1"));
        }
        if let Some(v) = variance {
            if !(v > 0.0 && v <= 1.0) {
                return Err(AnalysisError::invalid(
                    format!("{field}.variance"),
                    format!("must be a share in (0, 1], got {v}"),
                ));
            }
            if components.is_some() {
                return Err(AnalysisError::invalid(field, "give `components` or `variance`, not both"));
            }
        }
        Ok(())
    }

    /// The number of columns this transform gives for `inputs` columns, when the spec alone fixes
    /// it: `None` for a `variance` share, and for LDA when the number of `classes` is not known.
    /// Asking for more components than the inputs (or, for LDA, the classes) allow is the error
    /// fitting would give, naming `field` (e.g. `dataset.transforms[1]`), so that a job file can be
    /// refused before any data is read.
    pub fn outputs(&self, field: &str, inputs: usize, classes: Option<usize>) -> Result<Option<usize>> {
        self.validate(field)?;
        match *self {
            TransformSpec::Standardize {} => Ok(Some(inputs)),
            TransformSpec::Pca { components, variance } | TransformSpec::Whiten { components, variance } => {
                match components {
                    Some(k) if k > inputs => Err(AnalysisError::invalid(
                        format!("{field}.components"),
                        format!("asks for {k} components of {inputs} input columns"),
                    )),
                    Some(k) => Ok(Some(k)),
                    None => Ok(variance.is_none().then_some(inputs)),
                }
            }
            TransformSpec::Lda { components } => {
                let Some(classes) = classes else { return Ok(None) };
                if classes < 2 {
                    return Err(AnalysisError::invalid(
                        field,
                        format!("lda needs at least 2 classes, the task has {classes}"),
                    ));
                }
                let most = (classes - 1).min(inputs);
                match components {
                    Some(k) if k > most => Err(AnalysisError::invalid(
                        format!("{field}.components"),
                        format!(
                            "lda gives at most {most} components (classes − 1 = {}, inputs = {inputs}), {k} asked",
                            classes - 1
                        ),
                    )),
                    Some(k) => Ok(Some(k)),
                    None => Ok(Some(most)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_job_file_forms_and_checks_them() {
        // Reference: the serde format documented on the enum, written out by hand.
        let specs: Vec<TransformSpec> = serde_json::from_str(
            r#"[{"kind": "standardize"}, {"kind": "pca", "components": 16}, {"kind": "pca", "variance": 0.95},
                {"kind": "whiten"}, {"kind": "lda", "components": 2}]"#,
        )
        .expect("specs");
        assert_eq!(
            specs,
            [
                TransformSpec::Standardize {},
                TransformSpec::Pca { components: Some(16), variance: None },
                TransformSpec::Pca { components: None, variance: Some(0.95) },
                TransformSpec::Whiten { components: None, variance: None },
                TransformSpec::Lda { components: Some(2) },
            ]
        );
        assert!(specs.iter().all(|s| s.validate("t").is_ok()));
        let json = serde_json::to_string(&specs[1]).expect("json");
        assert_eq!(json, r#"{"kind":"pca","components":16}"#);
        assert!(serde_json::from_str::<TransformSpec>(r#"{"kind": "pca", "component": 3}"#).is_err());
        assert!(serde_json::from_str::<TransformSpec>(r#"{"kind": "standardize", "components": 3}"#).is_err());
        assert_eq!(serde_json::to_string(&specs[0]).expect("json"), r#"{"kind":"standardize"}"#);
        assert!(serde_json::from_str::<TransformSpec>(r#"{"kind": "umap"}"#).is_err());

        let err = TransformSpec::Pca { components: Some(0), variance: None }
            .validate("dataset.transforms[1]")
            .expect_err("zero");
        assert_eq!(err.to_string(), "dataset.transforms[1].components: must be at least 1");
        let err = TransformSpec::Whiten { components: None, variance: Some(1.5) }.validate("t").expect_err("share");
        assert_eq!(err.to_string(), "t.variance: must be a share in (0, 1], got 1.5");
        let err = TransformSpec::Pca { components: Some(2), variance: Some(0.5) }.validate("t").expect_err("both");
        assert!(err.to_string().contains("not both"), "{err}");
        assert!(TransformSpec::Lda { components: Some(0) }.validate("t").is_err());
    }

    #[test]
    fn outputs_known_before_fitting_are_what_fitting_gives() {
        // Reference: `Fitted::fit` on 40 rows of 5 columns with 3 classes; where the spec fixes
        // the width, `outputs` must say the same, and where fitting refuses, so must `outputs`.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let x: Vec<f32> = (0..200).map(|_| rng.random_range(-1.0..1.0)).collect();
        let labels: Vec<u32> = (0..40).map(|r| r % 3).collect();
        let specs = [
            TransformSpec::Standardize {},
            TransformSpec::Pca { components: Some(2), variance: None },
            TransformSpec::Pca { components: None, variance: None },
            TransformSpec::Whiten { components: Some(5), variance: None },
            TransformSpec::Whiten { components: Some(6), variance: None },
            TransformSpec::Lda { components: None },
            TransformSpec::Lda { components: Some(2) },
            TransformSpec::Lda { components: Some(3) },
        ];
        for spec in &specs {
            let fitted = crate::reduce::Fitted::fit(spec, &x, 40, 5, Some(&labels), 3);
            let known = spec.outputs("transform", 5, Some(3));
            match (fitted, known) {
                (Ok(f), Ok(Some(k))) => assert_eq!(f.outputs(), k, "{spec:?}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{spec:?}"),
                (f, k) => panic!("{spec:?}: fitting gave {f:?}, outputs {k:?}"),
            }
        }
        let share = TransformSpec::Pca { components: None, variance: Some(0.9) };
        assert_eq!(share.outputs("t", 5, None).expect("share"), None);
        assert_eq!(TransformSpec::Lda { components: None }.outputs("t", 5, None).expect("no classes"), None);
        let err = TransformSpec::Lda { components: None }.outputs("t", 5, Some(1)).expect_err("one class");
        assert_eq!(err.to_string(), "t: lda needs at least 2 classes, the task has 1");
    }
}
