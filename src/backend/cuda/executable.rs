//! The shared GPU plan ([`crate::backend::gpu::GpuPlan`]) realised with cudarc: device buffers,
//! parameter arrays, kernel functions and pinned host staging made once per plan. A run is
//! asynchronous uploads from pinned memory, the plan's launches, downloads into pinned memory and
//! one synchronisation. The launches are captured into a CUDA graph on the first run and replayed
//! after that (one driver call instead of one per kernel; `HETSCHED_CUDA_GRAPHS=0` turns this
//! off), falling back to plain launches if capture fails. (cuBLAS GEMMs and a separate copy
//! stream are the next steps; this version has not run on a GPU yet.)

use super::kernels::{self, Unit};
use super::Device;
use crate::backend::gpu::lower::lower;
use crate::backend::gpu::{Elem, Kernel, OpSpec, BLOCK};
use crate::backend::Executable;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::tensor::{DType, Data, Tensor};
use cudarc::driver::{sys, CudaFunction, CudaGraph, CudaSlice, LaunchConfig, PinnedHostSlice, PushKernelArg};
use std::sync::{Arc, Mutex};

struct Step {
    func: CudaFunction,
    params: CudaSlice<u32>,
    bufs: Vec<usize>,
    cfg: LaunchConfig,
}

/// A captured launch sequence.
struct Replay(CudaGraph);
// SAFETY: a CUDA graph may be used from any thread as long as calls on it are serialised; it
// lives inside `State`, behind the executable's mutex.
unsafe impl Send for Replay {}

/// What runs take turns on.
struct State {
    buffers: Vec<CudaSlice<f32>>,
    /// Page-locked staging per input and per output, so copies are DMA transfers that do not
    /// block the host thread (pageable copies run at about a third of the speed).
    uploads: Vec<PinnedHostSlice<f32>>,
    downloads: Vec<PinnedHostSlice<f32>>,
    graph: Graphing,
}

enum Graphing {
    /// Capture on the next run.
    Pending,
    Ready(Replay),
    /// Capture failed or is turned off: launch kernel by kernel.
    Off,
}

pub struct CudaExecutable {
    dev: Arc<Device>,
    state: Mutex<State>,
    steps: Vec<Step>,
    inputs: Vec<(usize, String, Vec<usize>)>,
    outputs: Vec<(usize, Vec<usize>, DType)>,
}

fn cuda_err(e: impl std::fmt::Debug) -> Error {
    Error::Tensor(format!("CUDA: {e:?}"))
}

/// The translation unit and entry point of a launch.
fn entry(kernel: Kernel, op: OpSpec) -> Result<(Unit, &'static str)> {
    let elementwise = |op: String, binary: bool| Unit { file: "elementwise.cu", op, binary };
    let missing = || Error::Tensor(format!("{op:?} has no CUDA expression"));
    Ok(match kernel {
        Kernel::Copy => (elementwise(String::new(), false), "copy_f32"),
        Kernel::Where => (elementwise(String::new(), false), "where_f32"),
        Kernel::Gather => (elementwise(String::new(), false), "gather_f32"),
        Kernel::Unary => {
            let expr = match op {
                OpSpec::Unary(u) => kernels::unary_expr(u).ok_or_else(missing)?,
                OpSpec::Clip => kernels::EXTRA_UNARY[0].into(),
                OpSpec::Cast(to) => kernels::cast_expr(to).into(),
                _ => return Err(missing()),
            };
            (elementwise(expr, false), "unary_f32")
        }
        Kernel::Binary => {
            let OpSpec::Binary(b) = op else { return Err(missing()) };
            (elementwise(kernels::binary_expr(b).ok_or_else(missing)?.into(), true), "binary_f32")
        }
        Kernel::Matmul => (Unit { file: "nn.cu", op: String::new(), binary: false }, "matmul_f32"),
        Kernel::Conv2d => (Unit { file: "nn.cu", op: String::new(), binary: false }, "conv2d_f32"),
        Kernel::Pool2d => (Unit { file: "nn.cu", op: String::new(), binary: false }, "pool2d_f32"),
        Kernel::Rows => (Unit { file: "nn.cu", op: String::new(), binary: false }, "rows_f32"),
    })
}

