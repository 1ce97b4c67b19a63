//! A backend made of the trait's default methods only: plain candle ops (and host round trips
//! for the loss and optimizer kernels) on any candle device. It is the reference the fused CPU
//! kernels are tested against, and runs wherever candle does until a device gets its own backend.

use candle_core::Device;

use super::Backend;

/// Plain candle ops on `device`.
pub struct CandleBackend {
    device: Device,
}

impl CandleBackend {
    pub fn new(device: Device) -> Self {
        Self { device }
    }
}

impl Backend for CandleBackend {
    fn name(&self) -> &'static str {
        "candle"
    }

    fn device(&self) -> &Device {
        &self.device
    }
}
