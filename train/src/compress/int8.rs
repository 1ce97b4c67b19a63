//! Int8 inference on the CPU: a linear layer whose weights are int8 with one symmetric scale per
//! output channel and whose input is quantized to int8 with one calibrated scale per tensor. The
//! product accumulates in int32 ([`super::igemm`]) and is rescaled once per output
//! (`acc · s_in · s_w[o] + b[o]`), so the arithmetic is int8, not dequantize-then-fp32.

use shoal_common::spec::Activation;

use super::igemm::PackedI8;
use crate::backend::kernels::{self, Dims};
use crate::error::Result;
use crate::nn::fake_quant::{quantize_into, symmetric_scale};

/// Weights of one linear layer in int8 or fp32.
#[derive(Clone, Debug)]
pub enum Weights {
    Int8 {
        /// Row-major `[outputs, inputs]`, as stored.
        q: Vec<i8>,
        /// The same weights laid out for the product.
        packed: PackedI8,
        /// Per output channel: `w ≈ q · scale`.
        scale: Vec<f32>,
        /// The input's scale: `x ≈ q · input_scale`.
        input_scale: f32,
    },
    Fp32(Vec<f32>),
}

impl Weights {
    /// Int8 weights from row-major `[outputs, inputs]` values and their per-output scales.
    pub fn int8(q: Vec<i8>, scale: Vec<f32>, input_scale: f32, inputs: usize) -> Self {
        let packed = PackedI8::pack(&q, scale.len(), inputs);
        Weights::Int8 { q, packed, scale, input_scale }
    }

    pub fn is_int8(&self) -> bool {
        matches!(self, Weights::Int8 { .. })
    }
}

/// A linear layer of an inference model.
#[derive(Clone, Debug)]
pub struct QLinear {
    pub name: String,
    pub inputs: usize,
    pub outputs: usize,
    pub weights: Weights,
    pub bias: Vec<f32>,
    pub activation: Activation,
}

/// Per-channel symmetric int8 weights of a row-major `[outputs, inputs]` matrix.
pub fn quantize_weights(w: &[f32], inputs: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = vec![0i8; w.len()];
    let mut scales = Vec::with_capacity(w.len() / inputs.max(1));
    for (row, out) in w.chunks_exact(inputs).zip(q.chunks_exact_mut(inputs)) {
        let scale = symmetric_scale(row);
        quantize_into(row, scale, out);
        scales.push(scale);
    }
    (q, scales)
}

impl QLinear {
    /// `y = act(x Wᵀ + b)` for `rows` rows of `x`, on one thread.
    pub fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let mut y = vec![0f32; rows * self.outputs];
        match &self.weights {
            Weights::Int8 { packed, scale, input_scale, .. } => {
                let mut xu = Vec::new();
                packed.quantize_input(x, rows, *input_scale, &mut xu);
                let mut acc = vec![0i32; rows * self.outputs];
                packed.product(&xu, rows, &mut acc);
                let rescale: Vec<f32> = scale.iter().map(|s| s * input_scale).collect();
                for (yr, ar) in y.chunks_exact_mut(self.outputs).zip(acc.chunks_exact(self.outputs)) {
                    for o in 0..self.outputs {
                        yr[o] = ar[o] as f32 * rescale[o] + self.bias[o];
                    }
                }
            }
            Weights::Fp32(w) => {
                let d = Dims { rows, inputs: self.inputs, outputs: self.outputs };
                kernels::linear_forward(x, w, &self.bias, &mut y, d, 1)?;
            }
        }
        kernels::activate(self.activation, &mut y);
        Ok(y)
    }

    /// Bytes of the layer's parameters as stored.
    pub fn stored_bytes(&self) -> usize {
        let weights = match &self.weights {
            Weights::Int8 { q, scale, .. } => q.len() + 4 * scale.len() + 4,
            Weights::Fp32(w) => 4 * w.len(),
        };
        weights + 4 * self.bias.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn the_int8_layer_tracks_fp32() {
        let mut rng = Rng::new(3);
        let (rows, inputs, outputs) = (5, 37, 11);
        let wf: Vec<f32> = (0..outputs * inputs).map(|_| rng.normal() as f32 * 0.2).collect();
        let xf: Vec<f32> = (0..rows * inputs).map(|_| rng.normal() as f32).collect();
        let bias = vec![0.1f32; outputs];
        let (q, scale) = quantize_weights(&wf, inputs);
        let max = xf.iter().fold(0f32, |m, v| m.max(v.abs()));
        let layer = |weights| QLinear {
            name: "l".into(),
            inputs,
            outputs,
            weights,
            bias: bias.clone(),
            activation: Activation::Identity,
        };
        let exact = layer(Weights::Fp32(wf.clone())).forward(&xf, rows).expect("fp32");
        let int8 = layer(Weights::int8(q, scale, max / 127.0, inputs)).forward(&xf, rows).expect("int8");
        let worst = exact.iter().zip(&int8).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 0.05, "int8 differs from fp32 by up to {worst}");
    }

    /// Quantization-aware training rounds weights to exactly the values the export stores.
    #[test]
    fn fake_quantized_weights_are_the_exported_ones() {
        use crate::nn::fake_quant::grid;
        let b = crate::backend::cpu();
        let w: Vec<f32> = (0..24).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.013 + i as f32 * 1e-3).collect();
        let faked = b.to_host(&grid(b.as_ref(), &b.from_host(w.clone(), &[4, 6]).expect("t"), 6).expect("grid"));
        let (q, scales) = quantize_weights(&w, 6);
        for (i, (&f, &qi)) in faked.expect("host").iter().zip(&q).enumerate() {
            assert_eq!(f, f32::from(qi) * scales[i / 6], "value {i}");
        }
    }
}
