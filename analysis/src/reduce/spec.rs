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
}
