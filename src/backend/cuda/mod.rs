//! The CUDA backend (cargo feature `cuda`): cudarc with dynamic loading, so the build needs no
//! CUDA toolkit. Every library cudarc would open is probed first with the same file names, since
//! cudarc panics on a missing one. Kernels are CUDA C in `shaders/cuda`, compiled with NVRTC.
//!
//! The executor realises the shared GPU plan (`backend::gpu`) with cudarc. Status: probing and
//! the NVRTC compilation of every kernel are tested without a GPU, and the whole path runs on
//! a CPU emulator of the driver, NVRTC and cuBLAS (tests/cuda.rs); it has not yet run
//! on a device.

mod executable;
pub mod gemm;
pub mod kernels;

pub use executable::CudaExecutable;

use super::{Backend, CompileOptions, DeviceInfo, Executable, Support};
use crate::error::{Error, Result};
use crate::graph::Graph;
use petgraph::stable_graph::NodeIndex;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

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

/// Device 0: its context, architecture and loaded kernel modules (streams belong to executables).
pub struct Device {
    pub ctx: Arc<cudarc::driver::CudaContext>,
    pub name: String,
    /// NVRTC virtual architecture of the device, e.g. `compute_90`.
    pub arch: &'static str,
    pub max_buffer_bytes: u64,
    modules: Mutex<HashMap<kernels::Unit, Arc<cudarc::driver::CudaModule>>>,
}

impl Device {
    /// The entry point `name` of `unit`, compiling and loading the module on first use.
    pub fn function(&self, unit: &kernels::Unit, name: &str) -> Result<cudarc::driver::CudaFunction> {
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        let module = match modules.get(unit) {
            Some(m) => m.clone(),
            None => {
                let ptx = kernels::ptx(unit, self.arch)?;
                let m = self.ctx.load_module(cudarc::nvrtc::Ptx::from_src(ptx)).map_err(|e| Error::Tensor(format!("loading {}: {e:?}", unit.file)))?;
                modules.insert(unit.clone(), m.clone());
                m
            }
        };
        module.load_function(name).map_err(|e| Error::Tensor(format!("kernel {name}: {e:?}")))
    }
}

static DEVICE: OnceLock<std::result::Result<Arc<Device>, String>> = OnceLock::new();

/// NVRTC virtual architectures this build names, newest first.
const ARCHES: [(i32, &str); 5] = [(100, "compute_100"), (90, "compute_90"), (89, "compute_89"), (86, "compute_86"), (80, "compute_80")];

/// Opens device 0 once per process, after probing every library cudarc will load.
pub fn device() -> Result<Arc<Device>> {
    DEVICE
        .get_or_init(|| {
            probe_libraries(&LIBRARIES)?;
            match cudarc::driver::CudaContext::device_count() {
                Ok(0) => return Err("no CUDA device found".into()),
                Err(e) => return Err(format!("the CUDA driver failed to initialise: {e:?}")),
                Ok(_) => {}
            }
            let ctx = cudarc::driver::CudaContext::new(0).map_err(|e| format!("opening device 0: {e:?}"))?;
            let (major, minor) = ctx.compute_capability().map_err(|e| format!("{e:?}"))?;
            let cc = major * 10 + minor;
            let arch = ARCHES.iter().find(|(v, _)| *v <= cc).map(|(_, a)| *a).ok_or_else(|| format!("compute capability {major}.{minor} is older than sm_80"))?;
            let name = ctx.name().unwrap_or_else(|_| "CUDA device".into());
            // Executables order their own streams with explicit events; cudarc's per-buffer event
            // tracking would put event waits into captured graphs. Turned off before any buffer
            // exists, as it requires.
            // SAFETY: every buffer belongs to one executable, which orders its streams itself.
            unsafe { ctx.disable_event_tracking() };
            Ok(Arc::new(Device { ctx, name, arch, max_buffer_bytes: 1 << 34, modules: Mutex::new(HashMap::new()) }))
        })
        .clone()
        .map_err(|reason| Error::DeviceUnavailable { device: "cuda".into(), reason })
}

pub struct CudaBackend {
    dev: Arc<Device>,
}

pub fn open() -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(CudaBackend { dev: device()? }))
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            name: "cuda".into(),
            kind: "gpu".into(),
            available: true,
            details: vec![("device".into(), self.dev.name.clone()), ("arch".into(), self.dev.arch.into())],
        }
    }

    fn supports(&self, graph: &Graph, n: NodeIndex) -> Support {
        super::gpu::support(graph, n, true)
    }

    fn compile(&self, graph: Arc<Graph>, options: &CompileOptions) -> Result<Arc<dyn Executable>> {
        Ok(Arc::new(CudaExecutable::new(self.dev.clone(), graph, options.f16, options.tf32)?))
    }
}
