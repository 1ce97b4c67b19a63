//! Which drift test a column gets: the tests by name, their thresholds, and Evidently's default
//! choice by column kind and reference size.
//!
//! With at most [`LARGE_REFERENCE`] = 1000 reference rows a statistical test decides (p < 0.05):
//! Kolmogorov–Smirnov for a numeric column, the Z-test for a binary one, chi-square for any other
//! categorical one. Past 1000 rows every test would flag differences too small to matter, so a
//! distance with a fixed threshold decides: normed Wasserstein for numeric columns,
//! Jensen–Shannon for categorical ones. A numeric column with at most two distinct values in the
//! reference (a flag, a constant) counts as categorical, its values as the categories; the binary
//! check counts the categories of both samples together, so the Z-test never meets a third.

use serde::{Deserialize, Serialize};

use super::sample;
use crate::error::{AnalysisError, Result};
use crate::frame::Column;

/// Reference sizes above this get a distance rather than a statistical test by default.
pub const LARGE_REFERENCE: usize = 1000;

/// A drift test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Test {
    Ks,
    ChiSquare,
    Z,
    Wasserstein,
    JensenShannon,
    Psi,
    Hellinger,
}

impl Test {
    pub const ALL: [Test; 7] =
        [Test::Ks, Test::ChiSquare, Test::Z, Test::Wasserstein, Test::JensenShannon, Test::Psi, Test::Hellinger];

    /// The test named `s` (any case): `ks`, `chi-square` (`chisquare`, `chi_square`), `z`,
    /// `wasserstein`, `jensen-shannon` (`jensen_shannon`, `js`), `psi` or `hellinger`.
    pub fn parse(s: &str) -> Result<Test> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "ks" => Test::Ks,
            "chi-square" | "chisquare" | "chi_square" => Test::ChiSquare,
            "z" => Test::Z,
            "wasserstein" => Test::Wasserstein,
            "jensen-shannon" | "jensen_shannon" | "js" => Test::JensenShannon,
            "psi" => Test::Psi,
            "hellinger" => Test::Hellinger,
            _ => {
                return Err(AnalysisError::invalid(
                    "--test",
                    format!(
                        "unknown drift test `{s}`; the tests: ks, chi-square, z, wasserstein, jensen-shannon (js), \
                         psi, hellinger"
                    ),
                ));
            }
        })
    }

    /// The name in JSON output, which [`Test::parse`] also accepts.
    pub fn name(self) -> &'static str {
        match self {
            Test::Ks => "ks",
            Test::ChiSquare => "chi_square",
            Test::Z => "z",
            Test::Wasserstein => "wasserstein",
            Test::JensenShannon => "jensen_shannon",
            Test::Psi => "psi",
            Test::Hellinger => "hellinger",
        }
    }

    /// A name for people, for reports and messages.
    pub fn label(self) -> &'static str {
        match self {
            Test::Ks => "Kolmogorov–Smirnov",
            Test::ChiSquare => "chi-square",
            Test::Z => "Z",
            Test::Wasserstein => "Wasserstein (normed)",
            Test::JensenShannon => "Jensen–Shannon",
            Test::Psi => "PSI",
            Test::Hellinger => "Hellinger",
        }
    }

    /// Whether the test gives a p-value (drift when p < threshold) rather than a distance (drift
    /// when the distance ≥ threshold).
    pub fn has_p_value(self) -> bool {
        matches!(self, Test::Ks | Test::ChiSquare | Test::Z)
    }

    /// 0.05 for the p-value tests, 0.1 for the distances.
    pub fn default_threshold(self) -> f64 {
        if self.has_p_value() { 0.05 } else { 0.1 }
    }

    /// Whether the test only takes numeric columns (Kolmogorov–Smirnov, Wasserstein).
    pub fn numeric_only(self) -> bool {
        matches!(self, Test::Ks | Test::Wasserstein)
    }

    /// The fewest reference values the test accepts: 5 for the statistical tests, whose
    /// asymptotic p-values mean little below that, 1 for the distances.
    pub fn min_reference(self) -> usize {
        if self.has_p_value() { 5 } else { 1 }
    }
}

/// Evidently's default test for a column (see the module doc); never fails, `column_drift`
/// reports any problem with the columns.
pub fn choose(reference: &Column, current: &Column) -> Test {
    let large = sample::values_in(reference) > LARGE_REFERENCE;
    if let Column::Numeric(v) = reference
        && !sample::at_most_two_distinct(v)
    {
        return if large { Test::Wasserstein } else { Test::Ks };
    }
    if large {
        Test::JensenShannon
    } else if sample::union_categories(reference, current) <= 2 {
        Test::Z
    } else {
        Test::ChiSquare
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_aliases() {
        for t in Test::ALL {
            assert_eq!(Test::parse(t.name()).expect("own name"), t);
            assert_eq!(serde_json::to_value(t).expect("json"), serde_json::json!(t.name()));
        }
        assert_eq!(Test::parse("Chi-Square").expect("alias"), Test::ChiSquare);
        assert_eq!(Test::parse("chisquare").expect("alias"), Test::ChiSquare);
        assert_eq!(Test::parse("js").expect("alias"), Test::JensenShannon);
        assert_eq!(Test::parse("jensen-shannon").expect("alias"), Test::JensenShannon);
        let err = Test::parse("t-test").expect_err("unknown").to_string();
        assert!(err.starts_with("--test: unknown drift test `t-test`; the tests: ks, chi-square"), "{err}");
        assert_eq!(Test::Ks.default_threshold(), 0.05);
        assert_eq!(Test::Psi.default_threshold(), 0.1);
    }

    #[test]
    fn chooses_as_evidently_does() {
        let num = |n: usize| Column::Numeric((0..n).map(|i| (i % 7) as f64).collect());
        let flag = |n: usize| Column::Numeric((0..n).map(|i| (i % 2) as f64).collect());
        let cat = |n: usize, k: usize| Column::categorical(&(0..n).map(|i| format!("c{}", i % k)).collect::<Vec<_>>());
        assert_eq!(choose(&num(1000), &num(10)), Test::Ks);
        assert_eq!(choose(&num(1001), &num(10)), Test::Wasserstein);
        assert_eq!(choose(&flag(1000), &flag(10)), Test::Z);
        assert_eq!(choose(&flag(1001), &flag(10)), Test::JensenShannon);
        assert_eq!(choose(&cat(50, 2), &cat(50, 2)), Test::Z);
        assert_eq!(choose(&cat(50, 3), &cat(50, 2)), Test::ChiSquare);
        // A third category only in the current data is still three categories.
        assert_eq!(choose(&cat(50, 2), &cat(50, 3)), Test::ChiSquare);
        assert_eq!(choose(&flag(50), &num(50)), Test::ChiSquare);
        assert_eq!(choose(&cat(5000, 3), &cat(50, 3)), Test::JensenShannon);
        // NaN cells are not rows with a value.
        let mut v: Vec<f64> = (0..1001).map(|i| i as f64).collect();
        v[0] = f64::NAN;
        assert_eq!(choose(&Column::Numeric(v), &num(10)), Test::Ks);
    }
}
