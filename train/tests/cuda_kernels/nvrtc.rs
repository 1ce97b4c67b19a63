//! The kernels compile to PTX with NVRTC (no GPU needed). Without an NVRTC library the test
//! prints why it skipped, unless `SHOAL_REQUIRE_NVRTC=1`, where that is a failure (CI installs
//! NVRTC).

use shoal_train::backend::cuda::ptx::{self, PtxError};
use shoal_train::backend::cuda::source::{KERNELS, ptx_entries};
use std::io::Write;

fn nvrtc_required() -> bool {
    std::env::var("SHOAL_REQUIRE_NVRTC").is_ok_and(|v| v == "1")
}

/// Whether to run an NVRTC test: false (after saying why) when NVRTC is missing and not required.
fn nvrtc_present() -> bool {
    match ptx::nvrtc_version() {
        Err(e) if !nvrtc_required() => {
            // Straight to stderr: the test harness hides `eprintln!` output of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "skipped: {e} (point LD_LIBRARY_PATH at a folder with one; SHOAL_REQUIRE_NVRTC=1 fails instead)"
            );
            false
        }
        _ => true,
    }
}

#[test]
fn every_kernel_compiles_to_a_ptx_entry() {
    if !nvrtc_present() {
        return;
    }
    let compiled = ptx::compile().unwrap_or_else(|e| panic!("{e}"));
    let (major, minor) = ptx::nvrtc_version().expect("NVRTC version");
    let text = compiled.to_src();
    let entries = ptx_entries(&text);
    for name in KERNELS {
        assert!(entries.contains(name), "no .entry {name} in the PTX; entries: {entries:?}");
    }
    assert_eq!(entries.len(), KERNELS.len(), "{entries:?}");
    assert!(text.contains(".target sm_80"), "PTX for another target");
    eprintln!("NVRTC {major}.{minor}: {} kernels, {} bytes of PTX", entries.len(), text.len());
}

/// A source NVRTC rejects is a `Compile` error that carries NVRTC's log.
#[test]
fn compile_errors_carry_the_nvrtc_log() {
    if !nvrtc_present() {
        return;
    }
    let err = ptx::compile_source("extern \"C\" __global__ void broken(float* x) { x[0] = undefined_name; }")
        .expect_err("an undefined name");
    match &err {
        PtxError::Compile { log, options, .. } => {
            assert!(log.contains("undefined_name"), "{log}");
            assert!(options.iter().any(|o| o == "--gpu-architecture=compute_80"), "{options:?}");
        }
        other => panic!("expected a compile error, got {other}"),
    }
    assert!(err.to_string().contains("undefined_name"), "{err}");
}
