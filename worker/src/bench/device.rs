//! Where a training benchmark runs: `--device cpu | cuda | cuda:N` and `--precision fp32 | tf32`
//! parsed into typed values, and the backend each one opens. A GPU benchmark never falls back to
//! the CPU: a build without the `cuda` feature, or a GPU that cannot be opened, is an error that
//! says why.

use std::fmt;
use std::sync::Arc;

use shoal_common::spec::Precision;
use shoal_train::backend::Backend;

use super::error::BenchError;

/// The device a benchmark trains on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// The GPU with this CUDA ordinal.
    Cuda(usize),
}

impl Device {
    /// Parses `cpu`, `cuda` (GPU 0) or `cuda:N`.
    pub fn parse(text: &str) -> Result<Self, BenchError> {
        let bad = || BenchError::BadFlag {
            flag: "--device",
            value: text.to_owned(),
            expected: "cpu, cuda or cuda:N (a GPU index)",
        };
        match text {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => {
                let index = other.strip_prefix("cuda:").ok_or_else(bad)?;
                // Digits only: `cuda:+1` and `cuda: 1` are typos, not GPU 1.
                if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                index.parse().map(Self::Cuda).map_err(|_| bad())
            }
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Parses `--precision`: fp32, tf32 or bf16 (an empty value is not a silent fp32).
pub fn parse_precision(text: &str) -> Result<Precision, BenchError> {
    Precision::parse(text).filter(|_| !text.is_empty()).ok_or(BenchError::BadFlag {
        flag: "--precision",
        value: text.to_owned(),
        expected: "fp32, tf32 or bf16",
    })
}

/// The name of a precision in JSON records and flags.
pub fn precision_name(p: Precision) -> &'static str {
    p.name()
}

/// An opened training device.
#[derive(Clone)]
pub struct Opened {
    pub device: Device,
    /// The backend to train on; `None` is the engine's CPU backend.
    pub backend: Option<Arc<dyn Backend>>,
    /// The GPU's name (GPUs only).
    pub gpu: Option<String>,
    pub precision: Precision,
}

impl Opened {
    /// The CPU, which always computes in fp32.
    pub fn cpu() -> Self {
        Self { device: Device::Cpu, backend: None, gpu: None, precision: Precision::Fp32 }
    }
}

/// Opens `device` with matrix products in `precision`.
pub fn open(device: Device, precision: Precision) -> Result<Opened, BenchError> {
    match device {
        Device::Cpu if precision != Precision::Fp32 => Err(BenchError::BadFlag {
            flag: "--precision",
            value: precision_name(precision).to_owned(),
            expected: "fp32 on the CPU (tf32 and bf16 apply to --device cuda only)",
        }),
        Device::Cpu => Ok(Opened::cpu()),
        Device::Cuda(ordinal) => open_gpu(ordinal, precision),
    }
}

#[cfg(feature = "cuda")]
fn open_gpu(ordinal: usize, precision: Precision) -> Result<Opened, BenchError> {
    use shoal_train::backend::cuda::{CudaBackend, MathMode};
    let backend =
        CudaBackend::open(ordinal, MathMode::from(precision)).map_err(|source| BenchError::Gpu { ordinal, source })?;
    let gpu = backend.gpu().name();
    Ok(Opened { device: Device::Cuda(ordinal), backend: Some(Arc::new(backend)), gpu: Some(gpu), precision })
}

#[cfg(not(feature = "cuda"))]
fn open_gpu(_ordinal: usize, _precision: Precision) -> Result<Opened, BenchError> {
    Err(BenchError::NoCuda)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print_back() {
        assert_eq!(Device::parse("cpu").expect("cpu"), Device::Cpu);
        assert_eq!(Device::parse("cuda").expect("cuda"), Device::Cuda(0));
        assert_eq!(Device::parse("cuda:3").expect("cuda:3"), Device::Cuda(3));
        assert_eq!(Device::Cuda(3).to_string(), "cuda:3");
        assert_eq!(Device::Cpu.to_string(), "cpu");
        for bad in ["tpu", "", "cuda:", "cuda:x", "cuda:+1", "cuda: 1", "CUDA", "cuda:99999999999999999999", "gpu:0"] {
            let err = Device::parse(bad).expect_err(bad);
            assert!(err.to_string().starts_with("--device"), "{bad}: {err}");
            assert!(err.to_string().contains(&format!("`{bad}`")), "{bad}: {err}");
        }
    }

    #[test]
    fn precisions_parse() {
        assert_eq!(parse_precision("fp32").expect("fp32"), Precision::Fp32);
        assert_eq!(parse_precision("tf32").expect("tf32"), Precision::Tf32);
        assert_eq!(parse_precision("bf16").expect("bf16"), Precision::Bf16);
        assert_eq!(precision_name(Precision::Bf16), "bf16");
        let fp16 = parse_precision("fp16").expect_err("fp16").to_string();
        assert_eq!(fp16, "--precision `fp16`: expected fp32, tf32 or bf16");
        // An empty value is not a silent fp32.
        assert!(parse_precision("").is_err());
    }

    #[test]
    fn the_cpu_opens_in_fp32_only() {
        let cpu = open(Device::Cpu, Precision::Fp32).expect("the CPU");
        assert!(cpu.backend.is_none() && cpu.gpu.is_none());
        let err = open(Device::Cpu, Precision::Tf32).err().expect("tf32 on the CPU");
        assert!(err.to_string().starts_with("--precision"), "{err}");
    }

    #[test]
    fn a_gpu_that_cannot_be_opened_is_an_error_not_the_cpu() {
        // Without the `cuda` feature every GPU fails; with it, no machine has a GPU 4095.
        let err = open(Device::Cuda(4095), Precision::Fp32).err().expect("no GPU 4095");
        #[cfg(not(feature = "cuda"))]
        assert!(matches!(err, BenchError::NoCuda), "{err}");
        #[cfg(feature = "cuda")]
        assert!(matches!(err, BenchError::Gpu { ordinal: 4095, .. }), "{err}");
    }
}
