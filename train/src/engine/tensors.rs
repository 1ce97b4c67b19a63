//! The one place where the loop moves values between host memory and tensors: validation chunks,
//! activations and gradients received from a neighbouring stage, and what is sent back. A compute
//! backend replaces these two functions.

use candle_core::{Device, Shape, Tensor};

use crate::error::Result;
use crate::nn::cpu;

/// A tensor of `shape` holding `data` (row-major).
pub fn from_host(data: Vec<f32>, shape: impl Into<Shape>) -> Result<Tensor> {
    Ok(Tensor::from_vec(data, shape, &Device::Cpu)?)
}

/// The values of `t` in host memory (row-major).
pub fn to_host(t: &Tensor) -> Result<Vec<f32>> {
    Ok(cpu::to_vec(t)?)
}
