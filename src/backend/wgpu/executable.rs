//! A bound graph compiled for wgpu: every buffer (weights, inputs, activations, parameters,
//! read-back staging) and every bind group is made once at compile time and reused by each run;
//! a run is one upload, one command buffer for the whole graph, one submit and one read-back.

use super::kernels::{self, Elem, Kernel};
use super::plan::*;
use super::Context;
use crate::backend::Executable;
use crate::error::{Error, Result};
use crate::graph::infer::{resolve_pads, slice_axes};
use crate::graph::{Graph, Op, PoolKind, ReduceOp};
use crate::tensor::{norm_axis, strides_of, DType, Data, Tensor};
use petgraph::stable_graph::NodeIndex;
use std::collections::HashMap;
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
}

struct Builder<'a> {
    ctx: &'a Context,
    g: &'a Graph,
    /// Store float tensors as f16.
    f16: bool,
    buffers: Vec<wgpu::Buffer>,
    lens: Vec<usize>,
    elems: Vec<Elem>,
    value_buf: HashMap<(NodeIndex, usize), usize>,
    steps: Vec<Step>,
    dummy: Option<usize>,
}

impl<'a> Builder<'a> {
    fn usage() -> wgpu::BufferUsages {
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC
    }

    fn check_size(&self, bytes: u64) -> Result<()> {
        if bytes > self.ctx.limits.max_storage_buffer_binding_size as u64 || bytes > self.ctx.limits.max_buffer_size {
            return Err(Error::Unsupported { node: String::new(), op: String::new(), what: format!("a {bytes}-byte tensor exceeds the adapter's buffer limit") });
        }
        Ok(())
    }

    /// How a value of `dtype` is stored: floats as f16 in f16 mode, everything else as f32.
    fn elem_for(&self, dtype: Option<DType>) -> Elem {
        if self.f16 && dtype.is_some_and(|d| d.is_float()) { Elem::F16 } else { Elem::F32 }
    }

