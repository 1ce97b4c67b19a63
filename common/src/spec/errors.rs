//! Spec errors: one [`FieldError`] per bad field, each naming its path and reason.

use std::fmt;

/// One bad field: `model.layers[2].width: must be > 0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path from the spec root, with list indices (`model.layers[2].width`).
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FieldError {
    /// The error for the field at `path`.
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { path: path.into(), reason: reason.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Why a job file or spec was refused.
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

/// Largest width, channel count, batch or sample count accepted; catches typos that would
/// otherwise allocate terabytes on a worker.
pub const MAX_SIZE: i64 = 1 << 24;

/// Collects [`FieldError`]s while a spec is checked: every check records what is wrong and hands
/// back a usable value, so one pass reports every bad field. Job and search validation share it.
#[derive(Debug, Default)]
pub struct FieldErrors {
    errors: Vec<FieldError>,
}

impl FieldErrors {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the field at `path` is bad for `reason`.
    pub fn fail(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(FieldError::new(path, reason));
    }

    /// Records every error of `other` with `prefix` before its path (`inherit.` + `model.kind`).
    pub fn absorb(&mut self, prefix: &str, other: FieldErrors) {
        for e in other.errors {
            self.fail(format!("{prefix}{}", e.path), e.reason);
        }
    }

    /// Whether nothing has failed so far.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The errors recorded, in order.
    pub fn as_slice(&self) -> &[FieldError] {
        &self.errors
    }

    /// Drops consecutive repeats of the same error.
    pub fn dedup(&mut self) {
        self.errors.dedup();
    }

    /// `value` when nothing failed, every error otherwise.
    pub fn into_result<T>(self, value: T) -> Result<T, Vec<FieldError>> {
        if self.errors.is_empty() { Ok(value) } else { Err(self.errors) }
    }

    /// A required size: > 0 and at most [`MAX_SIZE`]; 1 stands in for a bad value.
    pub fn size(&mut self, path: &str, value: i64) -> usize {
        if value <= 0 {
            self.fail(path, if value == 0 { "must be > 0 (required)" } else { "must be > 0" });
            1
        } else if value > MAX_SIZE {
            self.fail(path, format!("must be at most {MAX_SIZE}"));
            1
        } else {
            value as usize
        }
    }

    /// An optional size with a default.
    pub fn size_or(&mut self, path: &str, value: Option<i64>, default: i64) -> usize {
        self.size(path, value.unwrap_or(default))
    }

    /// A count in `1..=max`, `default` when unset; the default stands in for a bad value.
    pub fn count(&mut self, path: &str, value: Option<i64>, default: i64, max: i64) -> usize {
        let v = value.unwrap_or(default);
        if v <= 0 || v > max {
            self.fail(path, format!("must be in 1..={max}, got {v}"));
            return default as usize;
        }
        v as usize
    }

    /// A value that must not be negative; 0 stands in for a bad one.
    pub fn non_negative(&mut self, path: &str, value: i64) -> u64 {
        if value < 0 {
            self.fail(path, "must be >= 0");
            0
        } else {
            value as u64
        }
    }

    /// A finite float in [lo, hi) (or [lo, hi] when `inclusive`).
    pub fn in_range(&mut self, path: &str, value: f64, lo: f64, hi: f64, inclusive: bool) -> f64 {
        let ok = value.is_finite() && value >= lo && if inclusive { value <= hi } else { value < hi };
        if !ok {
            let close = if inclusive { ']' } else { ')' };
            self.fail(path, format!("must be in [{lo}, {hi}{close}, got {value}"));
        }
        value
    }

    /// A finite float > 0.
    pub fn positive(&mut self, path: &str, value: f64) -> f64 {
        if !(value.is_finite() && value > 0.0) {
            self.fail(path, format!("must be a finite number > 0, got {value}"));
        }
        value
    }

    /// Rejects a field that has a value although it does not apply.
    pub fn unused(&mut self, path: &str, is_set: bool, context: &str) {
        if is_set {
            self.fail(path, format!("does not apply to {context}"));
        }
    }

    /// One of `names`, parsed by `parse`; an empty value takes `default`, or is an error when
    /// there is none.
    pub fn choice<T>(
        &mut self,
        path: &str,
        value: &str,
        default: Option<T>,
        parse: impl Fn(&str) -> Option<T>,
        names: &[&str],
    ) -> Option<T> {
        if value.is_empty() {
            if default.is_none() {
                self.fail(path, format!("required (one of {})", names.join(", ")));
            }
            return default;
        }
        let parsed = parse(value);
        if parsed.is_none() {
            self.fail(path, format!("unknown value `{value}` (expected one of {})", names.join(", ")));
        }
        parsed
    }
}
