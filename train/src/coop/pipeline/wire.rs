//! What stage messages carry, packed and unpacked: targets, tensors of whole samples, f64 sums as
//! f32 pairs, and the protocol error a stage reports when a neighbour sends something unexpected.

use crate::backend::{Backend, Tensor};
use crate::collective::CollectiveError;
use crate::error::{Result, TrainError};
use crate::link::StageMsg;
use crate::nn::loss::Targets;

/// Puts `t` into `msg` for the last stage.
pub(super) fn put_targets(msg: &mut StageMsg, t: &Targets) {
    match t {
        Targets::Classes(c) => {
            msg.target_width = 0;
            msg.targets = c.iter().map(|&v| v as f32).collect();
        }
        Targets::Values { values, width } => {
            msg.target_width = *width as u32;
            msg.targets = values.clone();
        }
    }
}

/// Takes the targets out of `msg`.
pub(super) fn take_targets(msg: &mut StageMsg) -> Targets {
    let t = std::mem::take(&mut msg.targets);
    if msg.target_width == 0 {
        Targets::Classes(t.into_iter().map(|v| v as u32).collect())
    } else {
        Targets::Values { values: t, width: msg.target_width as usize }
    }
}

/// Rows `start..start + len` of `t`.
pub(super) fn slice_targets(t: &Targets, start: usize, len: usize) -> Targets {
    match t {
        Targets::Classes(c) => Targets::Classes(c[start..start + len].to_vec()),
        Targets::Values { values, width } => {
            Targets::Values { values: values[start * width..(start + len) * width].to_vec(), width: *width }
        }
    }
}

/// A neighbour sent `got` where this stage expected `what`.
pub(super) fn protocol(what: &str, got: &StageMsg) -> TrainError {
    TrainError::Collective(CollectiveError::Protocol {
        detail: format!("expected {what}, got {:?} #{}", got.kind, got.mb),
    })
}

/// Received values as a tensor of whole samples of shape `sample_dims`.
pub(super) fn to_tensor(backend: &dyn Backend, data: Vec<f32>, sample_dims: &[usize]) -> Result<Tensor> {
    let per: usize = sample_dims.iter().product::<usize>().max(1);
    if !data.len().is_multiple_of(per) {
        return Err(TrainError::Collective(CollectiveError::Protocol {
            detail: format!("{} values are not whole samples of {per}", data.len()),
        }));
    }
    let mut dims = vec![data.len() / per];
    dims.extend_from_slice(sample_dims);
    Ok(backend.from_host(data, &dims)?)
}

/// f64 values as pairs of f32 bit patterns, for messages that carry f32.
pub(super) fn pack_f64(values: &[f64]) -> Vec<f32> {
    values
        .iter()
        .flat_map(|v| {
            let bits = v.to_bits();
            [f32::from_bits(bits as u32), f32::from_bits((bits >> 32) as u32)]
        })
        .collect()
}

/// The inverse of [`pack_f64`].
pub(super) fn unpack_f64<const N: usize>(data: &[f32]) -> Result<[f64; N]> {
    if data.len() != 2 * N {
        return Err(TrainError::Collective(CollectiveError::Protocol {
            detail: format!("expected {N} sums, got {} values", data.len() / 2),
        }));
    }
    let mut out = [0f64; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = f64::from_bits(u64::from(data[2 * i].to_bits()) | (u64::from(data[2 * i + 1].to_bits()) << 32));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_survive_the_f32_wire_format() {
        let v = [1.0 / 3.0, -2.5e300, f64::MIN_POSITIVE, 0.0, 7.0, 1e-12];
        assert_eq!(unpack_f64::<6>(&pack_f64(&v)).expect("unpack"), v);
    }
}
