//! The shared GPU plan ([`crate::backend::gpu::GpuPlan`]) realised with cudarc: device buffers,
//! parameter arrays and kernel functions made once per plan; a run is uploads, the launches on
//! one stream, and downloads. (cuBLAS GEMMs, a separate copy stream with pinned staging, and
//! CUDA-graph replay are the next steps; this version has not run on a GPU yet.)

use super::kernels::{self, Unit};
use super::Device;
use crate::backend::gpu::lower::lower;
use crate::backend::gpu::{Elem, Kernel, OpSpec, BLOCK};
use crate::backend::Executable;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::tensor::{DType, Data, Tensor};
use cudarc::driver::{CudaFunction, CudaSlice, LaunchConfig, PushKernelArg};
use std::sync::{Arc, Mutex};

struct Step {
    func: CudaFunction,
    params: CudaSlice<u32>,
    bufs: Vec<usize>,
    cfg: LaunchConfig,
}

pub struct CudaExecutable {
    dev: Arc<Device>,
    /// Device buffers; runs take turns on them.
    buffers: Mutex<Vec<CudaSlice<f32>>>,
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
        let inputs = plan.inputs.iter().map(|i| (i.buffer, i.name.clone(), i.shape.clone())).collect();
        let outputs = plan.outputs.iter().map(|o| (o.buffer, o.shape.clone(), o.dtype)).collect();
        Ok(CudaExecutable { dev, buffers: Mutex::new(buffers), steps, inputs, outputs })
    }
}

impl Executable for CudaExecutable {
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Input(format!("expected {} inputs, got {}", self.inputs.len(), inputs.len())));
        }
        let stream = &self.dev.stream;
        let mut buffers = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        for ((buf, name, shape), t) in self.inputs.iter().zip(&inputs) {
            if t.shape() != shape.as_slice() {
                return Err(Error::Input(format!("input '{name}' has shape {:?}, the plan expects {shape:?}", t.shape())));
            }
            if t.numel() > 0 {
                stream.memcpy_htod(&crate::backend::gpu::layout::carrier(t)[..], &mut buffers[*buf]).map_err(cuda_err)?;
            }
        }
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
        let mut outs = Vec::with_capacity(self.outputs.len());
        for (buf, shape, dtype) in &self.outputs {
            let n: usize = shape.iter().product();
            let mut v = stream.clone_dtoh(&buffers[*buf]).map_err(cuda_err)?;
            v.truncate(n);
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
