//! Spec errors: one [`FieldError`] per bad field, each naming its path and reason.

use std::fmt;

/// One bad field: `model.layers[2].width: must be > 0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path from the spec root, with list indices (`model.layers[2].width`).
    pub path: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { path: path.into(), reason: reason.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The TOML itself is broken, has a wrong type or an unknown key.
    #[error("{message}")]
    Parse { message: String },
    /// The spec parsed but some fields are invalid.
    #[error("{}", render(.0))]
    Invalid(Vec<FieldError>),
}

fn render(errors: &[FieldError]) -> String {
    let mut out = format!("{} invalid field{}:", errors.len(), if errors.len() == 1 { "" } else { "s" });
    for e in errors {
        out.push_str("\n  ");
        out.push_str(&e.to_string());
    }
    out
}
