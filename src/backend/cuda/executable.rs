//! The shared GPU plan ([`crate::backend::gpu::GpuPlan`]) realised with cudarc: device buffers,
//! parameter arrays, kernel functions and pinned host staging made once per plan. A run is
//! asynchronous uploads from pinned memory on the copy stream, the plan's launches on the compute
//! stream once an event says the uploads are in, downloads into pinned memory on the copy stream
//! once the kernels are done, and one synchronisation. The launches are captured into a CUDA
//! graph on the first run and replayed after that (one driver call instead of one per kernel;
//! `HETSCHED_CUDA_GRAPHS=0` turns this off), falling back to plain launches if capture fails.
//! Matmul launches (which include every ungrouped convolution: the lowering turns them into
//! im2col + GEMM) run through cuBLAS, f32 unless the session allows TF32. Checked on the CPU
//! emulator of the driver (tests/cuda.rs); not yet run on a GPU.

use super::kernels::{self, Unit};
use super::Device;
use super::gemm::{epilogue_params, gemm_spec, GemmSpec};
use crate::backend::gpu::layout::{buffer_bytes, decode, encode, encode_into, grid, output_tensor};
use crate::backend::gpu::lower::{lower, LowerOptions};
use crate::backend::gpu::{Elem, Kernel, OpSpec, BLOCK};
use crate::backend::{Executable, Profile, RunStats};
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::tensor::{DType, Tensor};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{sys, CudaEvent, CudaStream, CudaFunction, CudaGraph, CudaSlice, DevicePtr, LaunchConfig, PinnedHostSlice, PushKernelArg};
use std::sync::{Arc, Mutex};

enum Step {
    Kernel { func: CudaFunction, params: CudaSlice<u32>, bufs: Vec<usize>, cfg: LaunchConfig },
    /// C = alpha * first * second in cuBLAS's column-major terms (buffers: first, second, C).
    Gemm { spec: GemmSpec, bufs: [usize; 3], operands: Elem, out: Elem },
}

/// A step and what it is, for `HETSCHED_PROFILE` (then runs launch step by step between timing
/// events instead of replaying the graph).
struct Labelled {
    what: Step,
    kind: String,
    detail: String,
}

/// A captured launch sequence.
struct Replay(CudaGraph);
// SAFETY: a CUDA graph may be used from any thread as long as calls on it are serialised; it
// lives inside `State`, behind the executable's mutex.
unsafe impl Send for Replay {}

/// What runs take turns on.
struct State {
    buffers: Vec<CudaSlice<u8>>,
    /// Page-locked staging per input and per output, so copies are DMA transfers that do not
    /// block the host thread (pageable copies run at about a third of the speed).
    uploads: Vec<PinnedHostSlice<u8>>,
    downloads: Vec<PinnedHostSlice<u8>>,
    /// Ordering between the copy stream and the compute stream; `started` and `computed`
    /// (timing events) bracket the kernels for `RunStats::device_ms`.
    uploaded: CudaEvent,
    started: CudaEvent,
    computed: CudaEvent,
    /// Timing events around each step when profiling.
    marks: Vec<CudaEvent>,
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
    /// Kernels and cuBLAS, captured into graphs. Each executable has its own streams: a stream
    /// being captured must not receive another plan's work.
    stream: Arc<CudaStream>,
    /// Host<->device copies, ordered against `stream` by events.
    copies: Arc<CudaStream>,
    /// cuBLAS bound to `stream` and its workspace, if the plan has GEMMs.
    blas: Option<(CudaBlas, CudaSlice<u8>)>,
    state: Mutex<State>,
    steps: Vec<Labelled>,
    tf32: bool,
    /// Storage type of each buffer.
    elems: Vec<Elem>,
    profile: Profile,
    inputs: Vec<(usize, String, Vec<usize>)>,
    outputs: Vec<(usize, Vec<usize>, DType)>,
    run_check: Option<crate::backend::gpu::RunCheck>,
    memory: crate::backend::MemoryUse,
}

// The rows kernel gives each row one warp: blocks must hold whole warps.
const _: () = assert!(BLOCK % 32 == 0);

