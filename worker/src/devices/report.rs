//! What `shoal-worker devices` shows: the machine, its GPUs with their current use, and the GPU
//! libraries with their versions or why each is missing; as text for people or as JSON.

use std::sync::Arc;

use shoal_common::proto::GpuUsage;

use super::libraries::{self, Found, Libraries, Missing};
use super::nvml::Nvml;
use super::usage::GpuMonitor;
use super::{Devices, detect};

/// Said under the libraries when one was not found under any name.
const LOADER_HINT: &str = "libraries are looked up on the loader's path: add their folders to LD_LIBRARY_PATH; \
     NCCL installs libnccl.so.2, found only through a libnccl.so link beside it";

/// Everything `shoal-worker devices` reports.
#[derive(Clone, Debug)]
pub struct Inventory {
    pub devices: Devices,
    pub libraries: Libraries,
    /// Current use of the GPUs in `devices` (those NVML could sample).
    pub usage: Vec<GpuUsage>,
}

impl Inventory {
    /// Looks at this machine.
    pub fn gather() -> Self {
        let devices = detect();
        let nvml = Nvml::open().map(Arc::new);
        let libraries = libraries::probe(nvml.as_deref());
        let usage = match &nvml {
            Ok(n) => GpuMonitor::new(n.clone(), &devices.gpus).sample(),
            Err(_) => Vec::new(),
        };
        Self { devices, libraries, usage }
    }

    /// For people.
    pub fn text(&self) -> String {
        let d = &self.devices;
        let mut out = vec![
            format!("host      {}", d.hostname),
            format!("cpus      {}", d.cpu_cores),
            format!("memory    {}", bytes(d.memory_bytes)),
        ];
        if d.gpus.is_empty() {
            out.push(format!("gpus      none ({})", d.gpu_note));
        } else {
            out.push("gpus".into());
            for g in &d.gpus {
                let mut line = format!("  {:<3}{}  {}", g.index, g.name, bytes(g.memory_bytes));
                if g.compute_capability_major > 0 {
                    line.push_str(&format!("  compute {}.{}", g.compute_capability_major, g.compute_capability_minor));
                }
                if !g.pci_bus_id.is_empty() {
                    line.push_str(&format!("  pci {}", g.pci_bus_id));
                }
                if let Some(u) = self.usage.iter().find(|u| u.index == g.index) {
                    line.push_str(&format!("  {}", usage(u)));
                }
                out.push(line);
            }
        }
        out.push(format!("nccl      {}", if d.nccl { "yes" } else { "no" }));
        out.push(String::new());
        out.push("libraries".into());
        let libs = &self.libraries;
        for (name, found) in libs.rows() {
            let mut line = format!("  {name:<8}{}", found_text(found));
            if name == "CUDA"
                && let Some(v) = &libs.cuda_built_for
            {
                line.push_str(&format!("; this binary was built for {v}"));
            }
            out.push(line);
        }
        if libs.any_not_found() {
            out.push(format!("  note: {LOADER_HINT}"));
        }
        out.join("\n")
    }

    /// For programs: the fields of the earlier JSON output, and more.
    pub fn json(&self) -> serde_json::Value {
        let d = &self.devices;
        let gpus: Vec<serde_json::Value> = d
            .gpus
            .iter()
            .map(|g| {
                let u = self.usage.iter().find(|u| u.index == g.index);
                serde_json::json!({
                    "index": g.index,
                    "name": g.name,
                    "memory_bytes": g.memory_bytes,
                    "pci_bus_id": g.pci_bus_id,
                    "compute_capability": format!("{}.{}", g.compute_capability_major, g.compute_capability_minor),
                    "memory_used_bytes": u.map(|u| u.memory_used_bytes),
                    "utilization_percent": u.and_then(|u| u.utilization_percent),
                })
            })
            .collect();
        let libs = &self.libraries;
        let libraries: serde_json::Map<String, serde_json::Value> =
            libs.rows().iter().map(|(name, found)| (name.to_lowercase(), found_json(found))).collect();
        serde_json::json!({
            "hostname": d.hostname,
            "cpu_cores": d.cpu_cores,
            "memory_bytes": d.memory_bytes,
            "gpus": gpus,
            "gpu_note": d.gpu_note,
            "nccl": d.nccl,
            "cuda_built_for": libs.cuda_built_for,
            "libraries": libraries,
        })
    }
}

fn found_text(found: &Found) -> String {
    match found {
        Ok(v) => v.clone(),
        Err(why) => format!("missing: {why}"),
    }
}

fn found_json(found: &Found) -> serde_json::Value {
    match found {
        Ok(v) => serde_json::json!({ "version": v }),
        Err(why) => {
            let (reason, tried) = match why {
                Missing::NotBuilt => ("not_built", None),
                Missing::NotFound { tried, .. } => ("not_found", Some(tried)),
                Missing::Unusable { .. } => ("unusable", None),
            };
            serde_json::json!({ "missing": why.to_string(), "reason": reason, "tried": tried })
        }
    }
}

/// "12.1/139.8 GiB in use, 87% busy".
fn usage(u: &GpuUsage) -> String {
    let busy = u.utilization_percent.map_or_else(|| "utilisation unknown".to_owned(), |p| format!("{p}% busy"));
    format!("{}/{} in use, {busy}", gib(u.memory_used_bytes), bytes(u.memory_total_bytes))
}

/// Without the unit (it follows the total).
fn gib(b: u64) -> String {
    format!("{:.1}", b as f64 / (1u64 << 30) as f64)
}

