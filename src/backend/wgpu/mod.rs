//! The wgpu backend: the portable GPU device (Vulkan, Metal, DX12, GL). Every tensor lives on
//! the device as f32 (integer and bool tensors too, exactly while |v| < 2^24: indices, masks);
//! values convert at upload and download. One adapter per process, chosen once.

mod executable;
pub mod kernels;

pub use executable::WgpuExecutable;

use super::gpu::{self, Elem, Kernel};
use super::{Backend, CompileOptions, DeviceInfo, Executable, Support};
use crate::error::{Error, Result};
use crate::graph::Graph;
use petgraph::stable_graph::NodeIndex;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The process-wide device, its queue and the compiled pipelines.
pub struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub has_f16: bool,
    /// Threads the driver started while the device opened (lavapipe's rasteriser and queue
    /// threads), moved onto the cores a session gives wgpu.
    pub driver_threads: Vec<i32>,
    pipelines: Mutex<HashMap<(Kernel, String, Vec<Elem>), Arc<wgpu::ComputePipeline>>>,
}

impl Context {
    /// The pipeline for `kernel` specialised with `op` and binding types, compiled on first use
    /// and cached.
    pub fn pipeline(&self, kernel: Kernel, op: &str, types: &[Elem]) -> Result<Arc<wgpu::ComputePipeline>> {
        let key = (kernel, op.to_string(), types.to_vec());
        let mut cache = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        // Capture validation errors instead of letting wgpu's default handler panic.
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let src = kernels::source(kernel, op, types);
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(&format!("{kernel:?}")), source: wgpu::ShaderSource::Wgsl(src.into()) });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&format!("{kernel:?}")),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Tensor(format!("wgpu kernel {kernel:?} [{op}] {types:?} failed to build: {e}")));
        }
        let p = Arc::new(pipeline);
        cache.insert(key, p.clone());
        Ok(p)
    }
}

static CONTEXT: OnceLock<std::result::Result<Arc<Context>, String>> = OnceLock::new();

/// Finds an adapter (`HETSCHED_WGPU_ADAPTER=<name substring>` picks one by name;
/// `HETSCHED_WGPU_POWER=low|high` sets the preference) and opens a device on it.
pub fn context() -> Result<Arc<Context>> {
    CONTEXT
        .get_or_init(|| {
            let (opened, started) = crate::affinity::threads_started_by(|| pollster::block_on(open()));
            opened.map(|ctx| Arc::new(Context { driver_threads: started, ..ctx }))
        })
        .clone()
        .map_err(|reason| Error::DeviceUnavailable { device: "wgpu".into(), reason })
}

async fn open() -> std::result::Result<Context, String> {
    let instance = wgpu::Instance::new(
        // Vulkan, Metal, DX12 by default (GL probing through EGL is noisy); WGPU_BACKEND=gl opts in.
        wgpu::InstanceDescriptor { backends: wgpu::Backends::PRIMARY, ..wgpu::InstanceDescriptor::new_without_display_handle() }.with_env(),
    );
    let adapter = match std::env::var("HETSCHED_WGPU_ADAPTER") {
        Ok(want) => {
            let all = instance.enumerate_adapters(wgpu::Backends::all()).await;
            let names: Vec<String> = all.iter().map(|a| a.get_info().name).collect();
            all.into_iter()
                .find(|a| a.get_info().name.to_lowercase().contains(&want.to_lowercase()))
                .ok_or_else(|| format!("no adapter matches HETSCHED_WGPU_ADAPTER='{want}' (found: {names:?})"))?
        }
        Err(_) => {
            let power = match std::env::var("HETSCHED_WGPU_POWER").as_deref() {
                Ok("low") => wgpu::PowerPreference::LowPower,
                _ => wgpu::PowerPreference::HighPerformance,
            };
            instance
                .request_adapter(&wgpu::RequestAdapterOptions { power_preference: power, ..Default::default() })
                .await
                .map_err(|e| format!("no adapter found ({e}); on a machine without a GPU install Mesa's lavapipe (mesa-vulkan-drivers)"))?
        }
    };
    let info = adapter.get_info();
    let limits = adapter.limits();
    let has_f16 = adapter.features().contains(wgpu::Features::SHADER_F16);
    let (device, queue) = adapter
        .request_device(&wgpu::DeviceDescriptor {
            label: Some("hetsched"),
            required_features: if has_f16 { wgpu::Features::SHADER_F16 } else { wgpu::Features::empty() },
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        })
        .await
        .map_err(|e| format!("adapter '{}' refused a device: {e}", info.name))?;
    Ok(Context { device, queue, info, limits, has_f16, driver_threads: vec![], pipelines: Mutex::new(HashMap::new()) })
}

pub struct WgpuBackend {
    ctx: Arc<Context>,
}

impl WgpuBackend {
    pub fn new() -> Result<Self> {
        Ok(WgpuBackend { ctx: context()? })
    }
}

impl Backend for WgpuBackend {
    fn name(&self) -> &'static str {
        "wgpu"
    }

    fn info(&self) -> DeviceInfo {
        let i = &self.ctx.info;
        DeviceInfo {
            name: "wgpu".into(),
            kind: "gpu".into(),
            available: true,
            details: vec![
                ("adapter".into(), i.name.clone()),
                ("backend".into(), format!("{:?}", i.backend)),
                ("type".into(), format!("{:?}", i.device_type)),
                ("driver".into(), format!("{} {}", i.driver, i.driver_info)),
                ("shader-f16".into(), self.ctx.has_f16.to_string()),
                ("max_storage_buffer_binding_size".into(), self.ctx.limits.max_storage_buffer_binding_size.to_string()),
                ("max_compute_workgroups_per_dimension".into(), self.ctx.limits.max_compute_workgroups_per_dimension.to_string()),
            ],
        }
    }

    fn supports(&self, graph: &Graph, n: NodeIndex) -> Support {
        gpu::support(graph, n, self.ctx.has_f16)
    }

    fn compile(&self, graph: Arc<Graph>, options: &CompileOptions) -> Result<Arc<dyn Executable>> {
        if options.f16 && !self.ctx.has_f16 {
            return Err(Error::DeviceUnavailable { device: "wgpu".into(), reason: format!("adapter '{}' lacks shader-f16", self.ctx.info.name) });
        }
        let cores = options.cores_for("wgpu");
        if !cores.is_empty() {
            // The device is the process's: its driver threads follow the latest cores asked for.
            crate::affinity::pin_threads(&self.ctx.driver_threads, cores)?;
        }
        Ok(Arc::new(WgpuExecutable::new(self.ctx.clone(), graph, options.f16)?))
    }
}

