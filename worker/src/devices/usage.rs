//! Samples the registered GPUs' memory in use and utilisation through NVML, for heartbeats and
//! progress reports.
//!
//! A worker without GPUs (no `cuda` feature, no driver) has no monitor and sends no samples. Real
//! samples need an NVIDIA driver; on the build machines only the "no monitor" path runs.

use std::sync::Arc;

use shoal_common::proto::{GpuInfo, GpuUsage};

use super::nvml::{Gpu, Nvml};

/// Shared by the session task (heartbeats) and the job threads (progress points).
#[derive(Clone)]
pub struct GpuMonitor {
    nvml: Arc<Nvml>,
    /// (GpuInfo.index, PCI bus id) of each registered GPU.
    gpus: Arc<[(u32, String)]>,
}

impl GpuMonitor {
    pub fn new(nvml: Arc<Nvml>, gpus: &[GpuInfo]) -> Self {
        Self { nvml, gpus: gpus.iter().map(|g| (g.index, g.pci_bus_id.clone())).collect() }
    }

    /// A monitor for these GPUs, or `None` when there are none or NVML cannot be opened (said
    /// once in the log: the worker then reports no usage).
    pub fn start(gpus: &[GpuInfo]) -> Option<Self> {
        if gpus.is_empty() {
            return None;
        }
        match Nvml::open() {
            Ok(nvml) => Some(Self::new(Arc::new(nvml), gpus)),
            Err(e) => {
                tracing::warn!(error = %e, "GPU memory and utilisation are not reported");
                None
            }
        }
    }

    /// Every registered GPU that answers.
    pub fn sample(&self) -> Vec<GpuUsage> {
        self.gpus.iter().filter_map(|(index, bus)| self.one(*index, bus)).collect()
    }

    /// The GPUs among `indices` that answer (a job's reserved GPUs).
    pub fn sample_of(&self, indices: &[u32]) -> Vec<GpuUsage> {
        self.gpus.iter().filter(|(i, _)| indices.contains(i)).filter_map(|(index, bus)| self.one(*index, bus)).collect()
    }

    fn one(&self, index: u32, bus: &str) -> Option<GpuUsage> {
        // The bus id names the GPU CUDA means; NVML's own index follows PCI order and ignores
        // CUDA_VISIBLE_DEVICES, so it is only a fallback when the driver gave no bus id.
        let gpu = if bus.is_empty() { Gpu::Index(index) } else { Gpu::PciBusId(bus) };
        match self.nvml.usage(gpu) {
            Ok(u) => Some(GpuUsage {
                index,
                memory_used_bytes: u.memory_used_bytes,
                memory_total_bytes: u.memory_total_bytes,
                utilization_percent: u.utilization_percent,
            }),
            Err(e) => {
                tracing::debug!(gpu = index, error = %e, "cannot sample a GPU");
                None
            }
        }
    }
}
