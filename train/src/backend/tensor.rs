//! The engine's tensor: `f32` values in row-major order with a shape, held by a backend. On the
//! host it wraps a candle tensor (so host kernels and candle ops work on it directly); on a device
//! it is a buffer owned by that device's backend, which only that backend can compute on. Shape
//! changes never copy device memory, and values change only through a backend's kernels.

use std::any::Any;
use std::sync::Arc;

use candle_core::{Result, Shape, bail};

/// Device memory behind a [`Tensor`]. Implemented by device backends; the engine only moves it
/// around, sizes it and, for checkpoints and metrics, copies it to the host.
pub trait DeviceBuffer: Any + Send + Sync {
    /// Values held.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A host copy of the values.
    fn to_host(&self) -> Result<Vec<f32>>;

    /// For the owning backend, to reach its concrete buffer type.
    fn as_any(&self) -> &dyn Any;
}

#[derive(Clone)]
enum Repr {
    Host(candle_core::Tensor),
    Device { buffer: Arc<dyn DeviceBuffer>, dims: Vec<usize> },
}

/// A backend tensor. Cloning shares the values.
#[derive(Clone)]
pub struct Tensor(Repr);

impl From<candle_core::Tensor> for Tensor {
    fn from(t: candle_core::Tensor) -> Self {
        Self(Repr::Host(t))
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = if self.is_host() { "host" } else { "device" };
        write!(f, "Tensor({place}, {:?})", self.dims())
    }
}

fn dims_of(shape: impl Into<Shape>) -> Vec<usize> {
    shape.into().dims().to_vec()
}

impl Tensor {
    /// A tensor over device memory with shape `dims`.
    pub fn on_device(buffer: Arc<dyn DeviceBuffer>, dims: &[usize]) -> Result<Self> {
        let n: usize = dims.iter().product();
        if n != buffer.len() {
            bail!("a device buffer of {} values cannot have shape {dims:?}", buffer.len());
        }
        Ok(Self(Repr::Device { buffer, dims: dims.to_vec() }))
    }

    pub fn is_host(&self) -> bool {
        matches!(self.0, Repr::Host(_))
    }

    /// The candle tensor of a host tensor.
    pub fn host(&self) -> Result<&candle_core::Tensor> {
        match &self.0 {
            Repr::Host(t) => Ok(t),
            Repr::Device { dims, .. } => bail!("a tensor of shape {dims:?} is in device memory, not on the host"),
        }
    }

    /// The buffer of a device tensor.
    pub fn device_buffer(&self) -> Result<&Arc<dyn DeviceBuffer>> {
        match &self.0 {
            Repr::Device { buffer, .. } => Ok(buffer),
            Repr::Host(t) => bail!("a tensor of shape {:?} is in host memory, not on a device", t.dims()),
        }
    }

    pub fn dims(&self) -> &[usize] {
        match &self.0 {
            Repr::Host(t) => t.dims(),
            Repr::Device { dims, .. } => dims,
        }
    }

    pub fn dim(&self, i: usize) -> Result<usize> {
        match self.dims().get(i) {
            Some(&d) => Ok(d),
            None => bail!("dimension {i} of a tensor of shape {:?}", self.dims()),
        }
    }

    pub fn dims2(&self) -> Result<(usize, usize)> {
        match *self.dims() {
            [a, b] => Ok((a, b)),
            ref d => bail!("expected a matrix, got shape {d:?}"),
        }
    }

    pub fn rank(&self) -> usize {
        self.dims().len()
    }

    pub fn elem_count(&self) -> usize {
        self.dims().iter().product()
    }

    /// Bytes of values held.
    pub fn bytes(&self) -> usize {
        self.elem_count() * std::mem::size_of::<f32>()
    }

    /// The same values with another shape of as many elements.
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Self> {
        let dims = dims_of(shape);
        match &self.0 {
            Repr::Host(t) => Ok(t.reshape(dims)?.into()),
            Repr::Device { buffer, .. } => Self::on_device(buffer.clone(), &dims),
        }
    }

    /// Merges the dimensions from `dim` on into one.
    pub fn flatten_from(&self, dim: usize) -> Result<Self> {
        let d = self.dims();
        if dim >= d.len() {
            bail!("cannot flatten a tensor of shape {d:?} from dimension {dim}");
        }
        let mut dims = d[..dim].to_vec();
        dims.push(d[dim..].iter().product());
        self.reshape(dims)
    }

    /// Row-major storage without gaps (host tensors may be views; device tensors always are).
    pub fn contiguous(&self) -> Result<Self> {
        match &self.0 {
            Repr::Host(t) if !t.is_contiguous() => Ok(t.contiguous()?.into()),
            _ => Ok(self.clone()),
        }
    }

    /// A host copy of the values, wherever they live.
    pub fn to_host_vec(&self) -> Result<Vec<f32>> {
        match &self.0 {
            Repr::Host(t) => super::candle_values(t),
            Repr::Device { buffer, .. } => buffer.to_host(),
        }
    }

    /// A host candle tensor with these values and shape (a copy for device tensors).
    pub fn to_host_tensor(&self) -> Result<candle_core::Tensor> {
        match &self.0 {
            Repr::Host(t) => Ok(t.clone()),
            Repr::Device { buffer, dims } => {
                candle_core::Tensor::from_vec(buffer.to_host()?, dims.as_slice(), &super::HOST)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(Vec<f32>);

    impl DeviceBuffer for Fake {
        fn len(&self) -> usize {
            self.0.len()
        }

        fn to_host(&self) -> Result<Vec<f32>> {
            Ok(self.0.clone())
        }

        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    #[test]
    fn device_tensors_change_shape_without_touching_their_buffer() {
        let t = Tensor::on_device(Arc::new(Fake((0..12).map(|i| i as f32).collect())), &[2, 3, 2]).expect("tensor");
        let flat = t.flatten_from(1).expect("flatten");
        assert_eq!(flat.dims(), &[2, 6]);
        assert_eq!(flat.dims2().expect("dims2"), (2, 6));
        assert!(Arc::ptr_eq(flat.device_buffer().expect("buffer"), t.device_buffer().expect("buffer")));
        assert_eq!(flat.to_host_tensor().expect("host").dims(), &[2, 6]);
        assert!(t.reshape((5, 2)).is_err(), "12 values are not 10");
        assert!(t.host().is_err(), "a device tensor has no host tensor");
        assert!(Tensor::on_device(Arc::new(Fake(vec![1.0])), &[2]).is_err());
    }

    #[test]
    fn host_tensors_wrap_candle_tensors() {
        let c = candle_core::Tensor::arange(0f32, 6.0, &super::super::HOST).expect("t").reshape((2, 3)).expect("r");
        let t = Tensor::from(c.t().expect("transpose"));
        assert_eq!(t.dims(), &[3, 2]);
        assert_eq!(t.contiguous().expect("c").to_host_vec().expect("v"), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert!(t.device_buffer().is_err());
        assert_eq!(t.bytes(), 24);
    }
}
