//! NVML, NVIDIA's management library (`libnvidia-ml.so.1`, installed with the driver), loaded at
//! run time: the driver's and NVML's versions, and each GPU's memory in use and utilisation.
//!
//! Plain `libloading` and the few declarations below, written from NVML's documented C API:
//! nothing is needed at build time, so this compiles with or without the `cuda` feature. Nothing
//! is called unless the library loaded and `nvmlInit_v2` succeeded; a missing library or symbol
//! is an error, never a panic.
//!
//! Only the "not found" path runs on the machines that build and test Shoal (no driver there);
//! the rest needs an NVIDIA driver and is exercised by `shoal-worker devices` on a GPU host.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};

use libloading::Library;

/// Names tried, in order: the versioned name the driver installs, then the development symlink.
pub const LIBRARY_NAMES: [&str; 2] = ["libnvidia-ml.so.1", "libnvidia-ml.so"];

/// Size NVML documents for its version strings (`NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE` and
/// `NVML_SYSTEM_NVML_VERSION_BUFFER_SIZE`).
const VERSION_BUFFER: usize = 80;

/// `nvmlReturn_t`: a C enum, 0 for success.
type Return = c_int;
const SUCCESS: Return = 0;
/// `NVML_ERROR_NOT_SUPPORTED`: the query does not apply to this GPU (utilisation under MIG).
const NOT_SUPPORTED: Return = 3;

/// `nvmlDevice_t`: an opaque handle owned by NVML.
type Device = *mut c_void;

/// `nvmlMemory_t`.
#[repr(C)]
#[derive(Default)]
struct Memory {
    total: u64,
    free: u64,
    used: u64,
}

/// `nvmlUtilization_t`: percentages over the last sample period.
#[repr(C)]
#[derive(Default)]
struct Utilization {
    gpu: c_uint,
    memory: c_uint,
}

/// Why NVML cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum NvmlError {
    /// No NVIDIA driver here (or not on the loader's path).
    #[error("libnvidia-ml not found (tried {})", tried.join(", "))]
    NotFound { tried: Vec<String>, source: libloading::Error },
    /// The library is older than the functions used here.
    #[error("libnvidia-ml has no {symbol}")]
    MissingSymbol { symbol: &'static str, source: libloading::Error },
    /// An NVML call returned an error code (`message` is NVML's own description of it).
    #[error("{call} failed: {message} (NVML code {code})")]
    Call { call: &'static str, code: i32, message: String },
    /// A PCI bus id that cannot be passed to C.
    #[error("PCI bus id {id:?} contains a NUL byte")]
    BusId { id: String },
}

/// Which GPU to ask about.
#[derive(Clone, Copy, Debug)]
pub enum Gpu<'a> {
    /// NVML's own index (PCI order; CUDA's order may differ).
    Index(u32),
    /// "domain:bus:device.function", as the CUDA driver reports it: the same GPU CUDA means.
    PciBusId(&'a str),
}

/// One sample of a GPU's use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    /// `None` where the GPU cannot report it (MIG instances, some virtual GPUs).
    pub utilization_percent: Option<u32>,
}

/// The functions used, with their documented C signatures.
#[derive(Clone, Copy)]
struct Api {
    init: unsafe extern "C" fn() -> Return,
    shutdown: unsafe extern "C" fn() -> Return,
    error_string: unsafe extern "C" fn(Return) -> *const c_char,
    driver_version: unsafe extern "C" fn(*mut c_char, c_uint) -> Return,
    nvml_version: unsafe extern "C" fn(*mut c_char, c_uint) -> Return,
    count: unsafe extern "C" fn(*mut c_uint) -> Return,
    by_index: unsafe extern "C" fn(c_uint, *mut Device) -> Return,
    by_bus_id: unsafe extern "C" fn(*const c_char, *mut Device) -> Return,
    memory: unsafe extern "C" fn(Device, *mut Memory) -> Return,
    utilization: unsafe extern "C" fn(Device, *mut Utilization) -> Return,
}

