//! A bound graph compiled for wgpu: every buffer (weights, inputs, activations, parameters,
//! read-back staging) and every bind group is made once at compile time and reused by each run;
//! a run is one upload, one command buffer for the whole graph, one submit and one read-back.

use super::kernels;
use super::Context;
use crate::backend::gpu::layout::{buffer_bytes, decode, encode, output_tensor};
use crate::backend::gpu::lower::{lower, LowerOptions};
use crate::backend::gpu::Elem;
use crate::backend::Executable;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::tensor::{DType, Tensor};
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

struct Step {
    pipeline: Arc<wgpu::ComputePipeline>,
    bind: wgpu::BindGroup,
    groups: [u32; 3],
}

struct Output {
    buffer: usize,
    elem: Elem,
    shape: Vec<usize>,
    dtype: DType,
    readback: wgpu::Buffer,
}

pub struct WgpuExecutable {
    ctx: Arc<Context>,
    buffers: Vec<wgpu::Buffer>,
    steps: Vec<Step>,
    inputs: Vec<(usize, Elem, String, Vec<usize>)>,
    outputs: Vec<Output>,
    /// Runs share the buffers, so they take turns (the device serialises them anyway).
    run_lock: Mutex<()>,
    spans: Vec<crate::backend::gpu::NodeSpan>,
    run_check: Option<crate::backend::gpu::RunCheck>,
    memory: crate::backend::MemoryUse,
}

impl WgpuExecutable {
    pub fn new(ctx: Arc<Context>, graph: Arc<Graph>, f16: bool) -> Result<Self> {
        let max_bytes = (ctx.limits.max_storage_buffer_binding_size as u64).min(ctx.limits.max_buffer_size);
        let plan = lower(&graph, LowerOptions { f16, max_bytes, conv_as_gemm: false })?;
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        // HETSCHED_GPU_POISON=1 fills every buffer without contents with NaNs instead of zeros: a
        // check that no launch reads what it did not write (the arena shares such buffers).
        let poison = std::env::var("HETSCHED_GPU_POISON").is_ok_and(|v| v == "1");
        let buffers: Vec<wgpu::Buffer> = plan
            .buffers
            .iter()
            .map(|b| match &b.init {
                Some(t) => ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents: &encode(t, b.elem), usage }),
                None if poison => ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents: &vec![0xff; buffer_bytes(b.len, b.elem)], usage }),
                None => ctx.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: buffer_bytes(b.len, b.elem) as u64, usage, mapped_at_creation: false }),
            })
            .collect();
        let mut steps = Vec::with_capacity(plan.launches.len());
        for l in &plan.launches {
            let types: Vec<Elem> = l.bufs.iter().map(|&b| plan.buffers[b].elem).collect();
            let pipeline = ctx.pipeline(l.kernel, &kernels::op_expr(l.op)?, &types)?;
            let params = ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::cast_slice(if l.params.is_empty() { &[0u32] } else { &l.params }),
                usage: wgpu::BufferUsages::STORAGE,
            });
            let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() }];
            for (i, &b) in l.bufs.iter().enumerate() {
                entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: buffers[b].as_entire_binding() });
            }
            let bind = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &pipeline.get_bind_group_layout(0), entries: &entries });
            steps.push(Step { pipeline, bind, groups: l.grid });
        }
        let inputs = plan.inputs.iter().map(|i| (i.buffer, plan.buffers[i.buffer].elem, i.name.clone(), i.shape.clone())).collect();
        let outputs = plan
            .outputs
            .iter()
            .map(|o| Output {
                buffer: o.buffer,
                elem: plan.buffers[o.buffer].elem,
                shape: o.shape.clone(),
                dtype: o.dtype,
                readback: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("readback"),
                    size: buffers[o.buffer].size(),
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
            })
            .collect();
        let (weight_bytes, activation_bytes) = crate::backend::gpu::arena::plan_bytes(&plan);
        let memory = crate::backend::MemoryUse { weight_bytes, activation_bytes, ..Default::default() };
        Ok(WgpuExecutable { ctx, buffers, steps, inputs, outputs, run_lock: Mutex::new(()), spans: plan.spans, run_check: plan.run_check, memory })
    }
}

/// A wgpu run between submit and wait: holds the executable's turn on its buffers.
pub struct WgpuPending<'a> {
    exe: &'a WgpuExecutable,
    _turn: std::sync::MutexGuard<'a, ()>,
    mapped: std::sync::mpsc::Receiver<(usize, std::result::Result<(), wgpu::BufferAsyncError>)>,
}