/// `threads` one-dimensional threads in BLOCK-wide blocks (a 2-D grid past 65535 blocks).
fn linear_launch(threads: usize) -> LaunchConfig {
    let g = grid(threads);
    LaunchConfig { grid_dim: (g[0], g[1], g[2]), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

/// cuBLAS workspace per handle: NVIDIA's recommendation for Hopper and later (more than older
/// parts need).
const BLAS_WORKSPACE: usize = 32 << 20;

/// A cuBLAS handle on `stream` with a workspace of its own. Without one cuBLAS allocates during
/// graph capture (memory nodes in the graph, and before CUDA 12.2 a new workspace per capture).
fn blas_on(stream: &Arc<CudaStream>) -> Result<(CudaBlas, CudaSlice<u8>)> {
    let failed = |what: &str, e: &dyn std::fmt::Debug| Error::DeviceUnavailable { device: "cuda".into(), reason: format!("{what}: {e:?}") };
    let blas = CudaBlas::new(stream.clone()).map_err(|e| failed("creating a cuBLAS handle", &e))?;
    // SAFETY: cuBLAS only uses the workspace as scratch; nothing reads it uninitialised.
    let workspace = unsafe { stream.alloc::<u8>(BLAS_WORKSPACE) }.map_err(cuda_err)?;
    let status = {
        let (ptr, _sync) = workspace.device_ptr(stream);
        // SAFETY: the workspace lives as long as the handle (both are kept together) and only
        // this handle, on this stream, uses it.
        unsafe { cudarc::cublas::sys::cublasSetWorkspace_v2(*blas.handle(), ptr as *mut _, BLAS_WORKSPACE) }
    };
    if status != cudarc::cublas::sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        return Err(failed("setting the cuBLAS workspace", &status));
    }
    Ok((blas, workspace))
}

fn cuda_err(e: impl std::fmt::Debug) -> Error {
    Error::Tensor(format!("CUDA: {e:?}"))
}

/// The translation unit and entry point of a launch whose buffers are stored as `types`.
fn entry(kernel: Kernel, op: OpSpec, types: &[Elem]) -> Result<(Unit, &'static str)> {
    let elementwise = |op: String, binary: bool| Unit::new("elementwise.cu", op, binary, types);
    let nn = || Unit::new("nn.cu", String::new(), false, types);
    let missing = || Error::Tensor(format!("{op:?} has no CUDA expression"));
    Ok(match kernel {
        Kernel::Copy => (elementwise(String::new(), false), "copy"),
        Kernel::Where => (elementwise(String::new(), false), "select_where"),
        Kernel::Gather => (elementwise(String::new(), false), "gather"),
        Kernel::Taps => (elementwise(String::new(), false), "taps"),
        Kernel::Scan => (elementwise(String::new(), false), "scan"),
        Kernel::TopK => (elementwise(String::new(), false), "topk"),
        Kernel::Elements => (elementwise(String::new(), false), "elements"),
        Kernel::Nd => (elementwise(String::new(), false), "nd"),
        Kernel::GridSample => (nn(), "grid_sample"),
        Kernel::Unary => {
            let expr = match op {
                OpSpec::Unary(u) => kernels::unary_expr(u).ok_or_else(missing)?,
                OpSpec::Clip => kernels::EXTRA_UNARY[0].into(),
                OpSpec::Cast(to) => kernels::cast_expr(to).into(),
                _ => return Err(missing()),
            };
            (elementwise(expr, false), "unary")
        }
        Kernel::Binary => {
            let OpSpec::Binary(b) = op else { return Err(missing()) };
            (elementwise(kernels::binary_expr(b).ok_or_else(missing)?.into(), true), "binary")
        }
        Kernel::Matmul => (nn(), "matmul"),
        Kernel::Conv2d => (nn(), "conv2d"),
        Kernel::Pool => (nn(), "pool"),
        Kernel::Im2col => (nn(), "im2col"),
        Kernel::Rows => (nn(), "rows"),
    })
}

impl CudaExecutable {
    pub fn new(dev: Arc<Device>, graph: Arc<Graph>, f16: bool, tf32: bool) -> Result<Self> {
        let plan = lower(&graph, LowerOptions { f16, max_bytes: dev.max_buffer_bytes, conv_as_gemm: true })?;
        // Created streams, not the legacy default one, which cannot be captured into graphs.
        let stream = dev.ctx.new_stream().map_err(cuda_err)?;
        let copies = dev.ctx.new_stream().map_err(cuda_err)?;
        let mut blas = None;
        let elems: Vec<Elem> = plan.buffers.iter().map(|b| b.elem).collect();
        let mut buffers = Vec::with_capacity(plan.buffers.len());
        for b in &plan.buffers {
            let host = match &b.init {
                Some(t) => encode(t, b.elem),
                None => vec![0u8; buffer_bytes(b.len, b.elem)],
            };
            buffers.push(stream.clone_htod(&host).map_err(cuda_err)?);
        }
        let mut steps = Vec::with_capacity(plan.launches.len());
        // HETSCHED_CUDA_GEMM=kernel runs every Matmul in the tiled kernel (one launch with its
        // epilogue) instead of cuBLAS + bias_act: which is faster for small products is a
        // measurement (scripts/gpu-check.sh times both).
        let use_cublas = std::env::var("HETSCHED_CUDA_GEMM").map_or(true, |v| v != "kernel");
        for l in &plan.launches {
            let types: Vec<Elem> = l.bufs.iter().map(|&b| elems[b]).collect();
            let gemm = if l.kernel == Kernel::Matmul && use_cublas { gemm_spec(&l.params, l.grid[2]) } else { None };
            // cuBLAS takes f32 x f32 or f16 x f16 operands (f32 accumulation either way).
            if let (Some(spec), true) = (gemm, types[0] == types[1]) {
                if blas.is_none() {
                    blas = Some(blas_on(&stream)?);
                }
                let (kind, detail) = ("cublas gemm".to_string(), format!("m={} n={} k={} batch={}", spec.m, spec.n, spec.k, spec.batch));
                steps.push(Labelled { what: Step::Gemm { spec, bufs: [l.bufs[1], l.bufs[0], l.bufs[3]], operands: types[0], out: types[3] }, kind, detail });
                if let Some(p) = epilogue_params(&l.params, l.grid[2]) {
                    let cfg = linear_launch(p[0] as usize);
                    let params = stream.clone_htod(&p).map_err(cuda_err)?;
                    let unit = Unit::new("nn.cu", String::new(), false, &[types[2], types[3]]);
                    let what = Step::Kernel { func: dev.function(&unit, "bias_act")?, params, bufs: vec![l.bufs[2], l.bufs[3]], cfg };
                    steps.push(Labelled { what, kind: "bias_act".into(), detail: format!("{} elements", p[0]) });
                }
                continue;
            }
            let (unit, name) = entry(l.kernel, l.op, &types)?;
            let func = dev.function(&unit, name)?;
            let params = stream.clone_htod(if l.params.is_empty() { &[0u32][..] } else { &l.params }).map_err(cuda_err)?;
            let cfg = if l.kernel == Kernel::Matmul {
                // 64x64 tiles of C per 16x16 block (the plan's grid is for the WGSL 16x16 tiles).
                let (m, n) = (l.params[0], l.params[1]);
                LaunchConfig { grid_dim: (n.div_ceil(64), m.div_ceil(64), l.grid[2]), block_dim: (16, 16, 1), shared_mem_bytes: 0 }
            } else if l.kernel == Kernel::Rows {
                // One warp per row (the plan's grid has one thread per row, as rows.wgsl does).
                linear_launch(l.params[0] as usize * 32)
            } else {
                LaunchConfig { grid_dim: (l.grid[0], l.grid[1], l.grid[2]), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
            };
            let op = match l.op {
                OpSpec::None => String::new(),
                op => format!(" {op:?}"),
            };
            steps.push(Labelled { what: Step::Kernel { func, params, bufs: l.bufs.clone(), cfg }, kind: format!("{name}{op}"), detail: format!("grid {:?}", l.grid) });
        }
        let inputs: Vec<(usize, String, Vec<usize>)> = plan.inputs.iter().map(|i| (i.buffer, i.name.clone(), i.shape.clone())).collect();
        let outputs: Vec<(usize, Vec<usize>, DType)> = plan.outputs.iter().map(|o| (o.buffer, o.shape.clone(), o.dtype)).collect();
        let pinned = |len: usize, flags: u32| {
            // SAFETY: staging is always written (by the host or by a copy) before it is read.
            unsafe { dev.ctx.alloc_pinned_with_flags::<u8>(len, flags) }.map_err(cuda_err)
        };
        // Uploads are only written by the host: write-combined memory suits that; downloads are
        // read by the host, which write-combined memory makes very slow.
        let uploads = inputs.iter().map(|(buf, _, _)| pinned(buffers[*buf].len(), sys::CU_MEMHOSTALLOC_WRITECOMBINED)).collect::<Result<_>>()?;
        let downloads = outputs.iter().map(|(buf, _, _)| pinned(buffers[*buf].len(), 0)).collect::<Result<_>>()?;
        let profile = Profile::from_env();
        let graph = if profile != Profile::Off || std::env::var("HETSCHED_CUDA_GRAPHS").is_ok_and(|v| v == "0") { Graphing::Off } else { Graphing::Pending };
        let timing = if profile == Profile::Off { 0 } else { steps.len() + 1 };
        let marks = (0..timing).map(|_| dev.ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT)).map_err(cuda_err)).collect::<Result<Vec<_>>>()?;
        // The buffers were filled on the compute stream; runs upload on the copy stream.
        stream.synchronize().map_err(cuda_err)?;
        let timed = || dev.ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT)).map_err(cuda_err);
        let (uploaded, started, computed) = (dev.ctx.new_event(None).map_err(cuda_err)?, timed()?, timed()?);
        let state = Mutex::new(State { buffers, uploads, downloads, uploaded, started, computed, marks, graph });
        let (weight_bytes, activation_bytes) = crate::backend::gpu::arena::plan_bytes(&plan);
        let workspace_bytes = blas.as_ref().map_or(0, |(_, w)| w.len() as u64);
        let memory = crate::backend::MemoryUse { weight_bytes, activation_bytes, workspace_bytes, ..Default::default() };
        Ok(CudaExecutable { stream, copies, blas, state, steps, tf32, elems, profile, inputs, outputs, run_check: plan.run_check.clone(), memory })
    }
}

