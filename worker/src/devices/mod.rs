//! What this machine offers: CPU cores, memory, and CUDA GPUs (found at run time through the
//! driver when built with the `cuda` feature); the GPU libraries it can load; and the GPUs'
//! current use (through NVML, in every build).

#[cfg(feature = "cuda")]
mod cuda;
pub mod libraries;
pub mod nvml;
mod report;
mod usage;

#[cfg(feature = "cuda")]
use cuda::gpus;
use shoal_common::proto::GpuInfo;

pub use report::Inventory;
pub use usage::GpuMonitor;

/// Detected hardware.
#[derive(Clone, Debug)]
pub struct Devices {
    pub hostname: String,
    pub cpu_cores: u32,
    pub memory_bytes: u64,
    pub gpus: Vec<GpuInfo>,
    /// Why there are no GPUs, when there are none.
    pub gpu_note: String,
    /// NCCL can be loaded.
    pub nccl: bool,
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Total memory from /proc/meminfo (0 if unknown).
fn memory_bytes() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/meminfo") else {
        return 0;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

pub fn detect() -> Devices {
    let (gpus, gpu_note) = gpus();
    #[cfg(feature = "cuda")]
    let nccl = !gpus.is_empty() && crate::sync::nccl::available();
    #[cfg(not(feature = "cuda"))]
    let nccl = false;
    Devices {
        nccl,
        hostname: hostname(),
        cpu_cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        memory_bytes: memory_bytes(),
        gpus,
        gpu_note,
    }
}

#[cfg(not(feature = "cuda"))]
fn gpus() -> (Vec<GpuInfo>, String) {
    (Vec::new(), "this worker was built without the `cuda` feature; training runs on CPU".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_this_machine() {
        let d = detect();
        assert!(d.cpu_cores >= 1);
        assert!(d.memory_bytes > 0);
        assert!(!d.hostname.is_empty());
        if d.gpus.is_empty() {
            assert!(!d.gpu_note.is_empty(), "no GPUs must come with a reason");
        }
    }
}
