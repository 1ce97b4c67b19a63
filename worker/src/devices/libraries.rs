//! Which GPU libraries this worker can load, and their versions: the driver, CUDA, cuBLAS, NVRTC,
//! NCCL and NVML, each with the version found or why it is missing (for `shoal-worker devices`).
//!
//! Every CUDA library is checked with cudarc's `is_culib_present` before anything is called in
//! it (cudarc panics when asked to call into a library that does not load). NVML comes from
//! `nvml.rs` and is probed in every build; the others need the `cuda` feature.

use super::nvml::{Nvml, NvmlError};

/// Names of missing libraries shown before "and N more".
const SHOWN_NAMES: usize = 6;

/// Why a library's version is not known.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Missing {
    #[error("built without the `cuda` feature")]
    NotBuilt,
    /// None of the names the loader was given resolved.
    #[error("{library} not found (tried {})", shortlist(tried))]
    NotFound { library: &'static str, tried: Vec<String> },
    /// It loaded but did not answer; `detail` is the library's own description.
    #[error("{detail}")]
    Unusable { detail: String },
}

/// A version, or why there is none.
pub type Found = Result<String, Missing>;

/// What `probe` found.
#[derive(Clone, Debug)]
pub struct Libraries {
    /// The driver's version (through NVML), e.g. "580.82.07".
    pub driver: Found,
    /// The CUDA version the driver supports (`cuDriverGetVersion`), e.g. "13.0".
    pub cuda: Found,
    /// The CUDA version this binary was built for, e.g. "12.8" (`None` without the feature).
    pub cuda_built_for: Option<String>,
    pub cublas: Found,
    pub nvrtc: Found,
    pub nccl: Found,
    /// NVML's version and how many GPUs it sees, e.g. "13.580.82.07, 8 GPUs".
    pub nvml: Found,
}

impl Libraries {
    /// (name, version or reason) in the order they are shown.
    pub fn rows(&self) -> [(&'static str, &Found); 6] {
        [
            ("driver", &self.driver),
            ("CUDA", &self.cuda),
            ("cuBLAS", &self.cublas),
            ("NVRTC", &self.nvrtc),
            ("NCCL", &self.nccl),
            ("NVML", &self.nvml),
        ]
    }

    /// Some library was not found under any name tried (the loader's path may lack its folder).
    pub fn any_not_found(&self) -> bool {
        self.rows().iter().any(|(_, f)| matches!(f, Err(Missing::NotFound { .. })))
    }
}

/// Asks each library for its version. `nvml` is the caller's (it also samples the GPUs).
pub fn probe(nvml: Result<&Nvml, &NvmlError>) -> Libraries {
    let (driver, nvml) = match nvml {
        Ok(n) => (
            n.driver_version().map_err(|e| unusable(&e)),
            n.version().and_then(|v| Ok(format!("{v}, {}", gpus(n.count()?)))).map_err(|e| unusable(&e)),
        ),
        Err(e) => (Err(nvml_missing(e)), Err(nvml_missing(e))),
    };
    let cuda = CudaVersions::probe();
    Libraries {
        driver,
        nvml,
        cuda: cuda.cuda,
        cuda_built_for: cuda.built_for,
        cublas: cuda.cublas,
        nvrtc: cuda.nvrtc,
        nccl: cuda.nccl,
    }
}

fn gpus(n: u32) -> String {
    if n == 1 { "1 GPU".into() } else { format!("{n} GPUs") }
}

fn unusable(e: &NvmlError) -> Missing {
    Missing::Unusable { detail: e.to_string() }
}

fn nvml_missing(e: &NvmlError) -> Missing {
    match e {
        NvmlError::NotFound { tried, .. } => Missing::NotFound { library: "libnvidia-ml", tried: tried.clone() },
        other => unusable(other),
    }
}

/// "a, b, c and 4 more".
fn shortlist(names: &[String]) -> String {
    let shown = names.iter().take(SHOWN_NAMES).map(String::as_str).collect::<Vec<_>>().join(", ");
    match names.len().saturating_sub(SHOWN_NAMES) {
        0 => shown,
        rest => format!("{shown} and {rest} more"),
    }
}

/// NCCL encodes its version as 10000 x major + 100 x minor + patch since 2.9 (21903 is 2.19.3),
/// and as 1000 x major + 100 x minor + patch before (2804 is 2.8.4).
pub fn nccl_version(code: u32) -> String {
    if code >= 10_000 {
        format!("{}.{}.{}", code / 10_000, (code % 10_000) / 100, code % 100)
    } else {
        format!("{}.{}.{}", code / 1000, (code % 1000) / 100, code % 100)
    }
}

/// What needs the `cuda` feature to find out.
struct CudaVersions {
    cuda: Found,
    built_for: Option<String>,
    cublas: Found,
    nvrtc: Found,
    nccl: Found,
}

#[cfg(not(feature = "cuda"))]
impl CudaVersions {
    fn probe() -> Self {
        Self {
            cuda: Err(Missing::NotBuilt),
            built_for: None,
            cublas: Err(Missing::NotBuilt),
            nvrtc: Err(Missing::NotBuilt),
            nccl: Err(Missing::NotBuilt),
        }
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};

