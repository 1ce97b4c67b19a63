//! Checks of the CUDA kernels without a GPU. Host emulation (always): `kernels.cu` is compiled
//! as C++ and every kernel is compared with the CPU engine's kernels (`backend::kernels`,
//! `backend::rules`) or, for convolution and pooling, with candle's ops and autograd, under
//! several launch shapes. NVRTC (feature `cuda`): the source compiles to PTX with every kernel.

mod activations;
mod conv;
mod emulation;
mod losses;
#[cfg(feature = "cuda")]
mod nvrtc;
mod optim;
mod pool;

use shoal_train::backend::cuda::launch::LaunchDims;
use shoal_train::backend::cuda::source::KERNELS;

use crate::emulation::{LAUNCHES, emulator};

/// Deterministic values in [-2, 2) (xorshift; the seed picks the sequence).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

/// The emulated launches for a kernel: [`LAUNCHES`] and the configuration launch.rs gives it.
pub fn launches(own: LaunchDims) -> Vec<LaunchDims> {
    let mut all = LAUNCHES.to_vec();
    all.push(own);
    all
}

/// Counts the element comparisons of one test, and reports them when it passes.
pub struct Checks {
    name: &'static str,
    count: usize,
}

impl Checks {
    pub fn new(name: &'static str) -> Self {
        Self { name, count: 0 }
    }

    /// Asserts `|got − want| ≤ rel·|want| + abs` elementwise.
    pub fn close(&mut self, what: &str, got: &[f32], want: &[f32], rel: f32, abs: f32) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= rel * w.abs() + abs || (g.is_nan() && w.is_nan()),
                "{what}: index {i}: got {g}, want {w}"
            );
        }
        self.count += got.len();
    }

    /// Asserts equal values (NaN equal to NaN, -0 to +0). The emulation runs the CPU kernels' f32
    /// operations in their order and calls the same libm, uncontracted, so they agree exactly.
    pub fn exact(&mut self, what: &str, got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(g == w || (g.is_nan() && w.is_nan()), "{what}: index {i}: got {g:e}, want {w:e}");
        }
        self.count += got.len();
    }

    /// Asserts equality of a value.
    pub fn equal<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, got: T, want: T) {
        assert_eq!(got, want, "{what}");
        self.count += 1;
    }
}

impl Drop for Checks {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert!(self.count > 0, "{}: nothing was compared", self.name);
            eprintln!("{}: {} values compared", self.name, self.count);
        }
    }
}

/// The grid-stride loop every kernel uses visits each index exactly once, whatever the launch.
#[test]
fn grid_stride_loops_visit_every_index_once() {
    type CountVisits = unsafe extern "C" fn(*mut i32, i32);
    let emu = emulator();
    for n in [0usize, 1, 5, 6, 7, 64, 191, 193, 1000] {
        for dims in LAUNCHES.into_iter().chain([LaunchDims { grid: 1, block: 256 }, LaunchDims { grid: 7, block: 5 }]) {
            let mut hits = vec![0i32; n];
            let p = hits.as_mut_ptr();
            emu.launch("shoal_count_visits", dims, |f: CountVisits| unsafe { f(p, n as i32) });
            assert!(hits.iter().all(|&h| h == 1), "n {n}, {dims:?}: {hits:?}");
        }
    }
}

/// Every name in KERNELS is exported by the emulated library (as it must be in the PTX).
#[test]
fn every_listed_kernel_is_exported() {
    type Any = unsafe extern "C" fn();
    let emu = emulator();
    for name in KERNELS {
        // A zero-thread launch looks the symbol up without calling it.
        emu.launch(name, LaunchDims { grid: 0, block: 0 }, |_: Any| unreachable!());
    }
}
