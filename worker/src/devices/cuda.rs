//! CUDA GPUs, found at run time through the driver (`cuda` feature): index, name, memory,
//! compute capability and PCI bus id of each.
//!
//! Needs a GPU host to find anything; on the build machines only the "no driver" path runs.

use std::ffi::{CStr, c_char};

use cudarc::driver::{result, sys};
use shoal_common::proto::GpuInfo;

/// Long enough for "domain:bus:device.function" (the driver documents 13 characters).
const BUS_ID_BUFFER: usize = 32;

/// The GPUs, or (when there are none) why not.
pub fn gpus() -> (Vec<GpuInfo>, String) {
    // SAFETY: only checks whether the driver library can be loaded; never calls into it.
    if !unsafe { sys::is_culib_present() } {
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
        let attribute = |a| {
            // SAFETY: as above.
            unsafe { result::device::get_attribute(dev, a) }.map_or(0, |v| v.max(0) as u32)
        };
        out.push(GpuInfo {
            index,
            name,
            memory_bytes,
            pci_bus_id: pci_bus_id(dev),
            compute_capability_major: attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
            compute_capability_minor: attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
        });
    }
    let note =
        if out.is_empty() { "the CUDA driver reports no devices; training runs on CPU".into() } else { String::new() };
    (out, note)
}

/// "0000:18:00.0", or empty if the driver cannot say.
fn pci_bus_id(dev: sys::CUdevice) -> String {
    let mut buf = [0 as c_char; BUS_ID_BUFFER];
    // SAFETY: `dev` is a valid device of the initialised driver; it writes at most `len` bytes,
    // NUL included.
    let code = unsafe { sys::cuDeviceGetPCIBusId(buf.as_mut_ptr(), BUS_ID_BUFFER as i32, dev) };
    if code != sys::CUresult::CUDA_SUCCESS {
        return String::new();
    }
    // SAFETY: on success the buffer holds a NUL-terminated string (and was zeroed before).
    unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

/// The CUDA version the driver supports, e.g. (13, 0); `None` without a driver library.
pub fn driver_cuda_version() -> Option<Result<(u32, u32), sys::CUresult>> {
    // SAFETY: only checks whether the driver library can be loaded.
    if !unsafe { sys::is_culib_present() } {
        return None;
    }
    let mut v = 0;
    // SAFETY: the library loads (above); the call needs no initialisation and `v` is a valid
    // out-pointer.
    let code = unsafe { sys::cuDriverGetVersion(&mut v) };
    if code != sys::CUresult::CUDA_SUCCESS {
        return Some(Err(code));
    }
    Some(Ok(split_cuda_version(v.max(0) as u32)))
}

/// The CUDA version this binary was built against (cudarc's `cuda-*` feature), e.g. (12, 8).
pub fn built_for() -> (u32, u32) {
    split_cuda_version(sys::CUDA_VERSION)
}

/// CUDA encodes versions as 1000 x major + 10 x minor (12080 is 12.8).
pub fn split_cuda_version(v: u32) -> (u32, u32) {
    (v / 1000, (v % 1000) / 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_versions_decode() {
        assert_eq!(split_cuda_version(12080), (12, 8));
        assert_eq!(split_cuda_version(13000), (13, 0));
        assert_eq!(split_cuda_version(11040), (11, 4));
    }
}