impl CudaExecutable {
    /// Queues every kernel of the plan on the stream, with `marks[i]` recorded before step `i`
    /// and the last one after all (when profiling; empty otherwise).
    fn launch_all(&self, buffers: &[CudaSlice<u8>], marks: &[CudaEvent]) -> Result<()> {
        let stream = &self.stream;
        for (i, s) in self.steps.iter().enumerate() {
            if let Some(m) = marks.get(i) {
                m.record(stream).map_err(cuda_err)?;
            }
            match &s.what {
                Step::Kernel { func, params, bufs, cfg } => {
                    let mut launch = stream.launch_builder(func);
                    launch.arg(params);
                    for &b in bufs {
                        launch.arg(&buffers[b]);
                    }
                    // SAFETY: every kernel reads and writes only within the element counts its
                    // parameters give, which the planner derived from these buffers' lengths.
                    unsafe { launch.launch(*cfg) }.map_err(cuda_err)?;
                }
                Step::Gemm { spec, bufs, operands, out } => self.gemm(spec, [&buffers[bufs[0]], &buffers[bufs[1]], &buffers[bufs[2]]], *operands, *out)?,
            }
        }
        if let Some(m) = marks.get(self.steps.len()) {
            m.record(stream).map_err(cuda_err)?;
        }
        Ok(())
    }

