//! The wgpu backend: the portable GPU device (Vulkan, Metal, DX12, GL). Every tensor lives on
//! the device as f32 (integer and bool tensors too, exactly while |v| < 2^24: indices, masks);
//! values convert at upload and download. One adapter per process, chosen once.

mod executable;
pub mod kernels;
mod plan;

pub use executable::WgpuExecutable;

use super::{Backend, CompileOptions, DeviceInfo, Executable, Support};
use crate::error::{Error, Result};
use crate::graph::{Graph, Op, PoolKind};
use crate::tensor::DType;
use kernels::{Elem, Kernel};
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
        .get_or_init(|| pollster::block_on(open()))
        .clone()
        .map_err(|reason| Error::DeviceUnavailable { device: "wgpu".into(), reason })
}

async fn open() -> std::result::Result<Arc<Context>, String> {
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
    Ok(Arc::new(Context { device, queue, info, limits, has_f16, pipelines: Mutex::new(HashMap::new()) }))
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
        support(graph, n)
    }

    fn compile(&self, graph: Arc<Graph>, options: &CompileOptions) -> Result<Arc<dyn Executable>> {
        if options.f16 && !self.ctx.has_f16 {
            return Err(Error::DeviceUnavailable { device: "wgpu".into(), reason: format!("adapter '{}' lacks shader-f16", self.ctx.info.name) });
        }
        Ok(Arc::new(WgpuExecutable::new(self.ctx.clone(), graph, options.f16)?))
    }
}

/// Whether the wgpu kernels cover `n` with its inferred types (static shapes, rank <= 6,
/// f32 data; integer and bool tensors only where f32 carries them exactly).
pub fn support(graph: &Graph, n: NodeIndex) -> Support {
    let node = &graph.g[n];
    if matches!(node.op, Op::Input | Op::Constant { .. }) || node.outputs.iter().all(|v| v.value.is_some()) {
        return Support::Yes;
    }
    let ins: Vec<Option<&crate::graph::Value>> = (0..node.num_inputs).map(|i| graph.input_value(n, i)).collect();
    if node.outputs.iter().chain(ins.iter().flatten().copied()).any(|v| v.shape.is_none()) {
        return Support::No("shapes known only at run time".into());
    }
    if node.outputs.iter().chain(ins.iter().flatten().copied()).any(|v| v.shape.as_ref().is_some_and(|s| s.len() > 6)) {
        return Support::No("rank above 6".into());
    }
    let dt = |i: usize| ins.get(i).copied().flatten().and_then(|v| v.dtype);
    // Integer constants are parameters (axes, shapes), not data the kernels read.
    let all_f32 = ins.iter().flatten().filter(|v| v.value.is_none() || v.dtype.is_some_and(|d| d.is_float())).all(|v| v.dtype == Some(DType::F32));
    let carried = |d: Option<DType>| matches!(d, Some(DType::F32 | DType::I64 | DType::I32 | DType::Bool | DType::I8 | DType::U8));
    let ok = match &node.op {
        Op::Identity | Op::Flatten { .. } | Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } | Op::Transpose { .. } | Op::Slice | Op::Expand | Op::Concat { .. } => carried(dt(0)),
        Op::Unary(u) => (all_f32 && kernels::unary_expr(*u).is_some()) || (*u == crate::graph::UnaryOp::Not && dt(0) == Some(DType::Bool)),
        Op::Binary(b) => kernels::binary_expr(*b).is_some() && (all_f32 || ((b.is_comparison() || b.is_logical()) && carried(dt(0)))),
        Op::Where => dt(0) == Some(DType::Bool) && carried(dt(1)),
        Op::Clip { .. } => all_f32 && (1..3).all(|i| ins.get(i).copied().flatten().is_none_or(|v| v.value.is_some())),
        Op::Cast { to } => carried(dt(0)) && carried(Some(*to)),
        Op::CastLike => carried(dt(0)) && carried(dt(1)),
        Op::ArgExtreme { .. } => all_f32,
        Op::RmsNorm { .. } => all_f32 && plan::rms_len(graph, n).is_some(),
        Op::Conv { .. } => all_f32 && matches!(ins[0].and_then(|v| v.shape.as_ref()).map(|s| s.len()), Some(3 | 4)),
        Op::Pool { kind, .. } => all_f32 && !matches!(kind, PoolKind::Lp { .. }) && matches!(ins[0].and_then(|v| v.shape.as_ref()).map(|s| s.len()), Some(3 | 4)),
        Op::GlobalPool { kind } => all_f32 && !matches!(kind, PoolKind::Lp { .. }),
        Op::Reduce { .. } => all_f32 && plan::reduce_plan(graph, n).is_some(),
        Op::Softmax { axis, legacy, .. } => {
            let r = ins[0].and_then(|v| v.shape.as_ref()).map(|s| s.len()).unwrap_or(0) as i64;
            all_f32 && (*legacy || *axis == -1 || *axis == r - 1)
        }
        Op::LayerNorm { .. } => all_f32 && node.outputs.iter().skip(1).all(|v| v.name.is_empty()),
        Op::Gemm { .. } => all_f32,
        Op::MatMul => all_f32 && plan::matmul_batches(graph, n).is_some(),
        Op::Gather { .. } => carried(dt(0)) && matches!(dt(1), Some(DType::I64 | DType::I32)),
        _ => false,
    };
    if ok {
        Support::Yes
    } else {
        let types: Vec<String> = ins.iter().map(|v| v.and_then(|v| v.dtype).map(|d| d.to_string()).unwrap_or_else(|| "-".into())).collect();
        Support::No(format!("{} with inputs ({}) has no wgpu kernel", node.op.name(), types.join(", ")))
    }
}