    fn new_buffer(&mut self, len: usize, elem: Elem) -> Result<usize> {
        let bytes = ((len.max(1) * elem.bytes()).div_ceil(4) * 4) as u64;
        self.check_size(bytes)?;
        self.buffers.push(self.ctx.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: bytes, usage: Self::usage(), mapped_at_creation: false }));
        self.lens.push(len);
        self.elems.push(elem);
        Ok(self.buffers.len() - 1)
    }

    fn data_buffer(&mut self, t: &Tensor, elem: Elem) -> Result<usize> {
        let bytes = encode(t, elem);
        self.check_size(bytes.len() as u64)?;
        self.buffers.push(self.ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents: &bytes, usage: Self::usage() }));
        self.lens.push(t.numel());
        self.elems.push(elem);
        Ok(self.buffers.len() - 1)
    }

    fn dummy(&mut self) -> Result<usize> {
        if self.dummy.is_none() {
            self.dummy = Some(self.data_buffer(&Tensor::scalar_f32(0.0), Elem::F32)?);
        }
        Ok(self.dummy.unwrap())
    }

    /// Buffer holding value (node, slot): constants are uploaded on first use.
    fn value(&mut self, key: (NodeIndex, usize)) -> Result<usize> {
        if let Some(&b) = self.value_buf.get(&key) {
            return Ok(b);
        }
        let v = &self.g.g[key.0].outputs[key.1];
        let Some(t) = v.value.clone() else { return Err(Error::Tensor(format!("value '{}' used before it is produced", v.name))) };
        let b = self.data_buffer(&t, self.elem_for(Some(t.dtype())))?;
        self.value_buf.insert(key, b);
        Ok(b)
    }

    fn input(&mut self, n: NodeIndex, i: usize) -> Result<usize> {
        let src = self.g.sources(n).get(i).copied().flatten().ok_or_else(|| Error::Tensor(format!("missing input {i}")))?;
        self.value(src)
    }

    fn in_shape(&self, n: NodeIndex, i: usize) -> Vec<usize> {
        self.g.input_value(n, i).and_then(|v| v.shape.clone()).unwrap_or_default()
    }

    fn output(&mut self, n: NodeIndex, slot: usize) -> Result<usize> {
        let v = &self.g.g[n].outputs[slot];
        let (len, elem) = (v.numel(), self.elem_for(v.dtype));
        let b = self.new_buffer(len, elem)?;
        self.value_buf.insert((n, slot), b);
        Ok(b)
    }

    fn step(&mut self, kernel: Kernel, op: &str, params: &[u32], bufs: &[usize], groups: [u32; 3]) -> Result<()> {
        let types: Vec<Elem> = bufs.iter().map(|&b| self.elems[b]).collect();
        let pipeline = self.ctx.pipeline(kernel, op, &types)?;
        let pbuf = self.ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: bytemuck::cast_slice(if params.is_empty() { &[0u32] } else { params }),
            usage: wgpu::BufferUsages::STORAGE,
        });
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: pbuf.as_entire_binding() }];
        for (i, &b) in bufs.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: self.buffers[b].as_entire_binding() });
        }
        let bind = self.ctx.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &pipeline.get_bind_group_layout(0), entries: &entries });
        self.steps.push(Step { pipeline, bind, groups });
        Ok(())
    }

    /// Copies a strided view of `src` into a strided view of `dst` over `shape`.
    fn copy(&mut self, src: usize, src_base: isize, src_st: &[isize], dst: usize, dst_base: usize, dst_st: &[isize], shape: &[usize]) -> Result<()> {
        let n: usize = shape.iter().product();
        if n == 0 {
            return Ok(());
        }
        let mut p = vec![n as u32, src_base as i32 as u32, dst_base as u32];
        p.extend(shape6(shape));
        p.extend(i32_6(src_st));
        p.extend(i32_6(dst_st));
        self.step(Kernel::Copy, "", &p, &[src, dst], grid(n))
    }

    fn rows(&mut self, x: usize, rows: usize, len: usize, kind: u32, eps: f32, scale: Option<usize>, shift: Option<usize>, out: usize) -> Result<()> {
        let d = self.dummy()?;
        let p = [rows as u32, len as u32, kind, eps.to_bits(), shift.is_some() as u32];
        self.step(Kernel::Rows, "", &p, &[x, scale.unwrap_or(d), shift.unwrap_or(d), out], grid(rows))
    }

    fn node(&mut self, n: NodeIndex) -> Result<()> {
        let node = &self.g.g[n];
        let out_shape = node.outputs[0].shape.clone().unwrap_or_default();
        let numel: usize = out_shape.iter().product();
        match &node.op {
            Op::Input | Op::Constant { .. } => {}
            Op::Identity | Op::Flatten { .. } | Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } => {
                let b = self.input(n, 0)?;
                self.value_buf.insert((n, 0), b);
            }
            Op::Unary(u) => {
                let expr = kernels::unary_expr(*u).ok_or_else(|| Error::Tensor(format!("{u:?} has no wgpu kernel")))?;
                let (x, o) = (self.input(n, 0)?, self.output(n, 0)?);
                self.step(Kernel::Unary, &expr, &[numel as u32, 0, 0], &[x, o], grid(numel))?;
            }
            Op::Clip { min, max } => {
                let bound = |i: usize, attr: Option<f32>, dflt: f32| -> f32 {
                    self.g.input_const(n, i).and_then(|t| t.to_f64_vec().first().map(|&v| v as f32)).or(attr).unwrap_or(dflt)
                };
                let (lo, hi) = (bound(1, *min, f32::MIN), bound(2, *max, f32::MAX));
                let (x, o) = (self.input(n, 0)?, self.output(n, 0)?);
                self.step(Kernel::Unary, kernels::CLIP, &[numel as u32, lo.to_bits(), hi.to_bits()], &[x, o], grid(numel))?;
            }
            Op::Cast { .. } | Op::CastLike => {
                let to = node.outputs[0].dtype.unwrap_or(DType::F32);
                let expr = kernels::cast_expr(to);
                let (x, o) = (self.input(n, 0)?, self.output(n, 0)?);
                self.step(Kernel::Unary, expr, &[numel as u32, 0, 0], &[x, o], grid(numel))?;
            }
            Op::Binary(b) => {
                let expr = kernels::binary_expr(*b).ok_or_else(|| Error::Tensor(format!("{b:?} has no wgpu kernel")))?;
                let (sa, sb) = (self.in_shape(n, 0), self.in_shape(n, 1));
                let (a, bb, o) = (self.input(n, 0)?, self.input(n, 1)?, self.output(n, 0)?);
                let mut p = vec![numel as u32];
                p.extend(shape6(&out_shape));
                p.extend(bcast_strides6(&sa, &out_shape));
                p.extend(bcast_strides6(&sb, &out_shape));
                self.step(Kernel::Binary, expr, &p, &[a, bb, o], grid(numel))?;
            }
            Op::Where => {
                let shapes: Vec<Vec<usize>> = (0..3).map(|i| self.in_shape(n, i)).collect();
                let bufs = [self.input(n, 0)?, self.input(n, 1)?, self.input(n, 2)?, self.output(n, 0)?];
                let mut p = vec![numel as u32];
                p.extend(shape6(&out_shape));
                for s in &shapes {
                    p.extend(bcast_strides6(s, &out_shape));
                }
                self.step(Kernel::Where, "", &p, &bufs, grid(numel))?;
            }
            Op::Conv { window, group, activation } => {
                let (xs, ws) = (self.in_shape(n, 0), self.in_shape(n, 1));
                let pads = resolve_pads(window, &xs[2..], &ws[2..])?;
                let at = |v: &[usize], i: usize| v.get(i).copied().unwrap_or(1) as u32;
                let two = xs.len() == 4;
                let geo: [u32; 15] = if two {
                    [xs[0] as u32, xs[1] as u32, xs[2] as u32, xs[3] as u32, ws[0] as u32, out_shape[2] as u32, out_shape[3] as u32, ws[2] as u32, ws[3] as u32,
                     at(&window.strides, 0), at(&window.strides, 1), pads[0] as u32, pads[1] as u32, at(&window.dilations, 0), at(&window.dilations, 1)]
                } else {
                    [xs[0] as u32, xs[1] as u32, 1, xs[2] as u32, ws[0] as u32, 1, out_shape[2] as u32, 1, ws[2] as u32, 1, at(&window.strides, 0), 0, pads[0] as u32, 1, at(&window.dilations, 0)]
                };
                let has_bias = self.g.sources(n).get(2).copied().flatten().is_some();
                let x = self.input(n, 0)?;
                let w = self.input(n, 1)?;
                let b = if has_bias { self.input(n, 2)? } else { self.dummy()? };
                let o = self.output(n, 0)?;
                let mut p = geo.to_vec();
                p.push(*group as u32);
                p.push(has_bias as u32);
                p.extend(act_params(*activation));
                self.step(Kernel::Conv2d, "", &p, &[x, w, b, o], grid(numel))?;
            }
            Op::Pool { kind, window } => {
                let xs = self.in_shape(n, 0);
                let pads = resolve_pads(window, &xs[2..], &window.kernel_shape)?;
                let at = |v: &[usize], i: usize| v.get(i).copied().unwrap_or(1) as u32;
                let k = &window.kernel_shape;
                let kind_id = match kind {
                    PoolKind::Max => 0,
                    PoolKind::Average { count_include_pad: false } => 1,
                    _ => 2,
                };
                let p: Vec<u32> = if xs.len() == 4 {
                    vec![(xs[0] * xs[1]) as u32, xs[2] as u32, xs[3] as u32, out_shape[2] as u32, out_shape[3] as u32, k[0] as u32, k[1] as u32,
                         at(&window.strides, 0), at(&window.strides, 1), pads[0] as u32, pads[1] as u32, at(&window.dilations, 0), at(&window.dilations, 1), kind_id, pads[2] as u32, pads[3] as u32]
                } else {
                    vec![(xs[0] * xs[1]) as u32, 1, xs[2] as u32, 1, out_shape[2] as u32, 1, k[0] as u32, 1, at(&window.strides, 0), 0, pads[0] as u32, 1, at(&window.dilations, 0), kind_id, 0, pads[1] as u32]
                };
                let (x, o) = (self.input(n, 0)?, self.output(n, 0)?);
                self.step(Kernel::Pool2d, "", &p, &[x, o], grid(numel))?;
            }
            Op::GlobalPool { kind } => {
                let xs = self.in_shape(n, 0);
                let len: usize = xs[2..].iter().product();
                let (x, o) = (self.input(n, 0)?, self.output(n, 0)?);
                self.rows(x, xs[0] * xs[1], len, if matches!(kind, PoolKind::Max) { 2 } else { 0 }, 0.0, None, None, o)?;
            }
            Op::Reduce { .. } | Op::ArgExtreme { .. } => {
                let (perm, rows, len) = reduce_plan(self.g, n).ok_or_else(|| Error::Tensor("reduction axes must be plan-time constants".into()))?;
                let (kind, last) = match &node.op {
                    Op::Reduce { op, .. } => (
                        match op {
                            ReduceOp::Mean => 0,
                            ReduceOp::Sum => 1,
                            ReduceOp::Max => 2,
                            ReduceOp::Min => 3,
                            ReduceOp::SumSquare => 7,
                            ReduceOp::L1 => 8,
                            ReduceOp::L2 => 9,
                            ReduceOp::LogSum => 10,
                            ReduceOp::LogSumExp => 11,
                            ReduceOp::Prod => 12,
                        },
                        false,
                    ),
                    Op::ArgExtreme { max, select_last_index, .. } => (if *max { 14 } else { 15 }, *select_last_index),
                    _ => unreachable!(),
                };
                let mut x = self.input(n, 0)?;
                if let Some(perm) = perm {
                    // Move the reduced axes last so every row is contiguous.
                    let xs = self.in_shape(n, 0);
                    let st = strides_of(&xs);
                    let shape: Vec<usize> = perm.iter().map(|&d| xs[d]).collect();
                    let src: Vec<isize> = perm.iter().map(|&d| st[d] as isize).collect();
                    let dst: Vec<isize> = strides_of(&shape).iter().map(|&s| s as isize).collect();
                    let t = self.new_buffer(xs.iter().product(), self.elems[x])?;
                    self.copy(x, 0, &src, t, 0, &dst, &shape)?;
                    x = t;
                }
                let o = self.output(n, 0)?;
                let d = self.dummy()?;
                let p = [rows as u32, len as u32, kind, 0, last as u32];
                self.step(Kernel::Rows, "", &p, &[x, d, d, o], grid(rows))?;
            }
            Op::RmsNorm { epsilon, .. } => {
                let len = rms_len(self.g, n).ok_or_else(|| Error::Tensor("RMSNormalization scale must cover the normalised block".into()))?;
                let (x, s) = (self.input(n, 0)?, self.input(n, 1)?);
                let o = self.output(n, 0)?;
                self.rows(x, numel / len.max(1), len, 13, *epsilon, Some(s), None, o)?;
            }
            Op::Softmax { axis, log, legacy } => {
                let xs = self.in_shape(n, 0);
                let ax = norm_axis(*axis, xs.len())?;
                let len: usize = if *legacy { xs[ax..].iter().product() } else { xs[xs.len() - 1] };
                let (x, o) = (self.input(n, 0)?, self.output(n, 0)?);
                self.rows(x, numel / len.max(1), len, if *log { 5 } else { 4 }, 0.0, None, None, o)?;
            }
            Op::LayerNorm { axis, epsilon } => {
                let xs = self.in_shape(n, 0);
                let len: usize = xs[norm_axis(*axis, xs.len())?..].iter().product();
                if self.in_shape(n, 1).iter().product::<usize>() != len {
                    return Err(Error::Tensor("LayerNormalization scale must cover the normalised block".into()));
                }
                let has_bias = self.g.sources(n).get(2).copied().flatten().is_some();
                let x = self.input(n, 0)?;
                let s = self.input(n, 1)?;
                let b = if has_bias { Some(self.input(n, 2)?) } else { None };
                let o = self.output(n, 0)?;
                self.rows(x, numel / len.max(1), len, 6, *epsilon, Some(s), b, o)?;
            }
            Op::Gemm { alpha, beta, trans_a, trans_b, activation } => {
                let (a_s, b_s) = (self.in_shape(n, 0), self.in_shape(n, 1));
                let (m, k) = if *trans_a { (a_s[1], a_s[0]) } else { (a_s[0], a_s[1]) };
                let nn = out_shape[1];
                let (a_rs, a_cs) = if *trans_a { (1, a_s[1]) } else { (a_s[1], 1) };
                let (b_rs, b_cs) = if *trans_b { (1, b_s[1]) } else { (b_s[1], 1) };
                let has_c = self.g.sources(n).get(2).copied().flatten().is_some() && *beta != 0.0;
                let (c_rs, c_cs) = if has_c {
                    let cs = self.in_shape(n, 2);
                    let c2: Vec<usize> = std::iter::repeat_n(1, 2usize.saturating_sub(cs.len())).chain(cs.iter().copied()).collect();
                    (if c2[0] == 1 { 0 } else { c2[1] }, if c2[1] == 1 { 0 } else { 1 })
                } else {
                    (0, 0)
                };
                let a = self.input(n, 0)?;
                let b = self.input(n, 1)?;
                let c = if has_c { self.input(n, 2)? } else { self.dummy()? };
                let o = self.output(n, 0)?;
                let mut p = vec![m as u32, nn as u32, k as u32, 0, a_rs as u32, a_cs as u32, 0, b_rs as u32, b_cs as u32, has_c as u32, c_rs as u32, c_cs as u32, alpha.to_bits(), beta.to_bits()];
                p.extend(act_params(*activation));
                self.step(Kernel::Matmul, "", &p, &[a, b, c, o], [nn.div_ceil(16) as u32, m.div_ceil(16) as u32, 1])?;
            }
            Op::MatMul => {
                let (batch, m, k, nn, sa, sb) = matmul_batches(self.g, n).ok_or_else(|| Error::Tensor("MatMul batch broadcast not supported on wgpu".into()))?;
                let (a, b, d) = (self.input(n, 0)?, self.input(n, 1)?, self.dummy()?);
                let o = self.output(n, 0)?;
                let mut p = vec![m as u32, nn as u32, k as u32, sa as u32, k as u32, 1, sb as u32, nn as u32, 1, 0, 0, 0, 1f32.to_bits(), 0f32.to_bits()];
                p.extend(act_params(None));
                self.step(Kernel::Matmul, "", &p, &[a, b, d, o], [nn.div_ceil(16) as u32, m.div_ceil(16) as u32, batch as u32])?;
            }
            Op::Transpose { perm } => {
                let xs = self.in_shape(n, 0);
                let p = perm.clone().unwrap_or_else(|| (0..xs.len()).rev().collect());
                let st = strides_of(&xs);
                let src: Vec<isize> = p.iter().map(|&d| st[d] as isize).collect();
                let dst: Vec<isize> = strides_of(&out_shape).iter().map(|&s| s as isize).collect();
                let (x, o) = (self.input(n, 0)?, self.output(n, 0)?);
                self.copy(x, 0, &src, o, 0, &dst, &out_shape)?;
            }
            Op::Slice => {
                let xs = self.in_shape(n, 0);
                let ints = |i: usize| -> Result<Option<Vec<i64>>> {
                    match self.g.sources(n).get(i).copied().flatten() {
                        None => Ok(None),
                        Some(_) => self.g.input_const(n, i).map(|t| t.to_i64_vec()).transpose()?.map(Some).ok_or_else(|| Error::Tensor("Slice parameters must be constants on wgpu".into())),
                    }
                };
                let axes = slice_axes(&xs, &ints(1)?.unwrap_or_default(), &ints(2)?.unwrap_or_default(), ints(3)?.as_deref(), ints(4)?.as_deref())?;
                let st = strides_of(&xs);
                let base: isize = axes.iter().zip(&st).map(|(a, &s)| a.start as isize * s as isize).sum();
                let src: Vec<isize> = axes.iter().zip(&st).map(|(a, &s)| a.step as isize * s as isize).collect();
                let dst: Vec<isize> = strides_of(&out_shape).iter().map(|&s| s as isize).collect();
                let (x, o) = (self.input(n, 0)?, self.output(n, 0)?);
                self.copy(x, base, &src, o, 0, &dst, &out_shape)?;
            }
            Op::Expand => {
                let xs = self.in_shape(n, 0);
                let src: Vec<isize> = bcast_strides6(&xs, &out_shape).iter().skip(6 - out_shape.len()).map(|&s| s as isize).collect();
                let dst: Vec<isize> = strides_of(&out_shape).iter().map(|&s| s as isize).collect();
                let (x, o) = (self.input(n, 0)?, self.output(n, 0)?);
                self.copy(x, 0, &src, o, 0, &dst, &out_shape)?;
            }
            Op::Concat { axis } => {
                let ax = norm_axis(*axis, out_shape.len())?;
                let o = self.output(n, 0)?;
                let dst: Vec<isize> = strides_of(&out_shape).iter().map(|&s| s as isize).collect();
                let mut offset = 0;
                for i in 0..node.num_inputs {
                    if self.g.sources(n).get(i).copied().flatten().is_none() {
                        continue;
                    }
                    let xs = self.in_shape(n, i);
                    let src: Vec<isize> = strides_of(&xs).iter().map(|&s| s as isize).collect();
                    let x = self.input(n, i)?;
                    self.copy(x, 0, &src, o, offset * dst[ax] as usize, &dst, &xs)?;
                    offset += xs[ax];
                }
            }
            Op::Gather { axis } => {
                let xs = self.in_shape(n, 0);
                let ax = norm_axis(*axis, xs.len())?;
                let count: usize = self.in_shape(n, 1).iter().product();
                let inner: usize = xs[ax + 1..].iter().product();
                let (x, idx, o) = (self.input(n, 0)?, self.input(n, 1)?, self.output(n, 0)?);
                self.step(Kernel::Gather, "", &[numel as u32, xs[ax] as u32, count as u32, inner as u32], &[x, idx, o], grid(numel))?;
            }
            other => return Err(Error::Unsupported { node: String::new(), op: String::new(), what: format!("{} on wgpu", other.name()) }),
        }
        Ok(())
    }
}