    /// Prints the device time of each step (per step, or summed per kind) from the marks.
    fn print_profile(&self, marks: &[CudaEvent]) -> Result<()> {
        let mut kinds: std::collections::BTreeMap<&str, (f64, usize)> = Default::default();
        for (i, Labelled { kind, detail, .. }) in self.steps.iter().enumerate() {
            let ms = marks[i].elapsed_ms(&marks[i + 1]).map_err(cuda_err)? as f64;
            if self.profile == Profile::PerNode {
                eprintln!("{i:>4} {kind:<40} {detail:<36} {ms:>9.3} ms");
            }
            let e = kinds.entry(kind.as_str()).or_default();
            e.0 += ms;
            e.1 += 1;
        }
        if self.profile == Profile::PerOpType {
            for (kind, (ms, n)) in kinds {
                eprintln!("{kind:<40} {n:>5} launches {ms:>9.3} ms");
            }
        }
        let total = marks[0].elapsed_ms(&marks[self.steps.len()]).map_err(cuda_err)?;
        eprintln!("{} steps, {total:.3} ms on the device (launched one by one)", self.steps.len());
        Ok(())
    }

    /// Queues one strided-batched GEMM on the stream (f32 accumulation; TF32 inputs if allowed).
    fn gemm(&self, s: &GemmSpec, [first, second, c]: [&CudaSlice<u8>; 3], operands: Elem, out: Elem) -> Result<()> {
        use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cudaDataType};
        let stream = &self.stream;
        let (blas, _) = self.blas.as_ref().ok_or_else(|| Error::Tensor("CUDA: a GEMM step without a cuBLAS handle".into()))?;
        let (first, _f) = first.device_ptr(stream);
        let (second, _s) = second.device_ptr(stream);
        let (c, _c) = c.device_ptr(stream);
        let c = c + (s.c_offset * out.bytes()) as u64;
        let dtype = |e: Elem| if e == Elem::F16 { cudaDataType::CUDA_R_16F } else { cudaDataType::CUDA_R_32F };
        let (ab, ct) = (dtype(operands), dtype(out));
        let compute = if self.tf32 && operands == Elem::F32 { cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32 } else { cublasComputeType_t::CUBLAS_COMPUTE_32F };
        let (alpha, beta) = (s.alpha, 0.0f32);
        // SAFETY: the planner sized every buffer for the strides and batch of this product
        // (gemm_spec only accepts views cuBLAS can address), and C is no operand's buffer.
        unsafe {
            cudarc::cublas::result::gemm_strided_batched_ex(
                *blas.handle(), s.op_first, s.op_second, s.m, s.n, s.k,
                (&alpha as *const f32).cast(), first as *const _, ab, s.ld_first, s.stride_first,
                second as *const _, ab, s.ld_second, s.stride_second,
                (&beta as *const f32).cast(), c as *mut _, ct, s.ldc, s.stride_c, s.batch, compute, cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| Error::Tensor(format!("cuBLAS GEMM {s:?}: {e:?}")))
    }

