//! Lowers a bound graph to GPU buffers and kernel launches, device-neutrally: each node becomes
//! zero or more launches of the shared kernels with their parameter words. wgpu and CUDA realise
//! the same plan with their own resources.

mod attention;
mod composite;
mod einsum;
mod movement;
mod rotary;

pub(crate) use attention::attention_supported;
pub(crate) use einsum::einsum_route;

use super::layout::*;
use super::{binary_supported, unary_supported, BufferSpec, Elem, GpuPlan, Kernel, Launch, NodeSpan, OpSpec, PlanInput, PlanOutput};
use crate::error::{Error, Result};
use crate::graph::geometry::ConvAxes;
use crate::graph::{Graph, Op, PoolKind, ReduceOp};
use crate::tensor::{norm_axis, DType, Tensor};
use petgraph::stable_graph::NodeIndex;
use std::collections::HashMap;
use std::sync::Arc;

/// Lowers a bound graph to buffers and launches. `max_bytes` is the largest buffer the device
/// binds; `f16` stores float tensors as f16.
pub fn lower(graph: &Graph, options: LowerOptions) -> Result<GpuPlan> {
    let g = graph;
    let LowerOptions { f16, max_bytes, conv_as_gemm } = options;
    let mut b = Builder { g, max_bytes, f16, conv_as_gemm, buffers: vec![], value_buf: HashMap::new(), launches: vec![], dummy: None, scratch: None, placed: Default::default(), absorbed: Default::default(), run_check: None, current: Default::default() };
    let (mut inputs, mut spans) = (vec![], vec![]);
    for gi in &g.inputs {
        let shape = g.g[gi.node].outputs[0].shape.clone().ok_or_else(|| Error::Input(format!("input '{}' has no bound shape", gi.name)))?;
        let elem = b.elem_for(Some(gi.dtype));
        let buf = b.new_buffer(shape.iter().product(), elem)?;
        b.value_buf.insert((gi.node, 0), buf);
        inputs.push(PlanInput { buffer: buf, name: gi.name.clone(), shape });
    }
    for n in g.toposort()? {
        let node = &g.g[n];
        let known = node.is_folded();
        if known || matches!(node.op, Op::Input) {
            continue;
        }
        let first = b.launches.len();
        b.current = (node.name.clone(), node.op.name());
        b.node(n).map_err(|e| e.in_node(&node.name, &node.op.name()))?;
        spans.push(NodeSpan { time: crate::backend::NodeTime::of(node, 0.0), launches: first..b.launches.len() });
    }
    let mut outputs = vec![];
    for o in &g.outputs {
        let v = &g.g[o.node].outputs[o.slot];
        let buffer = b.value((o.node, o.slot))?;
        outputs.push(PlanOutput { buffer, shape: v.shape.clone().unwrap_or_default(), dtype: v.dtype.unwrap_or(DType::F32) });
    }
    if let Some(flag) = b.run_check.as_ref().map(|c| c.flag) {
        // Zero the flag first thing in every run (and in the first node's timed launches).
        let zero = b.dummy()?;
        b.copy(zero, 0, &[1], flag, 0, &[1], &[1])?;
        let clear = b.launches.pop().expect("the copy just pushed");
        b.launches.insert(0, clear);
        for s in spans.iter_mut() {
            s.launches = s.launches.start + 1..s.launches.end + 1;
        }
        if let Some(s) = spans.first_mut() {
            s.launches.start = 0;
        }
        outputs.push(PlanOutput { buffer: flag, shape: vec![1], dtype: DType::F32 });
    }
    let mut plan = GpuPlan { buffers: b.buffers, launches: b.launches, inputs, outputs, spans, run_check: b.run_check };
    // HETSCHED_GPU_ARENA=0 gives every buffer its own allocation (to measure what sharing saves).
    if std::env::var("HETSCHED_GPU_ARENA").map_or(true, |v| v != "0") {
        super::arena::share(&mut plan);
    }
    Ok(plan)
}