impl WgpuExecutable {
    pub fn new(ctx: Arc<Context>, graph: Arc<Graph>, f16: bool) -> Result<Self> {
        let g = &*graph;
        let mut b = Builder { ctx: &ctx, g, f16, buffers: vec![], lens: vec![], elems: vec![], value_buf: HashMap::new(), steps: vec![], dummy: None };
        let mut inputs = vec![];
        for gi in &g.inputs {
            let shape = g.g[gi.node].outputs[0].shape.clone().ok_or_else(|| Error::Input(format!("input '{}' has no bound shape", gi.name)))?;
            let elem = b.elem_for(Some(gi.dtype));
            let buf = b.new_buffer(shape.iter().product(), elem)?;
            b.value_buf.insert((gi.node, 0), buf);
            inputs.push((buf, elem, gi.name.clone(), shape));
        }
        for n in g.toposort()? {
            let node = &g.g[n];
            let known = !node.outputs.is_empty() && node.outputs.iter().all(|v| v.value.is_some());
            if known || matches!(node.op, Op::Input) {
                continue;
            }
            b.node(n).map_err(|e| e.in_node(&node.name, &node.op.name()))?;
        }
        let mut outputs = vec![];
        for o in &g.outputs {
            let v = &g.g[o.node].outputs[o.slot];
            let buffer = b.value((o.node, o.slot))?;
            let bytes = b.buffers[buffer].size();
            let readback = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            outputs.push(Output { buffer, elem: b.elems[buffer], shape: v.shape.clone().unwrap_or_default(), dtype: v.dtype.unwrap_or(DType::F32), readback });
        }
        let (buffers, steps) = (b.buffers, b.steps);
        Ok(WgpuExecutable { ctx, buffers, steps, inputs, outputs, run_lock: Mutex::new(()) })
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
        if inputs.len() != self.inputs.len() {
            return Err(Error::Input(format!("expected {} inputs, got {}", self.inputs.len(), inputs.len())));
        }
        let turn = self.run_lock.lock().unwrap_or_else(|e| e.into_inner());
        let (device, queue) = (&self.ctx.device, &self.ctx.queue);
        for ((buf, elem, name, shape), t) in self.inputs.iter().zip(&inputs) {
            if t.shape() != shape.as_slice() {
                return Err(Error::Input(format!("input '{name}' has shape {:?}, the plan expects {shape:?}", t.shape())));
            }
            if t.numel() > 0 {
                queue.write_buffer(&self.buffers[*buf], 0, &encode(t, *elem));
            }
        }
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("hetsched run") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
            for s in &self.steps {
                pass.set_pipeline(&s.pipeline);
                pass.set_bind_group(0, &s.bind, &[]);
                pass.dispatch_workgroups(s.groups[0], s.groups[1], s.groups[2]);
            }
        }
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
            let t = Tensor::from_f32(&o.shape, vals)?;
            outs.push(if o.dtype == DType::F32 {
                t
            } else if o.dtype.is_float() {
                crate::backend::cpu::elementwise::cast(&t, o.dtype)?
            } else {
                let rounded: Vec<f64> = t.to_f64_vec().iter().map(|v| v.round()).collect();
                crate::backend::cpu::elementwise::cast(&Tensor::new(o.shape.clone(), Data::F64(rounded))?, o.dtype)?
            });
        }
        Ok(outs)
    }
}
