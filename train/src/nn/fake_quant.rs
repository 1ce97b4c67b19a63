//! Fake quantization for quantization-aware training: values rounded to the int8 grid they will
//! have after export, kept in fp32. Weights are rounded per output channel with the scale
//! `max|row| / 127` by the functions below, with which `compress::int8` exports them, so the
//! exported int8 layer computes what training saw; a layer's input is rounded per tensor with the
//! batch's own range (the static scale is calibrated after training, as for post-training
//! quantization). Gradients pass straight through the rounding (the straight-through estimator):
//! no value is clipped, since every scale covers its largest value.
//!
//! The rounding runs on the host; on a GPU that is a copy each way per layer and step.

use candle_core::Result;

use crate::backend::{Backend, Tensor};

/// Symmetric int8 quantization of `values` with `scale`.
pub fn quantize_into(values: &[f32], scale: f32, out: &mut [i8]) {
    let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    for (q, &v) in out.iter_mut().zip(values) {
        *q = (v * inv).round().clamp(-127.0, 127.0) as i8;
    }
}

/// The symmetric int8 scale of `values`: `max|v| / 127` (1 for all zeros, which stay zeros).
pub fn symmetric_scale(values: &[f32]) -> f32 {
    let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    if max > 0.0 { max / 127.0 } else { 1.0 }
}

/// `t` rounded to the int8 grid in groups of `group` consecutive values (a weight row), each with
/// its own scale.
pub fn grid(backend: &dyn Backend, t: &Tensor, group: usize) -> Result<Tensor> {
    let mut values = backend.to_host(t)?;
    let mut q = vec![0i8; group];
    for chunk in values.chunks_mut(group.max(1)) {
        let scale = symmetric_scale(chunk);
        quantize_into(chunk, scale, &mut q[..chunk.len()]);
        for (v, &qi) in chunk.iter_mut().zip(&q) {
            *v = f32::from(qi) * scale;
        }
    }
    backend.from_host(values, t.dims())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend;

    #[test]
    fn values_land_on_a_grid_of_their_own_scale() {
        let b = backend::cpu();
        let w: Vec<f32> = (0..24).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.013 + i as f32 * 1e-3).collect();
        let t = b.from_host(w.clone(), &[4, 6]).expect("tensor");
        let faked = b.to_host(&grid(b.as_ref(), &t, 6).expect("grid")).expect("host");
        for (row, (f, v)) in faked.chunks(6).zip(w.chunks(6)).enumerate() {
            let scale = symmetric_scale(v);
            for (a, x) in f.iter().zip(v) {
                assert!((a - x).abs() <= scale / 2.0 + 1e-7, "row {row}: {a} vs {x}");
                assert!(((a / scale).round() - a / scale).abs() < 1e-3, "row {row}: {a} is on the grid");
            }
        }
        // A second rounding changes nothing: the grid is a fixed point.
        let again = b.from_host(faked.clone(), &[4, 6]).expect("tensor");
        assert_eq!(b.to_host(&grid(b.as_ref(), &again, 6).expect("grid")).expect("host"), faked);
        // All zeros stay zeros (no division by a zero scale).
        let zeros = b.from_host(vec![0.0; 6], &[1, 6]).expect("tensor");
        assert_eq!(b.to_host(&grid(b.as_ref(), &zeros, 6).expect("grid")).expect("host"), vec![0.0; 6]);
    }
}
