//! Fake quantization for quantization-aware training: values rounded to the int8 grid they will
//! have after export, kept in fp32. Weights are rounded per output channel with the scale
//! `max|row| / 127`, exactly as [`crate::compress::int8::quantize_weights`] rounds them, so the
//! exported int8 layer computes what training saw; a layer's input is rounded per tensor with the
//! batch's own range (the static scale is calibrated after training, as for post-training
//! quantization). Gradients pass straight through the rounding (the straight-through estimator):
//! no value is clipped, since every scale covers its largest value.
//!
//! The rounding runs on the host; on a GPU that is a copy each way per layer and step.

use candle_core::Result;

use crate::backend::{Backend, Tensor};
use crate::compress::int8::{quantize_into, symmetric_scale};

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
    use crate::compress::int8::quantize_weights;

    #[test]
    fn weights_land_on_the_grid_the_export_uses() {
        let b = backend::cpu();
        let w: Vec<f32> = (0..24).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.013 + i as f32 * 1e-3).collect();
        let t = b.from_host(w.clone(), &[4, 6]).expect("tensor");
        let faked = b.to_host(&grid(b.as_ref(), &t, 6).expect("grid")).expect("host");
        let (q, scales) = quantize_weights(&w, 6);
        for (i, (&f, &qi)) in faked.iter().zip(&q).enumerate() {
            assert_eq!(f, f32::from(qi) * scales[i / 6], "value {i}");
        }
        assert!(faked.iter().zip(&w).all(|(f, v)| (f - v).abs() <= scales.iter().fold(0f32, |m, s| m.max(*s)) / 2.0));
        // A second rounding changes nothing: the grid is a fixed point.
        let again = b.from_host(faked.clone(), &[4, 6]).expect("tensor");
        assert_eq!(b.to_host(&grid(b.as_ref(), &again, 6).expect("grid")).expect("host"), faked);
        // All zeros stay zeros (no division by a zero scale).
        let zeros = b.from_host(vec![0.0; 6], &[1, 6]).expect("tensor");
        assert_eq!(b.to_host(&grid(b.as_ref(), &zeros, 6).expect("grid")).expect("host"), vec![0.0; 6]);
    }
}
