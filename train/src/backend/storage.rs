//! Bridges between host tensors and the slice kernels, for the CPU backend: borrow a tensor's `f32`
//! data, build a tensor from a fresh buffer, and run a closure in place on a tensor through
//! candle's in-place op interface (the only sanctioned way to write into a tensor's storage).

use std::cell::RefCell;

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, Device, InplaceOp1, InplaceOp2, InplaceOp3, Layout, Result, Shape, Storage, Tensor, bail,
};

fn slice_of<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(v) => v.as_slice(),
        other => bail!("expected f32 data, got {:?}", other.dtype()),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("expected a contiguous tensor"),
    }
}

fn slice_of_mut<'a>(storage: &'a mut CpuStorage, layout: &Layout) -> Result<&'a mut [f32]> {
    let data = match storage {
        CpuStorage::F32(v) => v.as_mut_slice(),
        other => bail!("expected f32 data, got {:?}", other.dtype()),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&mut data[start..end]),
        None => bail!("expected a contiguous tensor"),
    }
}

/// Runs `f` on the tensor's data (made contiguous first if needed).
pub(super) fn read<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(slice_of(cpu, layout)?),
        _ => bail!("expected a CPU tensor"),
    }
}

/// Runs `f` on the data of two tensors.
pub(super) fn read2<R>(a: &Tensor, b: &Tensor, f: impl FnOnce(&[f32], &[f32]) -> Result<R>) -> Result<R> {
    read(a, |a| read(b, |b| f(a, b)))
}

/// A new CPU tensor of `shape` whose data `fill` writes (the buffer starts zeroed).
pub(super) fn build(shape: impl Into<Shape>, fill: impl FnOnce(&mut [f32]) -> Result<()>) -> Result<Tensor> {
    let shape = shape.into();
    let mut data = vec![0f32; shape.elem_count()];
    fill(&mut data)?;
    Tensor::from_vec(data, shape, &Device::Cpu)
}

// candle's in-place ops take `&self`; the RefCell lets the closures own mutable state (an
// optimizer's moment buffers) all the same. Each op runs its closure exactly once.
struct Update1<F>(RefCell<F>);

impl<F: FnMut(&mut [f32]) -> Result<()>> InplaceOp1 for Update1<F> {
    fn name(&self) -> &'static str {
        "shoal-inplace1"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        (self.0.borrow_mut())(slice_of_mut(s, l)?)
    }
}

struct Update2<F>(RefCell<F>);

impl<F: FnMut(&mut [f32], &[f32]) -> Result<()>> InplaceOp2 for Update2<F> {
    fn name(&self) -> &'static str {
        "shoal-inplace2"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        (self.0.borrow_mut())(slice_of_mut(s1, l1)?, slice_of(s2, l2)?)
    }
}

struct Update3<F>(RefCell<F>);

impl<F: FnMut(&mut [f32], &[f32], &[f32]) -> Result<()>> InplaceOp3 for Update3<F> {
    fn name(&self) -> &'static str {
        "shoal-inplace3"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        (self.0.borrow_mut())(slice_of_mut(s1, l1)?, slice_of(s2, l2)?, slice_of(s3, l3)?)
    }
}

/// Updates a contiguous CPU tensor in place.
pub(super) fn update(t: &Tensor, f: impl FnMut(&mut [f32]) -> Result<()>) -> Result<()> {
    t.inplace_op1(&Update1(RefCell::new(f)))
}

/// Updates `t` in place, reading `a` (both contiguous, distinct storage).
pub(super) fn update_with(t: &Tensor, a: &Tensor, f: impl FnMut(&mut [f32], &[f32]) -> Result<()>) -> Result<()> {
    t.inplace_op2(a, &Update2(RefCell::new(f)))
}

/// Updates `t` in place, reading `a` and `b`.
pub(super) fn update_with2(
    t: &Tensor,
    a: &Tensor,
    b: &Tensor,
    f: impl FnMut(&mut [f32], &[f32], &[f32]) -> Result<()>,
) -> Result<()> {
    t.inplace_op3(a, b, &Update3(RefCell::new(f)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::candle_values as to_vec;

    #[test]
    fn in_place_updates_write_through_the_tensor() {
        let t = Tensor::new(&[1f32, 2.0, 3.0], &Device::Cpu).expect("tensor");
        let a = Tensor::new(&[10f32, 20.0, 30.0], &Device::Cpu).expect("tensor");
        update_with(&t, &a, |d, s| {
            d.iter_mut().zip(s).for_each(|(d, s)| *d += s);
            Ok(())
        })
        .expect("update");
        assert_eq!(to_vec(&t).expect("vec"), vec![11.0, 22.0, 33.0]);
        let sum = read(&t, |d| Ok(d.iter().sum::<f32>())).expect("read");
        assert_eq!(sum, 66.0);
    }

    #[test]
    fn narrowed_views_read_only_their_part() {
        let t = Tensor::arange(0f32, 12.0, &Device::Cpu).expect("t").reshape((3, 4)).expect("r");
        let row = t.narrow(0, 1, 1).expect("narrow");
        assert_eq!(read(&row, |d| Ok(d.to_vec())).expect("read"), vec![4.0, 5.0, 6.0, 7.0]);
    }
}