/// NVML, loaded and initialised; shut down when dropped. NVML is thread-safe, so one instance
/// can be shared (`Arc`) between the session task and job threads.
pub struct Nvml {
    api: Api,
    // Dropped after `Drop::drop` has called nvmlShutdown: the function pointers in `api` point
    // into it.
    _library: Library,
}

/// Looks `name` up in `library`.
///
/// # Safety
/// `T` must be the C signature of `name`.
unsafe fn symbol<T: Copy>(library: &Library, name: &'static str) -> Result<T, NvmlError> {
    // SAFETY: the caller vouches for the signature; the pointer is used only while `library` is
    // loaded (both live in `Nvml`).
    unsafe { library.get::<T>(name) }.map(|s| *s).map_err(|source| NvmlError::MissingSymbol { symbol: name, source })
}

impl Nvml {
    /// Loads the library and initialises NVML.
    pub fn open() -> Result<Self, NvmlError> {
        // SAFETY: loading runs libnvidia-ml's initialisers, which only set up its own state.
        let mut loaded = unsafe { Library::new(LIBRARY_NAMES[0]) };
        for name in &LIBRARY_NAMES[1..] {
            if loaded.is_ok() {
                break;
            }
            // SAFETY: as above.
            loaded = unsafe { Library::new(*name) };
        }
        let library = loaded.map_err(|source| NvmlError::NotFound {
            tried: LIBRARY_NAMES.iter().map(|n| n.to_string()).collect(),
            source,
        })?;
        // SAFETY: each type below is the signature NVML documents for that name (nvml.h).
        let api = unsafe {
            Api {
                init: symbol(&library, "nvmlInit_v2")?,
                shutdown: symbol(&library, "nvmlShutdown")?,
                error_string: symbol(&library, "nvmlErrorString")?,
                driver_version: symbol(&library, "nvmlSystemGetDriverVersion")?,
                nvml_version: symbol(&library, "nvmlSystemGetNVMLVersion")?,
                count: symbol(&library, "nvmlDeviceGetCount_v2")?,
                by_index: symbol(&library, "nvmlDeviceGetHandleByIndex_v2")?,
                by_bus_id: symbol(&library, "nvmlDeviceGetHandleByPciBusId_v2")?,
                memory: symbol(&library, "nvmlDeviceGetMemoryInfo")?,
                utilization: symbol(&library, "nvmlDeviceGetUtilizationRates")?,
            }
        };
        // SAFETY: no arguments; may be called from any thread.
        check(&api, "nvmlInit_v2", unsafe { (api.init)() })?;
        Ok(Self { api, _library: library })
    }

    /// The driver's version, e.g. "580.82.07".
    pub fn driver_version(&self) -> Result<String, NvmlError> {
        self.text("nvmlSystemGetDriverVersion", self.api.driver_version)
    }

    /// NVML's own version, e.g. "13.580.82.07".
    pub fn version(&self) -> Result<String, NvmlError> {
        self.text("nvmlSystemGetNVMLVersion", self.api.nvml_version)
    }

    /// GPUs the driver sees (all of them: `CUDA_VISIBLE_DEVICES` does not apply to NVML).
    pub fn count(&self) -> Result<u32, NvmlError> {
        let mut n: c_uint = 0;
        // SAFETY: NVML is initialised and `n` is a valid out-pointer.
        self.check("nvmlDeviceGetCount_v2", unsafe { (self.api.count)(&mut n) })?;
        Ok(n)
    }

