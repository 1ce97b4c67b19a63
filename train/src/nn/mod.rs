//! Neural-network layers with explicit forward and backward passes over candle tensors.

mod activation;
mod cell;
mod conv;
pub mod cpu;
mod dropout;
pub mod kernels;
mod layer;
mod linear;
pub mod loss;
mod residual;

pub use cell::Cell;
pub use conv::{Conv2d, Pool2d};
pub use dropout::Dropout;
pub use layer::{Ctx, Deferred, Layer, Mode, Param, Saved};
pub use linear::Linear;
pub use residual::Residual;
