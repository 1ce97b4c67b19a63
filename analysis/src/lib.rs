//! Model analysis and monitoring on tables of predictions and data: metrics overall and per slice
//! with bootstrap confidence intervals, fairness rates per group across thresholds, drift tests
//! between two data sets, change detectors over a stream of errors, explanations of a model
//! (feature importance, integrated gradients, sensitivity curves, residuals), self-contained
//! report pages, and feature transforms (standardize, PCA, whitening, LDA) fitted on a training
//! split. Pure computation: no files but the CSV reader, no model; the worker feeds it a model's
//! outputs, or closures that run the model.

pub mod bootstrap;
pub mod cells;
pub mod classification;
pub mod drift;
pub mod error;
pub mod evaluate;
pub mod explain;
pub mod fairness;
pub mod frame;
pub mod reduce;
pub mod regression;
pub mod report;
pub mod slice;
pub mod special;
pub mod stream;

pub use error::{AnalysisError, Result};
pub use frame::{Column, Frame};