    /// Memory in use and utilisation of one GPU, now.
    pub fn usage(&self, gpu: Gpu<'_>) -> Result<Usage, NvmlError> {
        let device = self.device(gpu)?;
        let mut memory = Memory::default();
        // SAFETY: `device` came from NVML just now; `memory` is a valid nvmlMemory_t.
        self.check("nvmlDeviceGetMemoryInfo", unsafe { (self.api.memory)(device, &mut memory) })?;
        let mut rates = Utilization::default();
        // SAFETY: as above, with a valid nvmlUtilization_t.
        let utilization_percent = match unsafe { (self.api.utilization)(device, &mut rates) } {
            NOT_SUPPORTED => None,
            code => {
                self.check("nvmlDeviceGetUtilizationRates", code)?;
                Some(rates.gpu)
            }
        };
        Ok(Usage { memory_used_bytes: memory.used, memory_total_bytes: memory.total, utilization_percent })
    }

    fn device(&self, gpu: Gpu<'_>) -> Result<Device, NvmlError> {
        let mut device: Device = std::ptr::null_mut();
        match gpu {
            Gpu::Index(i) => {
                // SAFETY: NVML is initialised and `device` is a valid out-pointer.
                self.check("nvmlDeviceGetHandleByIndex_v2", unsafe { (self.api.by_index)(i, &mut device) })?;
            }
            Gpu::PciBusId(id) => {
                let c = CString::new(id).map_err(|_| NvmlError::BusId { id: id.to_owned() })?;
                // SAFETY: `c` is NUL-terminated and outlives the call; `device` is a valid out-pointer.
                self.check("nvmlDeviceGetHandleByPciBusId_v2", unsafe {
                    (self.api.by_bus_id)(c.as_ptr(), &mut device)
                })?;
            }
        }
        Ok(device)
    }

    fn text(
        &self,
        call: &'static str,
        f: unsafe extern "C" fn(*mut c_char, c_uint) -> Return,
    ) -> Result<String, NvmlError> {
        let mut buf = [0 as c_char; VERSION_BUFFER];
        // SAFETY: NVML writes at most `VERSION_BUFFER` bytes, NUL included, into `buf`.
        self.check(call, unsafe { f(buf.as_mut_ptr(), VERSION_BUFFER as c_uint) })?;
        // SAFETY: on success the buffer holds a NUL-terminated string; the last byte is never
        // written past, and a zeroed buffer ends in NUL anyway.
        Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
    }

    fn check(&self, call: &'static str, code: Return) -> Result<(), NvmlError> {
        check(&self.api, call, code)
    }
}

/// Turns an NVML return code into a result, with NVML's description of a failure.
fn check(api: &Api, call: &'static str, code: Return) -> Result<(), NvmlError> {
    if code == SUCCESS {
        return Ok(());
    }
    // SAFETY: nvmlErrorString may be called before initialisation and returns a static
    // NUL-terminated string (or null).
    let text = unsafe { (api.error_string)(code) };
    let message = if text.is_null() {
        "unknown error".to_owned()
    } else {
        // SAFETY: non-null, NUL-terminated and static (see above).
        unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
    };
    Err(NvmlError::Call { call, code, message })
}

impl Drop for Nvml {
    fn drop(&mut self) {
        // SAFETY: balances the successful nvmlInit_v2 of `open`; NVML counts them.
        let _ = unsafe { (self.api.shutdown)() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a driver (the build machines) this is the "not found" path; on a GPU host it
    /// checks that the version queries answer.
    #[test]
    fn opens_or_names_every_library_it_tried() {
        match Nvml::open() {
            Ok(nvml) => {
                assert!(!nvml.driver_version().expect("driver version").is_empty());
                assert!(!nvml.version().expect("NVML version").is_empty());
            }
            Err(e @ NvmlError::NotFound { .. }) => {
                let text = e.to_string();
                for name in LIBRARY_NAMES {
                    assert!(text.contains(name), "{text}");
                }
            }
            // The library is there but no driver runs (a container without the GPU passed in).
            Err(NvmlError::Call { call, .. }) => assert_eq!(call, "nvmlInit_v2"),
            Err(e) => panic!("unexpected NVML error: {e}"),
        }
    }
}
