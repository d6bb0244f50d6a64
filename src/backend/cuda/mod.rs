//! The CUDA backend (cargo feature `cuda`): cudarc with dynamic loading, so the build needs no
//! CUDA toolkit. Every library cudarc would open is probed first with the same file names, since
//! cudarc panics on a missing one. Kernels are CUDA C in `shaders/cuda`, compiled with NVRTC.
//!
//! Status: probing, kernel sources and their NVRTC compilation are in place and tested; the
//! executor (device buffers, launches, cuBLAS GEMMs, streams, graph capture) is the next step, so
//! the device reports itself unavailable with that reason.

pub mod kernels;

use crate::error::{Error, Result};

/// The libraries the backend needs, as cudarc names them.
pub const LIBRARIES: [&str; 3] = ["cuda", "nvrtc", "cublas"];

/// Checks that each named CUDA library can be loaded, trying the names cudarc tries. Returns
/// the first one that cannot, with the names searched.
pub fn probe_libraries(names: &[&str]) -> std::result::Result<(), String> {
    for lib in names {
        let candidates = cudarc::get_lib_name_candidates(lib);
        // SAFETY: loading a shared library runs its initialisers; these are NVIDIA's own
        // libraries, the same ones cudarc itself would load.
        let found = candidates.iter().any(|c| unsafe { libloading::Library::new(c) }.is_ok());
        if !found {
            return Err(format!("lib{lib} not found (searched {candidates:?}; set LD_LIBRARY_PATH)"));
        }
    }
    Ok(())
}

/// Why the CUDA device cannot be used on this machine, if it cannot.
pub fn unavailable_reason() -> String {
    if let Err(e) = probe_libraries(&LIBRARIES) {
        return e;
    }
    match cudarc::driver::CudaContext::device_count() {
        Ok(0) => "no CUDA device found".into(),
        Err(e) => format!("the CUDA driver failed to initialise: {e:?}"),
        Ok(n) => format!("{n} CUDA device(s) found, but hetsched's CUDA executor is not built yet (kernels compile; see issue notes)"),
    }
}

pub fn open() -> Result<std::sync::Arc<dyn super::Backend>> {
    Err(Error::DeviceUnavailable { device: "cuda".into(), reason: unavailable_reason() })
}