/// What a backend asks of the lowering.
#[derive(Clone, Copy, Debug)]
pub struct LowerOptions {
    /// Store float tensors as f16.
    pub f16: bool,
    /// Largest buffer the device can bind, in bytes.
    pub max_bytes: u64,
    /// Lower ungrouped convolutions to (im2col copy +) a Matmul launch, for backends whose
    /// Matmul is a vendor GEMM (cuBLAS); the others keep the direct conv2d kernel.
    pub conv_as_gemm: bool,
}

struct Builder<'a> {
    g: &'a Graph,
    conv_as_gemm: bool,
    /// One im2col buffer shared by every convolution (they run in order), sized for the largest.
    scratch: Option<usize>,
    /// Values a Matmul launch wrote straight into their Concat's output (which then skips them).
    placed: std::collections::HashSet<(NodeIndex, usize)>,
    /// Nodes computed inside another node's launch (a bias Add in a MatMul's epilogue).
    absorbed: std::collections::HashSet<NodeIndex>,
    /// Largest buffer the device can bind.
    max_bytes: u64,
    /// Store float tensors as f16.
    f16: bool,
    buffers: Vec<BufferSpec>,
    value_buf: HashMap<(NodeIndex, usize), usize>,
    launches: Vec<Launch>,
    dummy: Option<usize>,
    /// The index check, from the first indexed launch on.
    run_check: Option<crate::backend::gpu::RunCheck>,
    /// The node being lowered: (name, op).
    current: (String, String),
}

impl<'a> Builder<'a> {
    fn check_size(&self, bytes: u64) -> Result<()> {
        if bytes > self.max_bytes {
            return Err(Error::Unsupported { node: String::new(), op: String::new(), what: format!("a {bytes}-byte tensor exceeds the {}-byte buffer the device can bind", self.max_bytes) });
        }
        Ok(())
    }

    /// How a value of `dtype` is stored: f16 tensors as f16, other floats as f16 in f16 mode,
    /// everything else as f32.
    fn elem_for(&self, dtype: Option<DType>) -> Elem {
        // bfloat16 keeps f32 storage: its range exceeds f16's.
        if dtype == Some(DType::F16) || (self.f16 && dtype.is_some_and(|d| d.is_float() && d != DType::BF16)) { Elem::F16 } else { Elem::F32 }
    }

    fn new_buffer(&mut self, len: usize, elem: Elem) -> Result<usize> {
        self.check_size(buffer_bytes(len, elem) as u64)?;
        self.buffers.push(BufferSpec { len, elem, init: None });
        Ok(self.buffers.len() - 1)
    }

    fn data_buffer(&mut self, t: &Tensor, elem: Elem) -> Result<usize> {
        self.check_size(buffer_bytes(t.numel(), elem) as u64)?;
        if crate::backend::gpu::beyond_exact_integer(t).is_some() {
            return Err(Error::Unsupported { node: String::new(), op: String::new(), what: "an integer constant beyond ±2^24 (GPU kernels carry integers as f32, which would round it)".into() });
        }
        self.buffers.push(BufferSpec { len: t.numel(), elem, init: Some(Arc::new(t.clone())) });
        Ok(self.buffers.len() - 1)
    }

    /// The flag buffer and this node's check id, for an indexed launch.
    fn index_check(&mut self) -> Result<(usize, u32)> {
        self.check(crate::backend::gpu::INDEX_OUT_OF_RANGE)
    }

