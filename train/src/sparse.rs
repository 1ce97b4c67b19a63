//! Sparse storage of mostly-zero tensors in safetensors files: a tensor `NAME` is stored as
//! `NAME.sparse_shape` (u32 dims), `NAME.sparse_bits` (one bit per element, little-endian within
//! each byte, set where the value is not zero) and `NAME.sparse_values` (the non-zero values in
//! order). At sparsity s that is `1/8 + 4 (1 − s)` bytes per element instead of 4.

use std::collections::HashMap;

use candle_core::{DType, Result, Tensor, bail};

use crate::backend::HOST;

const SHAPE: &str = ".sparse_shape";
const BITS: &str = ".sparse_bits";
const VALUES: &str = ".sparse_values";

/// The three tensors that store `t` (f32) sparsely, under `name`.
pub fn encode(name: &str, t: &Tensor) -> Result<Vec<(String, Tensor)>> {
    let dims: Vec<u32> = t.dims().iter().map(|&d| d as u32).collect();
    let values = t.flatten_all()?.to_vec1::<f32>()?;
    let mut bits = vec![0u8; values.len().div_ceil(8)];
    let mut kept = Vec::new();
    for (i, &v) in values.iter().enumerate() {
        if v != 0.0 {
            bits[i / 8] |= 1 << (i % 8);
            kept.push(v);
        }
    }
    let kept_len = kept.len();
    Ok(vec![
        (format!("{name}{SHAPE}"), Tensor::from_vec(dims.clone(), dims.len(), &HOST)?),
        (format!("{name}{BITS}"), Tensor::from_vec(bits, values.len().div_ceil(8), &HOST)?),
        (format!("{name}{VALUES}"), Tensor::from_vec(kept, kept_len, &HOST)?),
    ])
}

/// Replaces every sparsely stored tensor in `tensors` by its dense form; returns how many there were.
pub fn decode_all(tensors: &mut HashMap<String, Tensor>) -> Result<usize> {
    let names: Vec<String> = tensors.keys().filter_map(|k| k.strip_suffix(SHAPE).map(str::to_owned)).collect();
    let count = names.len();
    for name in names {
        let take = |tensors: &mut HashMap<String, Tensor>, suffix: &str| {
            tensors
                .remove(&format!("{name}{suffix}"))
                .ok_or_else(|| candle_core::Error::Msg(format!("sparse tensor `{name}` has no `{name}{suffix}`")))
        };
        let dims: Vec<usize> = take(tensors, SHAPE)?.to_vec1::<u32>()?.into_iter().map(|d| d as usize).collect();
        let bits = take(tensors, BITS)?.to_dtype(DType::U8)?.to_vec1::<u8>()?;
        let values = take(tensors, VALUES)?.to_vec1::<f32>()?;
        let len: usize = dims.iter().product();
        if bits.len() != len.div_ceil(8) {
            bail!("sparse tensor `{name}`: {} mask bytes for {len} elements", bits.len());
        }
        let mut dense = vec![0f32; len];
        let mut next = values.iter();
        for (i, d) in dense.iter_mut().enumerate() {
            if bits[i / 8] >> (i % 8) & 1 == 1 {
                *d = *next
                    .next()
                    .ok_or_else(|| candle_core::Error::Msg(format!("sparse tensor `{name}` has too few values")))?;
            }
        }
        if next.next().is_some() {
            bail!("sparse tensor `{name}` has more values than set bits");
        }
        tensors.insert(name, Tensor::from_vec(dense, dims, &HOST)?);
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_tensor_decodes_to_what_was_encoded() {
        let dense = Tensor::new(&[[0f32, 1.5, 0.0], [0.0, 0.0, -2.0], [3.0, 0.0, 0.0]], &HOST).expect("tensor");
        let mut stored: HashMap<String, Tensor> = encode("w", &dense).expect("encode").into_iter().collect();
        assert_eq!(stored["w.sparse_values"].to_vec1::<f32>().expect("values"), [1.5, -2.0, 3.0]);
        stored.insert("b".into(), Tensor::new(&[1f32], &HOST).expect("b"));
        decode_all(&mut stored).expect("decode");
        assert_eq!(stored.len(), 2);
        assert_eq!(stored["w"].to_vec2::<f32>().expect("w"), dense.to_vec2::<f32>().expect("dense"));

        let mut broken: HashMap<String, Tensor> = encode("w", &dense).expect("encode").into_iter().collect();
        broken.insert("w.sparse_values".into(), Tensor::new(&[1f32], &HOST).expect("v"));
        assert!(decode_all(&mut broken).is_err(), "too few values must be refused");
    }
}
