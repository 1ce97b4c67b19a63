//! Compiles [`SOURCE`] to PTX with NVRTC, loaded at run time: the library is looked up by the
//! names cudarc knows (`libnvrtc.so`, `libnvrtc.so.13`, `libnvrtc.so.12`, ...) on the loader's
//! path, and its absence is an error, not a panic.

use cudarc::nvrtc::result::NvrtcError;
use cudarc::nvrtc::{CompileError, CompileOptions, Ptx};

use super::source::{NVRTC_OPTIONS, SOURCE};

/// Why the kernels could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum PtxError {
    /// No NVRTC library could be loaded.
    #[error("NVRTC is not available: none of {} could be loaded", candidates.join(", "))]
    NvrtcMissing { candidates: Vec<String> },
    /// NVRTC rejected the source; `log` is its compilation log.
    #[error("NVRTC could not compile the source with {options:?}: {log}")]
    Compile {
        options: Vec<String>,
        log: String,
        #[source]
        source: NvrtcError,
    },
    /// NVRTC could not report its version.
    #[error("NVRTC could not report its version: {source}")]
    Version {
        #[source]
        source: NvrtcError,
    },
    /// Another NVRTC call failed (creating the program, fetching the PTX).
    #[error("NVRTC failed: {source}")]
    Nvrtc {
        #[source]
        source: CompileError,
    },
}

/// Whether an NVRTC library can be loaded.
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to open the candidate libraries (running their initialisers, as any
    // later use would); nothing is called through them.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

fn require_nvrtc() -> Result<(), PtxError> {
    if nvrtc_available() {
        Ok(())
    } else {
        let mut candidates = cudarc::get_lib_name_candidates("nvrtc");
        let mut seen = std::collections::HashSet::new();
        candidates.retain(|name| seen.insert(name.clone()));
        Err(PtxError::NvrtcMissing { candidates })
    }
}

/// The loaded NVRTC library's version (major, minor).
pub fn nvrtc_version() -> Result<(i32, i32), PtxError> {
    require_nvrtc()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present (checked above); nvrtcVersion writes two ints.
    unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|source| PtxError::Version { source })?;
    Ok((major, minor))
}

/// The kernels compiled to PTX with [`NVRTC_OPTIONS`].
pub fn compile() -> Result<Ptx, PtxError> {
    compile_source(SOURCE)
}

/// CUDA C++ source compiled to PTX with [`NVRTC_OPTIONS`].
pub fn compile_source(src: &str) -> Result<Ptx, PtxError> {
    require_nvrtc()?;
    let opts = CompileOptions {
        options: NVRTC_OPTIONS.iter().map(|o| (*o).to_owned()).collect(),
        name: Some("kernels.cu".to_owned()),
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(src, opts).map_err(|e| match e {
        CompileError::CompileError { nvrtc, options, log } => {
            PtxError::Compile { options, log: log.to_string_lossy().trim_end().to_owned(), source: nvrtc }
        }
        other => PtxError::Nvrtc { source: other },
    })
}
