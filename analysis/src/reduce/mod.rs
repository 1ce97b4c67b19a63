//! Feature transforms fitted on a training split and applied unchanged afterwards
//! (standardize, PCA, whitening, linear discriminant analysis), the linear algebra they rest on,
//! and the column statistics and explained variance that `shoal analyze-data` prints.
//!
//! [`Pipeline::fit`] fits a job's [`TransformSpec`]s in order; the [`Pipeline`] serializes to
//! JSON to be saved with a checkpoint. [`eigen`] and [`linalg`] are dense and single-threaded:
//! fine for the hundreds of feature columns a tabular model has (d = 1000 costs seconds).

pub mod eigen;
mod lda;
pub mod linalg;
mod pca;
mod pipeline;
pub mod profile;
mod spec;
#[cfg(test)]
mod testing;
mod transform;

pub use eigen::Eigen;
pub use lda::LDA_RIDGE;
pub use linalg::Moments;
pub use pipeline::{Pipeline, TRANSFORMS_FIELD};
pub use profile::{
    CategoricalProfile, ColumnProfile, DataProfile, Explained, NumericProfile, ValueCount, explained_variance, profile,
};
pub use spec::TransformSpec;
pub use transform::{Fitted, Projection};
