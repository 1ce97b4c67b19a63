//! Test support: candle ops on the host that report their tensors' host addresses as device
//! spans and a stream handle, so the logic that queues device collectives can be followed
//! without a GPU. Nothing reads or writes through the spans.

use candle_core::{CpuStorage, Device, Storage};

use super::{Backend, CandleBackend, HOST, Tensor};
use crate::collective::DeviceSpan;

/// The stream handle it reports.
pub(crate) const STREAM: u64 = 7;

pub(crate) struct Spanned(CandleBackend);

impl Spanned {
    pub(crate) fn new() -> Self {
        Self(CandleBackend::new(HOST))
    }
}

impl Backend for Spanned {
    fn name(&self) -> &'static str {
        "spanned"
    }

    fn device(&self) -> &Device {
        self.0.device()
    }

    fn stream_handle(&self) -> Option<u64> {
        Some(STREAM)
    }

    fn device_span(&self, t: &Tensor) -> Option<DeviceSpan> {
        let (storage, layout) = t.host().ok()?.storage_and_layout();
        match &*storage {
            Storage::Cpu(CpuStorage::F32(v)) => {
                Some(DeviceSpan { ptr: v.as_ptr() as u64 + 4 * layout.start_offset() as u64, len: t.elem_count() })
            }
            _ => None,
        }
    }
}
