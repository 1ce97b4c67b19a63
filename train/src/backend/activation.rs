//! Activations as plain candle ops: the device-independent path, and the reference the fused CPU
//! kernels are tested against.

use candle_core::{Result, Tensor};
use shoal_common::spec::Activation;

const LEAKY_SLOPE: f64 = 0.01;

fn sigmoid(z: &Tensor) -> Result<Tensor> {
    (z.neg()?.exp()? + 1.0)?.recip()
}

/// `y = act(z)`.
pub fn forward(act: Activation, z: &Tensor) -> Result<Tensor> {
    match act {
        Activation::Identity => Ok(z.clone()),
        Activation::Relu => z.relu(),
        Activation::LeakyRelu => z.maximum(&(z * LEAKY_SLOPE)?),
        Activation::Tanh => z.tanh(),
        Activation::Sigmoid => sigmoid(z),
        Activation::Silu => z.silu(),
        Activation::Gelu => z.gelu_erf(),
    }
}

/// `dz = dy · act'(z)`, given the pre-activation `z` and output `y`.
pub fn backward(act: Activation, z: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let derivative = match act {
        Activation::Identity => return Ok(dy.clone()),
        Activation::Relu => z.gt(0.0)?.to_dtype(z.dtype())?,
        Activation::LeakyRelu => {
            let positive = z.gt(0.0)?.to_dtype(z.dtype())?;
            ((positive * (1.0 - LEAKY_SLOPE))? + LEAKY_SLOPE)?
        }
        Activation::Tanh => (1.0 - y.sqr()?)?,
        Activation::Sigmoid => (y * (1.0 - y)?)?,
        Activation::Silu => {
            let s = sigmoid(z)?;
            (&s * ((z * (1.0 - &s)?)? + 1.0)?)?
        }
        Activation::Gelu => {
            let cdf = ((z * std::f64::consts::FRAC_1_SQRT_2)?.erf()? + 1.0)? * 0.5;
            let pdf = ((z.sqr()? * -0.5)?.exp()? * 0.398_942_280_401_432_7)?;
            (cdf? + (z * pdf)?)?
        }
    };
    dy * derivative
}