    use cudarc::cublas::sys as cublas;
    use cudarc::nvrtc::sys as nvrtc;

    use super::{CudaVersions, Found, Missing, nccl_version};
    use crate::devices::cuda::{built_for, driver_cuda_version};

    impl CudaVersions {
        pub(super) fn probe() -> Self {
            let (major, minor) = built_for();
            Self {
                cuda: cuda_version(),
                built_for: Some(format!("{major}.{minor}")),
                cublas: cublas_version(),
                nvrtc: nvrtc_version(),
                nccl: nccl(),
            }
        }
    }

    /// The names cudarc tries for these libraries, deduplicated, the ones Linux installs use
    /// (`libX.so`, `libX.so.N`) first.
    fn tried(stems: &[&str]) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for stem in stems {
            for name in cudarc::get_lib_name_candidates(stem) {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        let plain = |n: &String| stems.iter().any(|s| n.starts_with(&format!("{DLL_PREFIX}{s}{DLL_SUFFIX}")));
        names.sort_by_key(|n| !plain(n));
        names
    }

    fn cuda_version() -> Found {
        match driver_cuda_version() {
            None => Err(Missing::NotFound { library: "libcuda", tried: tried(&["cuda", "nvcuda"]) }),
            Some(Err(code)) => Err(Missing::Unusable { detail: format!("cuDriverGetVersion returned {code:?}") }),
            Some(Ok((major, minor))) => Ok(format!("{major}.{minor}")),
        }
    }

    fn cublas_version() -> Found {
        // SAFETY: only checks whether the library can be loaded.
        if !unsafe { cublas::is_culib_present() } {
            return Err(Missing::NotFound { library: "libcublas", tried: tried(&["cublas"]) });
        }
        let mut parts = [0; 3];
        let kinds = [
            cublas::libraryPropertyType::MAJOR_VERSION,
            cublas::libraryPropertyType::MINOR_VERSION,
            cublas::libraryPropertyType::PATCH_LEVEL,
        ];
        for (part, kind) in parts.iter_mut().zip(kinds) {
            // SAFETY: the library loads (checked above); cublasGetProperty needs no handle or
            // device, and `part` is a valid out-pointer.
            let status = unsafe { cublas::cublasGetProperty(kind, part) };
            if status != cublas::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
                return Err(Missing::Unusable { detail: format!("cublasGetProperty returned {status:?}") });
            }
        }
        Ok(format!("{}.{}.{}", parts[0], parts[1], parts[2]))
    }