    /// The flag buffer and this node's check id for `what`.
    fn check(&mut self, what: &'static str) -> Result<(usize, u32)> {
        if self.run_check.is_none() {
            let flag = self.new_buffer(1, Elem::F32)?;
            self.run_check = Some(crate::backend::gpu::RunCheck { flag, nodes: vec![] });
        }
        let current = (self.current.0.clone(), self.current.1.clone(), what);
        let check = self.run_check.as_mut().expect("made above");
        if check.nodes.last() != Some(&current) {
            check.nodes.push(current);
        }
        Ok((check.flag, check.nodes.len() as u32))
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
        let src = self.g.source(n, i).ok_or_else(|| Error::Tensor(format!("missing input {i}")))?;
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

    fn step(&mut self, kernel: Kernel, op: OpSpec, params: &[u32], bufs: &[usize], groups: [u32; 3]) -> Result<()> {
        self.launches.push(Launch { kernel, op, params: params.to_vec(), bufs: bufs.to_vec(), grid: groups });
        Ok(())
    }

    /// `o = a op b` over `out_shape`, each operand broadcast from its own shape.
    fn binary(&mut self, op: crate::graph::BinaryOp, a: (usize, &[usize]), b: (usize, &[usize]), o: usize, out_shape: &[usize]) -> Result<()> {
        self.binary_checked(op, a, b, o, out_shape, false)
    }

    /// [`Self::binary`]; with `exact_integers`, a result beyond ±2^24 fails the run (integer
    /// tensors on f32 carriers).
    fn binary_checked(&mut self, op: crate::graph::BinaryOp, (a, sa): (usize, &[usize]), (b, sb): (usize, &[usize]), o: usize, out_shape: &[usize], exact_integers: bool) -> Result<()> {
        let numel: usize = out_shape.iter().product();
        let mut p = vec![numel as u32];
        p.extend(shape6(out_shape));
        p.extend(bcast_strides6(sa, out_shape));
        p.extend(bcast_strides6(sb, out_shape));
        let (flag, id) = if exact_integers { self.check(crate::backend::gpu::INTEGER_BEYOND_F32)? } else { (self.dummy()?, 0) };
        p.push(id);
        self.step(Kernel::Binary, OpSpec::Binary(op), &p, &[a, b, o, flag], grid(numel))
    }

    /// One convolution: im2col + GEMM where the backend's GEMM is a vendor library or the
    /// convolution is 3-D, the direct conv kernel otherwise. `n` is the node whose output `o`
    /// holds.
    #[allow(clippy::too_many_arguments)]
    fn conv(&mut self, n: NodeIndex, shape: ConvShape, group: usize, x: usize, w: usize, bias: Option<usize>, activation: Option<crate::graph::Activation>, o: usize) -> Result<()> {
        let geo = match shape.planar() {
            Some(geo) if !(self.conv_as_gemm && group == 1) => geo,
            _ if group == 1 => {
                let target = self.matmul_output(n, o, shape.n, shape.m * shape.unfolded().1);
                return self.conv_gemm(shape, x, w, bias, activation, target);
            }
            _ => return self.grouped_conv_gemm(n, shape, group, x, activation, o),
        };
        let b = match bias {
            Some(b) => b,
            None => self.dummy()?,
        };
        let mut p = geo.to_vec();
        p.push(group as u32);
        p.push(bias.is_some() as u32);
        p.extend(act_params(activation));
        let numel = geo[0] as usize * geo[4] as usize * geo[5] as usize * geo[6] as usize;
        self.step(Kernel::Conv2d, OpSpec::None, &p, &[x, w, b, o], grid(numel))
    }

    /// An ungrouped convolution as one batched GEMM, Y[n] (M x OD*OH*OW) = W (M x C*KD*KH*KW) *
    /// cols[n], with bias and activation in the Matmul's epilogue, written to `(buffer, c_base,
    /// c_batch)` (see [`Self::matmul_output`]). A pointwise convolution reads the input in place;
    /// otherwise the Im2col kernel unfolds it (zeros for the padding) into the shared im2col
    /// buffer.
    fn conv_gemm(&mut self, shape: ConvShape, x: usize, w: usize, bias: Option<usize>, activation: Option<crate::graph::Activation>, (o, c_base, c_batch): (usize, u32, u32)) -> Result<()> {
        let (n, m) = (shape.n, shape.m);
        let (k, pixels) = shape.unfolded();
        let cols = if shape.axes.pointwise() {
            x
        } else {
            let cols = self.scratch(n * k * pixels, self.buffers[x].elem)?;
            self.step(Kernel::Im2col, OpSpec::None, &shape.im2col_params(), &[x, cols], grid(n * k * pixels))?;
            cols
        };
        let b = match bias {
            Some(b) => b,
            None => self.dummy()?,
        };
        let mut p = vec![m as u32, pixels as u32, k as u32, 0, k as u32, 1, (k * pixels) as u32, pixels as u32, 1, bias.is_some() as u32, 1, 0, 1f32.to_bits(), 1f32.to_bits()];
        p.extend(act_params(activation));
        p.extend([c_base, c_batch]);
        self.step(Kernel::Matmul, OpSpec::None, &p, &[w, cols, b, o], [pixels.div_ceil(16) as u32, m.div_ceil(16) as u32, n as u32])
    }

    /// A grouped 3-D convolution (of Conv node `n`, constant weights and bias) as one GEMM per
    /// group: the group's input channels copied out, its weights and bias as their own
    /// constants, its product written straight into its output channels.
    fn grouped_conv_gemm(&mut self, n: NodeIndex, shape: ConvShape, group: usize, x: usize, activation: Option<crate::graph::Activation>, o: usize) -> Result<()> {
        let node = &self.g.g[n];
        if !matches!(node.op, Op::Conv { .. }) {
            crate::unsupported!("grouped 3-D {} on the GPU (node '{}')", node.op.name(), node.name);
        }
        let constant = |i: usize, what: &str| self.g.input_const(n, i).map(|t| t.to_f64_vec()).ok_or_else(|| Error::Tensor(format!("grouped 3-D Conv '{}' needs constant {what} on the GPU", node.name)));
        let weights = constant(1, "weights")?;
        let bias = if self.g.source(n, 2).is_some() { Some(constant(2, "bias")?) } else { None };
        let (cg, mg) = (shape.c / group, shape.m / group);
        let (vol, pixels) = (shape.axes.input.iter().product::<usize>(), shape.unfolded().1);
        let per_group = ConvShape { c: cg, m: mg, ..shape };
        let (k, elem) = (per_group.unfolded().0, self.elem_for(Some(DType::F32)));
        let xg = self.new_buffer(shape.n * cg * vol, self.buffers[x].elem)?;
        let view = [shape.n, cg, vol];
        for g in 0..group {
            let src = [(shape.c * vol) as isize, vol as isize, 1];
            self.copy(x, (g * cg * vol) as isize, &src, xg, 0, &movement::dense(&view), &view)?;
            let wg: Vec<f32> = weights[g * mg * k..(g + 1) * mg * k].iter().map(|&v| v as f32).collect();
            let wb = self.data_buffer(&Tensor::from_f32(&[mg, k], wg)?, elem)?;
            let bb = match &bias {
                Some(b) => Some(self.data_buffer(&Tensor::from_f32(&[mg], b[g * mg..(g + 1) * mg].iter().map(|&v| v as f32).collect())?, elem)?),
                None => None,
            };
            self.conv_gemm(per_group, xg, wb, bb, activation, (o, (g * mg * pixels) as u32, (shape.m * pixels) as u32))?;
        }
        Ok(())
    }

    /// Where a Matmul launch of node `n` writes its `batch` products of `each` elements: `(buffer,
    /// c_base, c_batch)`. Normally its own output buffer `o`, densely; but when the node's only
    /// use is one input of a Concat whose slices are exactly those products, straight into the
    /// Concat's output (which then skips that input's copy; `o` shrinks to nothing).
    fn matmul_output(&mut self, n: NodeIndex, o: usize, batch: usize, each: usize) -> (usize, u32, u32) {
        let dense = (o, 0, each as u32);
        let key = (n, 0);
        let Some((c, slot)) = self.g.sole_use(n, 0) else { return dense };
        let Op::Concat { axis } = &self.g.g[c].op else { return dense };
        let cv = &self.g.g[c].outputs[0];
        let (Some(out_shape), true) = (cv.shape.clone(), cv.value.is_none()) else { return dense };
        let Ok(ax) = norm_axis(*axis, out_shape.len()) else { return dense };
        let xs = self.in_shape(c, slot);
        let outer: usize = out_shape[..ax].iter().product();
        if outer != batch || xs.len() != out_shape.len() || xs[ax..].iter().product::<usize>() != each || self.elem_for(cv.dtype) != self.buffers[o].elem {
            return dense;
        }
        let before: usize = (0..slot).filter(|&i| self.g.source(c, i).is_some()).map(|i| self.in_shape(c, i)[ax]).sum();
        let inner: usize = out_shape[ax + 1..].iter().product();
        let target = match self.value_buf.get(&(c, 0)) {
            Some(&b) => b,
            None => match self.output(c, 0) {
                Ok(b) => b,
                Err(_) => return dense,
            },
        };
        self.placed.insert(key);
        self.value_buf.insert(key, target);
        self.buffers[o].len = 0;
        (target, (before * inner) as u32, out_shape[ax..].iter().product::<usize>() as u32)
    }

    /// If the only use of MatMul `n`'s output (`cols` columns) is an Add of a constant bias over
    /// those columns that keeps the product's shape, absorbs the Add: returns it and the bias's
    /// buffer.
    fn bias_add_after(&mut self, n: NodeIndex, cols: usize) -> Result<Option<(NodeIndex, usize)>> {
        let Some((add, slot)) = self.g.sole_use(n, 0) else { return Ok(None) };
        if !matches!(self.g.g[add].op, Op::Binary(crate::graph::BinaryOp::Add)) || self.g.g[add].outputs[0].shape != self.g.g[n].outputs[0].shape {
            return Ok(None);
        }
        let Some(bias) = self.g.input_const(add, 1 - slot) else { return Ok(None) };
        let row = bias.shape().last() == Some(&cols) && bias.numel() == cols;
        if !row || !matches!(bias.dtype(), DType::F32 | DType::F16) {
            return Ok(None);
        }
        let buf = self.input(add, 1 - slot)?;
        self.absorbed.insert(add);
        Ok(Some((add, buf)))
    }

    /// The shared im2col buffer, grown to at least `len` elements.
    fn scratch(&mut self, len: usize, elem: Elem) -> Result<usize> {
        match self.scratch {
            Some(b) if self.buffers[b].elem == elem => {
                self.check_size(buffer_bytes(len, elem) as u64)?;
                self.buffers[b].len = self.buffers[b].len.max(len);
                Ok(b)
            }
            _ => {
                let b = self.new_buffer(len, elem)?;
                self.scratch = Some(b);
                Ok(b)
            }
        }
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
        self.step(Kernel::Copy, OpSpec::None, &p, &[src, dst], grid(n))
    }

    fn rows(&mut self, x: usize, rows: usize, len: usize, kind: u32, eps: f32, scale: Option<usize>, shift: Option<usize>, out: usize) -> Result<()> {
        let d = self.dummy()?;
        let p = [rows as u32, len as u32, kind, eps.to_bits(), shift.is_some() as u32];
        self.step(Kernel::Rows, OpSpec::None, &p, &[x, scale.unwrap_or(d), shift.unwrap_or(d), out], grid(rows))
    }

    fn node(&mut self, n: NodeIndex) -> Result<()> {
        if self.absorbed.contains(&n) {
            return Ok(());
        }
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
                if !unary_supported(*u) {
                    return Err(Error::Tensor(format!("{u:?} has no GPU kernel")));
                }
                let (x, o) = (self.input(n, 0)?, self.output(n, 0)?);
                self.step(Kernel::Unary, OpSpec::Unary(*u), &[numel as u32, 0, 0], &[x, o], grid(numel))?;
            }
            Op::Clip { min, max } => {
                let bound = |i: usize, attr: Option<f32>, dflt: f32| -> f32 {
                    self.g.input_const(n, i).and_then(|t| t.to_f64_vec().first().map(|&v| v as f32)).or(attr).unwrap_or(dflt)
                };
                let (lo, hi) = (bound(1, *min, f32::MIN), bound(2, *max, f32::MAX));
                let (x, o) = (self.input(n, 0)?, self.output(n, 0)?);
                self.step(Kernel::Unary, OpSpec::Clip, &[numel as u32, lo.to_bits(), hi.to_bits()], &[x, o], grid(numel))?;
            }
            Op::Cast { .. } | Op::CastLike => {
                let to = node.outputs[0].dtype.unwrap_or(DType::F32);
                let (x, o) = (self.input(n, 0)?, self.output(n, 0)?);
                self.step(Kernel::Unary, OpSpec::Cast(to), &[numel as u32, 0, 0], &[x, o], grid(numel))?;
            }
            Op::Binary(b) => {
                if !binary_supported(*b) {
                    return Err(Error::Tensor(format!("{b:?} has no GPU kernel")));
                }
                let (sa, sb) = (self.in_shape(n, 0), self.in_shape(n, 1));
                let (a, bb, o) = (self.input(n, 0)?, self.input(n, 1)?, self.output(n, 0)?);
                use crate::graph::BinaryOp::{Add, Mul, Sub};
                let integer = node.outputs[0].dtype.is_some_and(|d| !d.is_float() && d != DType::Bool);
                self.binary_checked(*b, (a, &sa), (bb, &sb), o, &out_shape, integer && matches!(b, Add | Sub | Mul))?;
            }
            Op::Where => {
                let shapes: Vec<Vec<usize>> = (0..3).map(|i| self.in_shape(n, i)).collect();
                let bufs = [self.input(n, 0)?, self.input(n, 1)?, self.input(n, 2)?, self.output(n, 0)?];
                let mut p = vec![numel as u32];
                p.extend(shape6(&out_shape));
                for s in &shapes {
                    p.extend(bcast_strides6(s, &out_shape));
                }
                self.step(Kernel::Where, OpSpec::None, &p, &bufs, grid(numel))?;
            }
            Op::Conv { window, group, activation } => {
                let (xs, ws) = (self.in_shape(n, 0), self.in_shape(n, 1));
                let shape = ConvShape::new(&xs, &ws, &out_shape, window)?.ok_or_else(|| Error::Tensor(format!("Conv of X {xs:?} and W {ws:?} on the GPU")))?;
                let has_bias = self.g.source(n, 2).is_some();
                let x = self.input(n, 0)?;
                let w = self.input(n, 1)?;
                let b = if has_bias { Some(self.input(n, 2)?) } else { None };
                let o = self.output(n, 0)?;
                self.conv(n, shape, *group, x, w, b, *activation, o)?;
            }
            Op::Pool { kind, window } => {
                let xs = self.in_shape(n, 0);
                let fail = || Error::Tensor(format!("Pool of {xs:?} into {out_shape:?} on the GPU"));
                let (x_sp, out_sp) = (xs.get(2..).ok_or_else(fail)?, out_shape.get(2..).ok_or_else(fail)?);
                let axes = ConvAxes::new(window, x_sp, &window.kernel_shape, out_sp)?.ok_or_else(fail)?;
                let kind_id = match kind {
                    PoolKind::Max => 0,
                    PoolKind::Average { count_include_pad: false } => 1,
                    _ => 2,
                };
                let mut p = vec![xs[0] * xs[1]];
                for v in [axes.input, axes.out, axes.kernel, axes.strides, axes.pads, axes.dilations] {
                    p.extend(v);
                }
                p.push(kind_id);
                p.extend(axes.pad_ends);
                let p: Vec<u32> = p.into_iter().map(|v| v as u32).collect();
                let (x, o) = (self.input(n, 0)?, self.output(n, 0)?);
                self.step(Kernel::Pool, OpSpec::None, &p, &[x, o], grid(numel))?;
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
                    let t = self.new_buffer(xs.iter().product(), self.buffers[x].elem)?;
                    self.permute(x, &xs, &perm, t)?;
                    x = t;
                }
                let o = self.output(n, 0)?;
                let d = self.dummy()?;
                let p = [rows as u32, len as u32, kind, 0, last as u32];
                self.step(Kernel::Rows, OpSpec::None, &p, &[x, d, d, o], grid(rows))?;
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
                if !*legacy && ax + 1 != xs.len() {
                    return self.composite(n);
                }
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
                let has_bias = self.g.source(n, 2).is_some();
                let x = self.input(n, 0)?;
                let s = self.input(n, 1)?;
                let b = if has_bias { Some(self.input(n, 2)?) } else { None };
                let o = self.output(n, 0)?;
                let rows = numel / len.max(1);
                self.rows(x, rows, len, 6, *epsilon, Some(s), b, o)?;
                if self.g.g[n].outputs.iter().skip(1).any(|v| !v.name.is_empty()) {
                    self.layer_norm_stats(n, x, rows, len, *epsilon)?;
                }
            }
            Op::Gemm { alpha, beta, trans_a, trans_b, activation } => {
                let (a_s, b_s) = (self.in_shape(n, 0), self.in_shape(n, 1));
                let (m, k) = if *trans_a { (a_s[1], a_s[0]) } else { (a_s[0], a_s[1]) };
                let nn = out_shape[1];
                let (a_rs, a_cs) = if *trans_a { (1, a_s[1]) } else { (a_s[1], 1) };
                let (b_rs, b_cs) = if *trans_b { (1, b_s[1]) } else { (b_s[1], 1) };
                let has_c = self.g.source(n, 2).is_some() && *beta != 0.0;
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
                let (o, c_base, c_batch) = self.matmul_output(n, o, 1, m * nn);
                p.extend([c_base, c_batch]);
                self.step(Kernel::Matmul, OpSpec::None, &p, &[a, b, c, o], [nn.div_ceil(16) as u32, m.div_ceil(16) as u32, 1])?;
            }
            Op::MatMul => {
                let (batch, m, k, nn, sa, sb) = matmul_batches(self.g, n).ok_or_else(|| Error::Tensor("MatMul batch broadcast not supported on the GPU".into()))?;
                let (a, b) = (self.input(n, 0)?, self.input(n, 1)?);
                // A following bias Add runs in the product's epilogue; the launch then produces
                // the Add's output.
                let (out, bias) = match self.bias_add_after(n, nn)? {
                    Some((add, bias)) => (add, Some(bias)),
                    None => (n, None),
                };
                let d = match bias {
                    Some(b) => b,
                    None => self.dummy()?,
                };
                let o = self.output(out, 0)?;
                let beta = if bias.is_some() { 1f32 } else { 0f32 };
                let mut p = vec![m as u32, nn as u32, k as u32, sa as u32, k as u32, 1, sb as u32, nn as u32, 1, bias.is_some() as u32, 0, 1, 1f32.to_bits(), beta.to_bits()];
                p.extend(act_params(None));
                let (o, c_base, c_batch) = self.matmul_output(out, o, batch, m * nn);
                p.extend([c_base, c_batch]);
                self.step(Kernel::Matmul, OpSpec::None, &p, &[a, b, d, o], [nn.div_ceil(16) as u32, m.div_ceil(16) as u32, batch as u32])?;
            }
            Op::Transpose { .. } | Op::Slice | Op::Expand | Op::Concat { .. } | Op::Split { .. } | Op::Pad { .. } | Op::Tile | Op::DepthToSpace { .. } | Op::SpaceToDepth { .. } | Op::Resize(_) | Op::GatherElements { .. } | Op::GatherNd { .. } | Op::ScatterElements { .. } | Op::ScatterNd { .. } | Op::GridSample(_) => self.movement(n)?,
            Op::Attention(_) => self.attention(n)?,
            Op::Einsum { .. } => self.einsum(n)?,
            Op::BatchNorm { .. } | Op::InstanceNorm { .. } | Op::Variadic { .. } | Op::ConvTranspose { .. } | Op::Trilu { .. } | Op::Cumulative { .. } => self.composite(n)?,
            Op::Rotary { .. } => self.rotary(n)?,
            Op::TopK { axis, largest } => {
                let xs = self.in_shape(n, 0);
                let ax = norm_axis(*axis, xs.len())?;
                let (len, inner, k) = (xs[ax], xs[ax + 1..].iter().product::<usize>(), out_shape[ax]);
                let total: usize = xs.iter().product();
                let (x, values) = (self.input(n, 0)?, self.output(n, 0)?);
                let indices = if node.outputs.len() > 1 { self.output(n, 1)? } else { self.new_buffer(numel, Elem::F32)? };
                let p = [total, len, inner, k, *largest as usize].map(|v| v as u32);
                self.step(Kernel::TopK, OpSpec::None, &p, &[x, values, indices], grid(total))?;
            }
            Op::Gather { axis } => {
                let xs = self.in_shape(n, 0);
                let ax = norm_axis(*axis, xs.len())?;
                let count: usize = self.in_shape(n, 1).iter().product();
                let inner: usize = xs[ax + 1..].iter().product();
                let (x, idx, o) = (self.input(n, 0)?, self.input(n, 1)?, self.output(n, 0)?);
                let (flag, id) = self.index_check()?;
                self.step(Kernel::Gather, OpSpec::None, &[numel as u32, xs[ax] as u32, count as u32, inner as u32, id], &[x, idx, o, flag], grid(numel))?;
            }
            other => return Err(Error::Unsupported { node: String::new(), op: String::new(), what: format!("{} on the GPU", other.name()) }),
        }
        Ok(())
    }
}