impl Executable for WgpuExecutable {
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        self.submit(inputs)?.wait()
    }

    fn submit<'a>(&'a self, inputs: Vec<Tensor>) -> Result<Box<dyn crate::backend::PendingRun + 'a>> {
        let turn = self.run_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.upload(&inputs)?;
        let mut enc = self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("hetsched run") });
        self.encode_steps(&mut enc, 0..self.steps.len());
        self.read_back(enc, turn)
    }

    /// Each node's launches in a submit of their own, waited for and timed on the host: the
    /// times include one submit and wait each, which `hetsched profile` measures and subtracts.
    fn run_timed(&self, inputs: Vec<Tensor>) -> Result<(Vec<Tensor>, Vec<crate::backend::NodeTime>)> {
        let turn = self.run_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.upload(&inputs)?;
        self.wait_idle()?;
        let mut times = Vec::with_capacity(self.spans.len());
        for span in &self.spans {
            let t0 = std::time::Instant::now();
            let mut enc = self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("hetsched timed node") });
            self.encode_steps(&mut enc, span.launches.clone());
            self.ctx.queue.submit([enc.finish()]);
            self.wait_idle()?;
            times.push(crate::backend::NodeTime { ms: t0.elapsed().as_secs_f64() * 1e3, ..span.time.clone() });
        }
        let enc = self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("hetsched read-back") });
        Ok((self.read_back(enc, turn)?.wait()?, times))
    }

    fn memory(&self) -> std::collections::BTreeMap<String, crate::backend::MemoryUse> {
        [("wgpu".to_string(), self.memory)].into()
    }
}

impl WgpuExecutable {
    fn upload(&self, inputs: &[Tensor]) -> Result<()> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Input(format!("expected {} inputs, got {}", self.inputs.len(), inputs.len())));
        }
        for ((buf, elem, name, shape), t) in self.inputs.iter().zip(inputs) {
            if t.shape() != shape.as_slice() {
                return Err(Error::Input(format!("input '{name}' has shape {:?}, the plan expects {shape:?}", t.shape())));
            }
            crate::backend::gpu::check_exact_integers(t, name, "wgpu")?;
            if t.numel() > 0 {
                self.ctx.queue.write_buffer(&self.buffers[*buf], 0, &encode(t, *elem));
            }
        }
        Ok(())
    }

    fn encode_steps(&self, enc: &mut wgpu::CommandEncoder, range: std::ops::Range<usize>) {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
        for s in &self.steps[range] {
            pass.set_pipeline(&s.pipeline);
            pass.set_bind_group(0, &s.bind, &[]);
            pass.dispatch_workgroups(s.groups[0], s.groups[1], s.groups[2]);
        }
    }

    fn wait_idle(&self) -> Result<()> {
        self.ctx.queue.submit([]);
        self.ctx.device.poll(wgpu::PollType::wait_indefinitely()).map(|_| ()).map_err(|e| Error::DeviceUnavailable { device: "wgpu".into(), reason: format!("device poll failed: {e}") })
    }

    /// Copies the outputs to their read-back buffers after `enc`'s work and maps them.
    fn read_back<'a>(&'a self, mut enc: wgpu::CommandEncoder, turn: std::sync::MutexGuard<'a, ()>) -> Result<Box<dyn crate::backend::PendingRun + 'a>> {
        let queue = &self.ctx.queue;
        for o in &self.outputs {
            enc.copy_buffer_to_buffer(&self.buffers[o.buffer], 0, &o.readback, 0, o.readback.size());
        }
        queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        for (i, o) in self.outputs.iter().enumerate() {
            let tx = tx.clone();
            o.readback.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send((i, r));
            });
        }
        Ok(Box::new(WgpuPending { exe: self, _turn: turn, mapped: rx }))
    }
}

impl crate::backend::PendingRun for WgpuPending<'_> {
    fn wait(self: Box<Self>) -> Result<Vec<Tensor>> {
        let exe = self.exe;
        exe.ctx.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::DeviceUnavailable { device: "wgpu".into(), reason: format!("device poll failed: {e}") })?;
        for _ in 0..exe.outputs.len() {
            let (i, r) = self.mapped.recv().map_err(|_| Error::Tensor("read-back callback dropped".into()))?;
            r.map_err(|e| Error::Tensor(format!("mapping output {i} failed: {e}")))?;
        }
        let mut outs = Vec::with_capacity(exe.outputs.len());
        for o in &exe.outputs {
            let n: usize = o.shape.iter().product();
            let vals: Vec<f32> = {
                let view = o.readback.slice(..).get_mapped_range().map_err(|e| Error::Tensor(format!("read-back: {e}")))?;
                decode(&view, o.elem, n)
            };
            o.readback.unmap();
            outs.push(output_tensor(&o.shape, vals, o.dtype)?);
        }
        crate::backend::gpu::RunCheck::take(&exe.run_check, &mut outs, "wgpu")?;
        Ok(outs)
    }
}