    /// Captures the launches into a graph. On any failure the stream leaves capture mode and
    /// the error is returned (nothing captured has run).
    fn capture(&self, buffers: &[CudaSlice<u8>]) -> Result<Replay> {
        let stream = &self.stream;
        stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL).map_err(cuda_err)?;
        let launched = self.launch_all(buffers, &[]);
        let ended = stream.end_capture(sys::CUgraphInstantiate_flags(0)).map_err(cuda_err);
        launched?;
        let graph = ended?.ok_or_else(|| Error::Tensor("CUDA: stream capture produced no graph".into()))?;
        graph.upload().map_err(cuda_err)?;
        Ok(Replay(graph))
    }
}

impl Executable for CudaExecutable {
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        Ok(self.run_measured(inputs)?.0)
    }

    fn memory(&self) -> std::collections::BTreeMap<String, crate::backend::MemoryUse> {
        [("cuda".to_string(), self.memory)].into()
    }

    fn run_measured(&self, inputs: Vec<Tensor>) -> Result<(Vec<Tensor>, RunStats)> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Input(format!("expected {} inputs, got {}", self.inputs.len(), inputs.len())));
        }
        let (stream, copies) = (&self.stream, &self.copies);
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *guard;
        for (((buf, name, shape), t), staging) in self.inputs.iter().zip(&inputs).zip(&mut state.uploads) {
            if t.shape() != shape.as_slice() {
                return Err(Error::Input(format!("input '{name}' has shape {:?}, the plan expects {shape:?}", t.shape())));
            }
            crate::backend::gpu::check_exact_integers(t, name, "cuda")?;
            if t.numel() > 0 {
                // Waits for the previous run's copy out of this staging buffer first.
                encode_into(t, self.elems[*buf], staging.as_mut_slice().map_err(cuda_err)?);
                // The whole staging buffer (sized to this input): a pinned source keeps the copy
                // asynchronous, where a plain slice would make cudarc wait for it.
                copies.memcpy_htod(staging, &mut state.buffers[*buf]).map_err(cuda_err)?;
            }
        }
        // The kernels start when the uploads are in; the downloads when the kernels are done.
        state.uploaded.record(copies).map_err(cuda_err)?;
        stream.wait(&state.uploaded).map_err(cuda_err)?;
        if matches!(state.graph, Graphing::Pending) {
            state.graph = match self.capture(&state.buffers) {
                Ok(replay) => Graphing::Ready(replay),
                Err(e) => {
                    eprintln!("hetsched: CUDA graph capture failed, launching kernels one by one: {e}");
                    Graphing::Off
                }
            };
        }
        // After any capture, which runs nothing but takes the host a while.
        state.started.record(stream).map_err(cuda_err)?;
        match &state.graph {
            Graphing::Ready(Replay(graph)) => graph.launch().map_err(cuda_err)?,
            _ => self.launch_all(&state.buffers, &state.marks)?,
        }
        state.computed.record(stream).map_err(cuda_err)?;
        copies.wait(&state.computed).map_err(cuda_err)?;
        for ((buf, _, _), staging) in self.outputs.iter().zip(&mut state.downloads) {
            copies.memcpy_dtoh(&state.buffers[*buf], staging).map_err(cuda_err)?;
        }
        copies.synchronize().map_err(cuda_err)?;
        let device_ms = Some(state.started.elapsed_ms(&state.computed).map_err(cuda_err)? as f64);
        if self.profile != Profile::Off {
            self.print_profile(&state.marks)?;
        }
        let mut outs = Vec::with_capacity(self.outputs.len());
        for ((buf, shape, dtype), staging) in self.outputs.iter().zip(&state.downloads) {
            let values = decode(staging.as_slice().map_err(cuda_err)?, self.elems[*buf], shape.iter().product());
            outs.push(output_tensor(shape, values, *dtype)?);
        }
        crate::backend::gpu::RunCheck::take(&self.run_check, &mut outs, "cuda")?;
        Ok((outs, RunStats { device_ms }))
    }
}
