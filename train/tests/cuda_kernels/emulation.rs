//! Host emulation of the CUDA kernels: `kernels.cu` compiled as C++ with `SHOAL_HOST_EMULATION`
//! into a shared library, and launches emulated by calling a kernel once per (block, thread) in
//! sequence after setting the indices it reads.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use libloading::Library;
use shoal_train::backend::cuda::launch::LaunchDims;
use shoal_train::backend::cuda::source::SOURCE;

/// The launches every kernel is checked with: one thread, several blocks of several threads
/// (so that threads stride over the elements in turn), and more threads than elements.
pub const LAUNCHES: [LaunchDims; 3] =
    [LaunchDims { grid: 1, block: 1 }, LaunchDims { grid: 2, block: 3 }, LaunchDims { grid: 3, block: 64 }];

/// The emulated kernels. Launches hold a lock: the thread indices are globals of the library.
pub struct Emulator {
    lib: Library,
    launch_lock: Mutex<()>,
    _dir: tempfile::TempDir,
}

type SetThread = unsafe extern "C" fn(u32, u32, u32, u32);

/// The shared emulator, built on first use.
pub fn emulator() -> &'static Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR.get_or_init(Emulator::build)
}

impl Emulator {
    fn build() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let src = dir.path().join("kernels.cu");
        std::fs::write(&src, SOURCE).expect("write kernels.cu");
        let lib_path: PathBuf = dir.path().join("libshoal_kernels.so");
        let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".to_owned());
        let output = Command::new(&cxx)
            .args(["-x", "c++", "-std=c++17", "-O2", "-shared", "-fPIC", "-fvisibility=hidden"])
            // The CPU engine's Rust code is not contracted into fused multiply-adds either.
            .args(["-ffp-contract=off", "-Wall", "-Wextra", "-Werror", "-DSHOAL_HOST_EMULATION"])
            .arg(&src)
            .arg("-o")
            .arg(&lib_path)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "the host emulation of the CUDA kernels needs a C++ compiler: running `{cxx}` failed ({e}); \
                     install one (g++ or clang++) or point CXX at it"
                )
            });
        assert!(
            output.status.success(),
            "`{cxx}` could not compile kernels.cu for host emulation:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // SAFETY: a library just built from our own source; its initialisers only zero globals.
        let lib = unsafe { Library::new(&lib_path) }.expect("load the emulated kernels");
        Self { lib, launch_lock: Mutex::new(()), _dir: dir }
    }

    /// Emulates a launch of kernel `name` (of type `F`, an `unsafe extern "C" fn`): `call` runs
    /// once for every thread of every block, in order, with the kernel's function pointer.
    pub fn launch<F: Copy>(&self, name: &str, dims: LaunchDims, mut call: impl FnMut(F)) {
        let _guard = self.launch_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // SAFETY: F is the kernel's signature as declared in kernels.cu (checked by the callers'
        // types); set_thread's is declared in its prelude.
        let (kernel, set_thread) = unsafe {
            let kernel: F = *self.lib.get::<F>(name.as_bytes()).unwrap_or_else(|e| panic!("kernel {name}: {e}"));
            let set_thread: SetThread = *self.lib.get::<SetThread>(b"shoal_set_thread").expect("shoal_set_thread");
            (kernel, set_thread)
        };
        for block in 0..dims.grid {
            for thread in 0..dims.block {
                // SAFETY: sets four globals.
                unsafe { set_thread(dims.grid, dims.block, block, thread) };
                call(kernel);
            }
        }
    }
}
