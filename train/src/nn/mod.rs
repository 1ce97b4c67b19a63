//! Neural-network layers with explicit forward and backward passes over candle tensors. Their
//! memory and kernels come from the model's [`crate::backend::Backend`].

mod cell;
mod conv;
mod dropout;
pub mod fake_quant;
mod layer;
mod linear;
pub mod loss;
mod residual;

pub use cell::Cell;
pub use conv::{Conv2d, Pool2d};
pub use dropout::Dropout;
pub use layer::{Ctx, Deferred, Layer, Mode, Saved};
pub use linear::Linear;
pub use residual::Residual;

pub use crate::backend::Param;