fn bytes(b: u64) -> String {
    let gib = b as f64 / (1u64 << 30) as f64;
    if gib >= 1.0 { format!("{gib:.1} GiB") } else { format!("{} MiB", b >> 20) }
}

#[cfg(test)]
mod tests {
    use shoal_common::proto::GpuInfo;

    use super::*;

    fn cpu_only() -> Inventory {
        let not_found = |library: &'static str, tried: &[&str]| {
            Err(Missing::NotFound { library, tried: tried.iter().map(|s| s.to_string()).collect() })
        };
        Inventory {
            devices: Devices {
                hostname: "box".into(),
                cpu_cores: 2,
                memory_bytes: 24 << 30,
                gpus: Vec::new(),
                gpu_note: "this worker was built without the `cuda` feature; training runs on CPU".into(),
                nccl: false,
            },
            libraries: Libraries {
                driver: not_found("libnvidia-ml", &["libnvidia-ml.so.1", "libnvidia-ml.so"]),
                cuda: Err(Missing::NotBuilt),
                cuda_built_for: None,
                cublas: Err(Missing::NotBuilt),
                nvrtc: Err(Missing::NotBuilt),
                nccl: Err(Missing::NotBuilt),
                nvml: not_found("libnvidia-ml", &["libnvidia-ml.so.1", "libnvidia-ml.so"]),
            },
            usage: Vec::new(),
        }
    }

    /// The numbers are made up; how they are laid out is what is tested.
    fn one_gpu() -> Inventory {
        let mut inv = cpu_only();
        inv.devices.gpus = vec![GpuInfo {
            index: 0,
            name: "NVIDIA H200".into(),
            memory_bytes: 150 << 30,
            pci_bus_id: "0000:18:00.0".into(),
            compute_capability_major: 9,
            compute_capability_minor: 0,
        }];
        inv.devices.gpu_note.clear();
        inv.devices.nccl = true;
        inv.libraries = Libraries {
            driver: Ok("580.82.07".into()),
            cuda: Ok("13.0".into()),
            cuda_built_for: Some("12.8".into()),
            cublas: Err(Missing::NotFound { library: "libcublas", tried: vec!["libcublas.so".into()] }),
            nvrtc: Ok("13.0".into()),
            nccl: Ok("2.27.3".into()),
            nvml: Ok("13.580.82.07, 1 GPU".into()),
        };
        inv.usage = vec![GpuUsage {
            index: 0,
            memory_used_bytes: 3 << 30,
            memory_total_bytes: 150 << 30,
            utilization_percent: Some(87),
        }];
        inv
    }

    #[test]
    fn a_cpu_only_machine_says_why_each_library_is_missing() {
        let text = cpu_only().text();
        assert!(text.contains("gpus      none (this worker was built without the `cuda` feature"), "{text}");
        assert!(text.contains("  CUDA    missing: built without the `cuda` feature\n"), "{text}");
        assert!(
            text.contains("  NVML    missing: libnvidia-ml not found (tried libnvidia-ml.so.1, libnvidia-ml.so)"),
            "{text}"
        );
        assert!(text.contains("LD_LIBRARY_PATH"), "a library not found comes with where to look: {text}");
        assert!(!text.contains("built for"), "{text}");
    }

    #[test]
    fn a_gpu_shows_its_capability_bus_and_use() {
        let text = one_gpu().text();
        assert!(
            text.contains("  0  NVIDIA H200  150.0 GiB  compute 9.0  pci 0000:18:00.0  3.0/150.0 GiB in use, 87% busy"),
            "{text}"
        );
        assert!(text.contains("  CUDA    13.0; this binary was built for 12.8"), "{text}");
        assert!(text.contains("  NCCL    2.27.3"), "{text}");
        assert!(text.contains("  cuBLAS  missing: libcublas not found (tried libcublas.so)"), "{text}");
    }

    #[test]
    fn json_keeps_the_old_fields_and_adds_libraries_and_use() {
        let v = one_gpu().json();
        for key in ["hostname", "cpu_cores", "memory_bytes", "gpus", "gpu_note", "nccl"] {
            assert!(v.get(key).is_some(), "{key} missing from {v}");
        }
        assert_eq!(v["gpus"][0]["compute_capability"], "9.0");
        assert_eq!(v["gpus"][0]["memory_used_bytes"], 3u64 << 30);
        assert_eq!(v["gpus"][0]["utilization_percent"], 87);
        assert_eq!(v["libraries"]["nccl"]["version"], "2.27.3");
        assert_eq!(v["libraries"]["cublas"]["reason"], "not_found");
        assert_eq!(v["libraries"]["cublas"]["tried"][0], "libcublas.so");
        assert_eq!(v["cuda_built_for"], "12.8");
        let cpu = cpu_only().json();
        assert_eq!(cpu["libraries"]["cuda"]["reason"], "not_built");
        assert!(cpu["libraries"]["cuda"]["tried"].is_null());
        assert_eq!(cpu["gpus"].as_array().map(Vec::len), Some(0));
    }

    #[test]
    fn utilisation_a_gpu_cannot_report_is_said_to_be_unknown() {
        let u =
            GpuUsage { index: 1, memory_used_bytes: 1 << 29, memory_total_bytes: 40 << 30, utilization_percent: None };
        assert_eq!(usage(&u), "0.5/40.0 GiB in use, utilisation unknown");
    }
}