    fn nvrtc_version() -> Found {
        // SAFETY: only checks whether the library can be loaded.
        if !unsafe { nvrtc::is_culib_present() } {
            return Err(Missing::NotFound { library: "libnvrtc", tried: tried(&["nvrtc"]) });
        }
        let (mut major, mut minor) = (0, 0);
        // SAFETY: the library loads (checked above); both are valid out-pointers.
        let status = unsafe { nvrtc::nvrtcVersion(&mut major, &mut minor) };
        if status != nvrtc::nvrtcResult::NVRTC_SUCCESS {
            return Err(Missing::Unusable { detail: format!("nvrtcVersion returned {status:?}") });
        }
        Ok(format!("{major}.{minor}"))
    }

    fn nccl() -> Found {
        // SAFETY: only checks whether the library can be loaded.
        if !unsafe { cudarc::nccl::sys::is_culib_present() } {
            return Err(Missing::NotFound { library: "libnccl", tried: tried(&["nccl"]) });
        }
        // The library loads (checked above); ncclGetVersion needs nothing else.
        match cudarc::nccl::result::get_nccl_version() {
            Ok(code) => Ok(nccl_version(code.max(0) as u32)),
            Err(e) => Err(Missing::Unusable { detail: format!("ncclGetVersion returned {:?}", e.0) }),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn names_a_linux_install_uses_come_first() {
            let names = tried(&["cuda", "nvcuda"]);
            assert_eq!(names[0], format!("{DLL_PREFIX}cuda{DLL_SUFFIX}"));
            let first_odd = names.iter().position(|n| n.contains("64")).expect("cudarc also tries libcuda64*");
            assert!(names[..first_odd].iter().all(|n| !n.contains("64")));
            assert!(names[first_odd..].iter().all(|n| n.contains("64")), "{names:?}");
            let mut unique = names.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), names.len());
        }

        /// On the build machines no CUDA library loads: each says which names it tried.
        #[test]
        fn each_library_has_a_version_or_a_reason() {
            let v = CudaVersions::probe();
            assert!(v.built_for.is_some());
            for found in [&v.cuda, &v.cublas, &v.nvrtc, &v.nccl] {
                match found {
                    Ok(version) => assert!(version.contains('.'), "{version}"),
                    Err(Missing::NotFound { tried, .. }) => assert!(!tried.is_empty()),
                    Err(Missing::Unusable { detail }) => assert!(!detail.is_empty()),
                    Err(Missing::NotBuilt) => panic!("built with the cuda feature"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nccl_versions_decode_in_both_schemes() {
        assert_eq!(nccl_version(21903), "2.19.3");
        assert_eq!(nccl_version(22703), "2.27.3");
        assert_eq!(nccl_version(2804), "2.8.4");
    }

    #[test]
    fn long_lists_of_tried_names_are_shortened() {
        let names: Vec<String> = (0..9).map(|i| format!("lib{i}.so")).collect();
        let missing = Missing::NotFound { library: "libx", tried: names };
        assert_eq!(
            missing.to_string(),
            "libx not found (tried lib0.so, lib1.so, lib2.so, lib3.so, lib4.so, lib5.so and 3 more)"
        );
        let two = Missing::NotFound { library: "libx", tried: vec!["a.so".into(), "b.so".into()] };
        assert_eq!(two.to_string(), "libx not found (tried a.so, b.so)");
    }

    /// This probe runs for real: without the feature every CUDA library says so, and NVML has a
    /// version or a reason.
    #[test]
    fn a_probe_answers_for_every_library() {
        let nvml = Nvml::open();
        let libs = probe(nvml.as_ref());
        for (name, found) in libs.rows() {
            match found {
                Ok(v) => assert!(!v.is_empty(), "{name}"),
                Err(why) => assert!(!why.to_string().is_empty(), "{name}"),
            }
        }
        if cfg!(not(feature = "cuda")) {
            assert_eq!(libs.cublas, Err(Missing::NotBuilt));
            assert_eq!(libs.cuda_built_for, None);
        }
        if nvml.is_err() {
            assert_eq!(libs.driver, libs.nvml, "the driver's version comes through NVML");
        }
    }
}