impl CudaExecutable {
    pub fn new(dev: Arc<Device>, graph: Arc<Graph>) -> Result<Self> {
        let plan = lower(&graph, false, dev.max_buffer_bytes)?;
        if plan.buffers.iter().any(|b| b.elem != Elem::F32) {
            return Err(Error::Unsupported { node: String::new(), op: String::new(), what: "f16 storage on cuda".into() });
        }
        let stream = &dev.stream;
        let mut buffers = Vec::with_capacity(plan.buffers.len());
        for b in &plan.buffers {
            let host: Vec<f32> = match &b.init {
                Some(t) => crate::backend::gpu::layout::carrier(t),
                None => vec![0.0; b.len.max(1)],
            };
            let host = if host.is_empty() { vec![0.0] } else { host };
            buffers.push(stream.clone_htod(&host).map_err(cuda_err)?);
        }
        let mut steps = Vec::with_capacity(plan.launches.len());
        for l in &plan.launches {
            let (unit, name) = entry(l.kernel, l.op)?;
            let func = dev.function(&unit, name)?;
            let params = stream.clone_htod(if l.params.is_empty() { &[0u32][..] } else { &l.params }).map_err(cuda_err)?;
            let block = if l.kernel == Kernel::Matmul { (16, 16, 1) } else { (BLOCK, 1, 1) };
            let cfg = LaunchConfig { grid_dim: (l.grid[0], l.grid[1], l.grid[2]), block_dim: block, shared_mem_bytes: 0 };
            steps.push(Step { func, params, bufs: l.bufs.clone(), cfg });
        }
        let inputs: Vec<(usize, String, Vec<usize>)> = plan.inputs.iter().map(|i| (i.buffer, i.name.clone(), i.shape.clone())).collect();
        let outputs: Vec<(usize, Vec<usize>, DType)> = plan.outputs.iter().map(|o| (o.buffer, o.shape.clone(), o.dtype)).collect();
        let pinned = |len: usize, flags: u32| {
            // SAFETY: staging is always written (by the host or by a copy) before it is read.
            unsafe { dev.ctx.alloc_pinned_with_flags::<f32>(len.max(1), flags) }.map_err(cuda_err)
        };
        // Uploads are only written by the host: write-combined memory suits that; downloads are
        // read by the host, which write-combined memory makes very slow.
        let uploads = inputs.iter().map(|(_, _, shape)| pinned(shape.iter().product(), sys::CU_MEMHOSTALLOC_WRITECOMBINED)).collect::<Result<_>>()?;
        let downloads = outputs.iter().map(|(buf, _, _)| pinned(buffers[*buf].len(), 0)).collect::<Result<_>>()?;
        let graph = if std::env::var("HETSCHED_CUDA_GRAPHS").is_ok_and(|v| v == "0") { Graphing::Off } else { Graphing::Pending };
        let state = Mutex::new(State { buffers, uploads, downloads, graph });
        Ok(CudaExecutable { dev, state, steps, inputs, outputs })
    }
}

impl CudaExecutable {
    /// Queues every kernel of the plan on the stream.
    fn launch_all(&self, buffers: &[CudaSlice<f32>]) -> Result<()> {
        let stream = &self.dev.stream;
        for s in &self.steps {
            let mut launch = stream.launch_builder(&s.func);
            launch.arg(&s.params);
            for &b in &s.bufs {
                launch.arg(&buffers[b]);
            }
            // SAFETY: every kernel reads and writes only within the element counts its
            // parameters give, which the planner derived from these buffers' lengths.
            unsafe { launch.launch(s.cfg) }.map_err(cuda_err)?;
        }
        Ok(())
    }

    /// Captures the launches into a graph. On any failure the stream leaves capture mode and
    /// the error is returned (nothing captured has run).
    fn capture(&self, buffers: &[CudaSlice<f32>]) -> Result<Replay> {
        let stream = &self.dev.stream;
        stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL).map_err(cuda_err)?;
        let launched = self.launch_all(buffers);
        let ended = stream.end_capture(sys::CUgraphInstantiate_flags(0)).map_err(cuda_err);
        launched?;
        let graph = ended?.ok_or_else(|| Error::Tensor("CUDA: stream capture produced no graph".into()))?;
        graph.upload().map_err(cuda_err)?;
        Ok(Replay(graph))
    }
}

impl Executable for CudaExecutable {
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Input(format!("expected {} inputs, got {}", self.inputs.len(), inputs.len())));
        }
        let stream = &self.dev.stream;
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *guard;
        for (((buf, name, shape), t), staging) in self.inputs.iter().zip(&inputs).zip(&mut state.uploads) {
            if t.shape() != shape.as_slice() {
                return Err(Error::Input(format!("input '{name}' has shape {:?}, the plan expects {shape:?}", t.shape())));
            }
            if t.numel() > 0 {
                let host = crate::backend::gpu::layout::carrier(t);
                // Waits for the previous run's copy out of this staging buffer first.
                staging.as_mut_slice().map_err(cuda_err)?[..host.len()].copy_from_slice(&host);
                // The whole staging buffer (sized to this input): a pinned source keeps the copy
                // asynchronous, where a plain slice would make cudarc wait for it.
                stream.memcpy_htod(staging, &mut state.buffers[*buf]).map_err(cuda_err)?;
            }
        }
        if matches!(state.graph, Graphing::Pending) {
            state.graph = match self.capture(&state.buffers) {
                Ok(replay) => Graphing::Ready(replay),
                Err(e) => {
                    eprintln!("hetsched: CUDA graph capture failed, launching kernels one by one: {e}");
                    Graphing::Off
                }
            };
        }
        match &state.graph {
            Graphing::Ready(Replay(graph)) => graph.launch().map_err(cuda_err)?,
            _ => self.launch_all(&state.buffers)?,
        }
        for ((buf, _, _), staging) in self.outputs.iter().zip(&mut state.downloads) {
            stream.memcpy_dtoh(&state.buffers[*buf], staging).map_err(cuda_err)?;
        }
        stream.synchronize().map_err(cuda_err)?;
        let mut outs = Vec::with_capacity(self.outputs.len());
        for ((_, shape, dtype), staging) in self.outputs.iter().zip(&state.downloads) {
            let n: usize = shape.iter().product();
            let v = staging.as_slice().map_err(cuda_err)?[..n].to_vec();
            let t = Tensor::from_f32(shape, v)?;
            outs.push(if *dtype == DType::F32 {
                t
            } else if dtype.is_float() {
                crate::backend::cpu::elementwise::cast(&t, *dtype)?
            } else {
                let rounded: Vec<f64> = t.to_f64_vec().iter().map(|v| v.round()).collect();
                crate::backend::cpu::elementwise::cast(&Tensor::new(shape.clone(), Data::F64(rounded))?, *dtype)?
            });
        }
        Ok(outs)
    }
}
