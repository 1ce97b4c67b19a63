//! Int8 inference on the CPU: a linear layer whose weights are int8 with one symmetric scale per
//! output channel and whose input is quantized to int8 with one calibrated scale per tensor. The
//! product accumulates in int32 and is rescaled once per output (`acc · s_in · s_w[o] + b[o]`),
//! so the arithmetic is int8, not dequantize-then-fp32.

use shoal_common::spec::Activation;

use crate::backend::kernels;

/// Outputs computed together, so each quantized input row is read once per group.
const GROUP: usize = 4;

/// Weights of one linear layer in int8 or fp32.
#[derive(Clone, Debug)]
pub enum Weights {
    Int8 {
        /// Row-major `[outputs, inputs]`.
        q: Vec<i8>,
        /// Per output channel: `w ≈ q · scale`.
        scale: Vec<f32>,
        /// The input's scale: `x ≈ q · input_scale`.
        input_scale: f32,
    },
    Fp32(Vec<f32>),
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

/// Symmetric int8 quantization of `values` with `scale`.
pub fn quantize_into(values: &[f32], scale: f32, out: &mut [i8]) {
    let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    for (q, &v) in out.iter_mut().zip(values) {
        *q = (v * inv).round().clamp(-127.0, 127.0) as i8;
    }
}

/// Per-channel symmetric int8 weights of a row-major `[outputs, inputs]` matrix.
pub fn quantize_weights(w: &[f32], inputs: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = vec![0i8; w.len()];
    let mut scales = Vec::with_capacity(w.len() / inputs.max(1));
    for (row, out) in w.chunks_exact(inputs).zip(q.chunks_exact_mut(inputs)) {
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        quantize_into(row, scale, out);
        scales.push(scale);
    }
    (q, scales)
}

impl QLinear {
    /// `y = act(x Wᵀ + b)` for `rows` rows of `x`.
    pub fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut y = vec![0f32; rows * self.outputs];
        match &self.weights {
            Weights::Int8 { q, scale, input_scale } => {
                let mut xq = vec![0i8; x.len()];
                quantize_into(x, *input_scale, &mut xq);
                let mut acc = vec![0i32; rows * self.outputs];
                gemm_i8(&xq, q, rows, self.inputs, self.outputs, &mut acc);
                for (yr, ar) in y.chunks_exact_mut(self.outputs).zip(acc.chunks_exact(self.outputs)) {
                    for o in 0..self.outputs {
                        yr[o] = ar[o] as f32 * (input_scale * scale[o]) + self.bias[o];
                    }
                }
            }
            Weights::Fp32(w) => {
                for (yr, xr) in y.chunks_exact_mut(self.outputs).zip(x.chunks_exact(self.inputs)) {
                    for (o, wr) in w.chunks_exact(self.inputs).enumerate() {
                        yr[o] = xr.iter().zip(wr).map(|(a, b)| a * b).sum::<f32>() + self.bias[o];
                    }
                }
            }
        }
        kernels::activate(self.activation, &mut y);
        y
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

/// `acc[r, o] = Σ_k x[r, k] · w[o, k]` in int32, with the widest vector unit the CPU has.
pub fn gemm_i8(x: &[i8], w: &[i8], rows: usize, inputs: usize, outputs: usize, acc: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { gemm_avx512(x, w, rows, inputs, outputs, acc) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { gemm_avx2(x, w, rows, inputs, outputs, acc) };
        }
    }
    gemm_body(x, w, rows, inputs, outputs, acc);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn gemm_avx512(x: &[i8], w: &[i8], rows: usize, inputs: usize, outputs: usize, acc: &mut [i32]) {
    gemm_body(x, w, rows, inputs, outputs, acc);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gemm_avx2(x: &[i8], w: &[i8], rows: usize, inputs: usize, outputs: usize, acc: &mut [i32]) {
    gemm_body(x, w, rows, inputs, outputs, acc);
}

/// The product, written so the compiler vectorizes the widening multiply-adds.
#[inline(always)]
fn gemm_body(x: &[i8], w: &[i8], rows: usize, inputs: usize, outputs: usize, acc: &mut [i32]) {
    for (xr, ar) in x.chunks_exact(inputs).zip(acc.chunks_exact_mut(outputs)).take(rows) {
        let mut o = 0;
        while o + GROUP <= outputs {
            let ws: [&[i8]; GROUP] = std::array::from_fn(|g| &w[(o + g) * inputs..(o + g + 1) * inputs]);
            let mut sums = [0i32; GROUP];
            for k in 0..inputs {
                let a = i32::from(xr[k]);
                for g in 0..GROUP {
                    sums[g] += a * i32::from(ws[g][k]);
                }
            }
            ar[o..o + GROUP].copy_from_slice(&sums);
            o += GROUP;
        }
        for (oo, a) in ar.iter_mut().enumerate().skip(o) {
            let wr = &w[oo * inputs..(oo + 1) * inputs];
            *a = xr.iter().zip(wr).map(|(&p, &q)| i32::from(p) * i32::from(q)).sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn the_int8_product_is_exact_and_the_layer_tracks_fp32() {
        let mut rng = Rng::new(3);
        let (rows, inputs, outputs) = (5, 37, 11);
        let x: Vec<i8> = (0..rows * inputs).map(|_| (rng.below(255) as i32 - 127) as i8).collect();
        let w: Vec<i8> = (0..outputs * inputs).map(|_| (rng.below(255) as i32 - 127) as i8).collect();
        let mut acc = vec![0i32; rows * outputs];
        gemm_i8(&x, &w, rows, inputs, outputs, &mut acc);
        for r in 0..rows {
            for o in 0..outputs {
                let want: i32 = (0..inputs).map(|k| i32::from(x[r * inputs + k]) * i32::from(w[o * inputs + k])).sum();
                assert_eq!(acc[r * outputs + o], want, "row {r}, output {o}");
            }
        }

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
        let exact = layer(Weights::Fp32(wf.clone())).forward(&xf, rows);
        let int8 = layer(Weights::Int8 { q, scale, input_scale: max / 127.0 }).forward(&xf, rows);
        let worst = exact.iter().zip(&int8).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 0.05, "int8 differs from fp32 by up to {worst}");
    }
}
