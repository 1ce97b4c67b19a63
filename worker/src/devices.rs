//! What this machine offers: CPU cores, memory, and CUDA GPUs (found at run time through the
//! driver when built with the `cuda` feature).

use shoal_common::proto::GpuInfo;

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

impl Devices {
    /// The devices as one JSON object (for `shoal-worker devices`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "hostname": self.hostname,
            "cpu_cores": self.cpu_cores,
            "memory_bytes": self.memory_bytes,
            "gpus": self.gpus.iter().map(|g| serde_json::json!({"index": g.index, "name": g.name, "memory_bytes": g.memory_bytes})).collect::<Vec<_>>(),
            "gpu_note": self.gpu_note,
            "nccl": self.nccl,
        })
    }
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

#[cfg(feature = "cuda")]
fn gpus() -> (Vec<GpuInfo>, String) {
    use cudarc::driver::result;
    // SAFETY: only checks whether the driver library can be loaded; never calls into it.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return (Vec::new(), "no CUDA driver found (libcuda could not be loaded); training runs on CPU".into());
    }
    if let Err(e) = result::init() {
        return (Vec::new(), format!("the CUDA driver did not initialise ({e}); training runs on CPU"));
    }
    let count = match result::device::get_count() {
        Ok(n) => n.max(0) as u32,
        Err(e) => {
            return (Vec::new(), format!("cannot count CUDA devices ({e}); training runs on CPU"));
        }
    };
    let mut out = Vec::new();
    for index in 0..count {
        let Ok(dev) = result::device::get(index as i32) else {
            continue;
        };
        let name = result::device::get_name(dev).unwrap_or_else(|_| "unknown CUDA device".into());
        // SAFETY: `dev` is a valid device handle returned by the initialised driver.
        let memory_bytes = unsafe { result::device::total_mem(dev) }.map_or(0, |m| m as u64);
        out.push(GpuInfo { index, name, memory_bytes, ..Default::default() });
    }
    let note =
        if out.is_empty() { "the CUDA driver reports no devices; training runs on CPU".into() } else { String::new() };
    (out, note)
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
