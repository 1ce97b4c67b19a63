//! Explanations of a model on prepared rows: permutation feature importance, integrated
//! gradients per sample with their summaries per feature and per slice, sensitivity curves
//! (partial dependence), and residual analysis for regression. No model lives here: the caller
//! passes closures that run it (a score on a whole matrix, outputs with their input gradients
//! through the engine's backward pass, predictions), and their errors come back as the caller's
//! own error type, which only needs to hold an [`AnalysisError`](crate::AnalysisError).
//!
//! Every explainer reads a [`Matrix`]: the rows as the model reads them (scaled and encoded),
//! with the features' names, and optionally how to show a feature's values in the data's units.
//! Costs grow with the rows, so large data is explained on a [`sample_rows`] subset.

pub mod attribution;
pub mod integrated;
pub mod matrix;
pub mod permutation;
pub mod residuals;
pub mod sensitivity;
mod stats;

pub use attribution::{FeatureAttribution, SliceAttribution, SliceAttributions, summarize, summarize_slices};
pub use integrated::{Attribution, IntegratedConfig, IntegratedGradients, integrated_gradients};
pub use matrix::{Matrix, Units, sample_rows};
pub use permutation::{Importance, PermutationImportance, permutation_importance};
pub use residuals::{FeatureResiduals, ResidualAnalysis, ResidualBucket, residuals};
pub use sensitivity::{Curve, Grid, SensitivityConfig, sensitivity};
