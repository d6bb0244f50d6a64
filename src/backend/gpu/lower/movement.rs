//! Data movement on the GPU: each op here is one or more launches of the strided copy kernel
//! (or of the taps kernel, for Resize). Transposes, slices, broadcasts, concatenation,
//! splits, padding (every mode, as taps), tiling, depth/space rearrangements, and the indexed
//! gathers and scatters (Elements, ND).

use super::Builder;
use crate::backend::gpu::layout::*;
use crate::backend::gpu::{Kernel, OpSpec};
use crate::error::{Error, Result};
use crate::graph::infer::{pad_axes, slice_axes};
use crate::graph::Op;
use crate::tensor::{norm_axis, strides_of, Tensor};
use petgraph::stable_graph::NodeIndex;

fn numel_of(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Dense row-major strides as signed steps.
pub(super) fn dense(shape: &[usize]) -> Vec<isize> {
    strides_of(shape).iter().map(|&s| s as isize).collect()
}

impl Builder<'_> {
    /// Input `i` of `n` as integers: `None` if absent, an error if it is not a constant.
    pub(super) fn const_ints(&self, n: NodeIndex, i: usize) -> Result<Option<Vec<i64>>> {
        match self.g.source(n, i) {
            None => Ok(None),
            Some(_) => {
                let t = self.g.input_const(n, i).ok_or_else(|| Error::Tensor(format!("input {i} must be a constant on the GPU")))?;
                Ok(Some(t.to_i64_vec()?))
            }
        }
    }

    /// Copies `x` viewed as `view` (dense) and permuted by `perm` into `o`, densely.
    pub(super) fn permute(&mut self, x: usize, view: &[usize], perm: &[usize], o: usize) -> Result<()> {
        let st = dense(view);
        let src: Vec<isize> = perm.iter().map(|&d| st[d]).collect();
        let shape: Vec<usize> = perm.iter().map(|&d| view[d]).collect();
        self.copy(x, 0, &src, o, 0, &dense(&shape), &shape)
    }

    /// Writes `value` into every element of `o`, viewed as `shape`.
    pub(super) fn fill(&mut self, o: usize, value: f32, shape: &[usize]) -> Result<()> {
        let v = self.data_buffer(&Tensor::scalar_f32(value), self.buffers[o].elem)?;
        self.copy(v, 0, &vec![0; shape.len()], o, 0, &dense(shape), shape)
    }

    /// Node `n`'s output from input 0 (shape `xs`) by one taps launch per axis with a table
    /// (`(taps per position, [source, weight] pairs)`), innermost first; `outside` is the
    /// value of positions whose source is -1. No tables: the output is the input.
    fn taps_per_axis(&mut self, n: NodeIndex, xs: &[usize], tables: Vec<Option<(usize, Vec<f32>)>>, outside: f32) -> Result<()> {
        let mut cur = self.input(n, 0)?;
        let mut shape = xs.to_vec();
        let axes: Vec<usize> = (0..xs.len()).filter(|&d| tables[d].is_some()).collect();
        if axes.is_empty() {
            self.value_buf.insert((n, 0), cur);
        }
        for (j, &d) in axes.iter().rev().enumerate() {
            let (width, table) = tables[d].clone().unwrap_or_default();
            let (src_len, count, inner) = (shape[d], table.len() / (2 * width.max(1)), shape[d + 1..].iter().product::<usize>());
            shape[d] = count;
            let numel: usize = shape.iter().product();
            let dst = if j + 1 == axes.len() { self.output(n, 0)? } else { self.new_buffer(numel, self.buffers[cur].elem)? };
            let tb = self.data_buffer(&Tensor::from_f32(&[table.len()], table)?, crate::backend::gpu::Elem::F32)?;
            let p = [numel as u32, src_len as u32, count as u32, inner as u32, width as u32, outside.to_bits()];
            self.step(Kernel::Taps, OpSpec::None, &p, &[cur, tb, dst], grid(numel))?;
            cur = dst;
        }
        Ok(())
    }

    /// GatherElements (`c[i] = a[at]`) or ScatterElements (`c[at] = a[i]`) over the elements of
    /// the index tensor (shape `index_shape`), `at` being the same coordinates in the other
    /// tensor (shape `other`) but idx[i] on `axis`.
    #[allow(clippy::too_many_arguments)]
    fn elements(&mut self, a: usize, idx: usize, c: usize, index_shape: &[usize], other: &[usize], axis: usize, scatter: bool) -> Result<()> {
        let count = numel_of(index_shape);
        if count == 0 {
            return Ok(());
        }
        let mut st = dense(other);
        let axis_stride = std::mem::replace(&mut st[axis], 0);
        let mut p = vec![count as u32];
        p.extend(shape6(index_shape));
        p.extend(i32_6(&st));
        p.extend([other[axis] as u32, axis_stride as u32, scatter as u32]);
        let (flag, id) = self.index_check()?;
        p.push(id);
        self.step(Kernel::Elements, OpSpec::None, &p, &[a, idx, c, flag], grid(count))
    }

    /// GatherND (`c[i] = a[at]`) or ScatterND (`c[at] = a[i]`) with batch_dims 0 over `count`
    /// slice elements: the index tensor's last axis (q) addresses the first q axes of the
    /// indexed tensor (shape `indexed`).
    #[allow(clippy::too_many_arguments)]
    fn nd(&mut self, a: usize, idx: usize, c: usize, index_shape: &[usize], indexed: &[usize], count: usize, scatter: bool) -> Result<()> {
        let q = index_shape.last().copied().unwrap_or(0);
        if count == 0 || q > 6 || q > indexed.len() {
            return if count == 0 { Ok(()) } else { Err(Error::Tensor(format!("index tuples of {q} for a rank-{} tensor", indexed.len()))) };
        }
        let st = dense(indexed);
        let (mut dims, mut strides) = ([0u32; 6], [0u32; 6]);
        for t in 0..q {
            (dims[t], strides[t]) = (indexed[t] as u32, st[t] as u32);
        }
        let mut p = vec![count as u32, q as u32, numel_of(&indexed[q..]) as u32];
        p.extend(dims);
        p.extend(strides);
        p.push(scatter as u32);
        let (flag, id) = self.index_check()?;
        p.push(id);
        self.step(Kernel::Nd, OpSpec::None, &p, &[a, idx, c, flag], grid(count))
    }

    pub(super) fn movement(&mut self, n: NodeIndex) -> Result<()> {
        let node = &self.g.g[n];
        let out_shape = node.outputs[0].shape.clone().unwrap_or_default();
        let xs = self.in_shape(n, 0);
        match &node.op {
            Op::Transpose { perm } => {
                let p = perm.clone().unwrap_or_else(|| (0..xs.len()).rev().collect());
                let (x, o) = (self.input(n, 0)?, self.output(n, 0)?);
                self.permute(x, &xs, &p, o)?;
            }
            Op::DepthToSpace { blocksize: b, crd } => {
                let (nn, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
                let (view, perm) = if *crd { (vec![nn, c / (b * b), *b, *b, h, w], [0, 1, 4, 2, 5, 3]) } else { (vec![nn, *b, *b, c / (b * b), h, w], [0, 3, 4, 1, 5, 2]) };
                let (x, o) = (self.input(n, 0)?, self.output(n, 0)?);
                self.permute(x, &view, &perm, o)?;
            }
            Op::SpaceToDepth { blocksize: b } => {
                let view = [xs[0], xs[1], xs[2] / b, *b, xs[3] / b, *b];
                let (x, o) = (self.input(n, 0)?, self.output(n, 0)?);
                self.permute(x, &view, &[0, 3, 5, 1, 2, 4], o)?;
            }
            Op::Slice => {
                let ints = |i: usize| self.const_ints(n, i);
                let axes = slice_axes(&xs, &ints(1)?.unwrap_or_default(), &ints(2)?.unwrap_or_default(), ints(3)?.as_deref(), ints(4)?.as_deref())?;
                let st = strides_of(&xs);
                let base: isize = axes.iter().zip(&st).map(|(a, &s)| a.start as isize * s as isize).sum();
                let src: Vec<isize> = axes.iter().zip(&st).map(|(a, &s)| a.step as isize * s as isize).collect();
                let (x, o) = (self.input(n, 0)?, self.output(n, 0)?);
                self.copy(x, base, &src, o, 0, &dense(&out_shape), &out_shape)?;
            }
            Op::Split { axis, .. } => {
                let ax = norm_axis(*axis, xs.len())?;
                let st = dense(&xs);
                let x = self.input(n, 0)?;
                let mut start = 0;
                for slot in 0..node.outputs.len() {
                    let shape = node.outputs[slot].shape.clone().unwrap_or_default();
                    let o = self.output(n, slot)?;
                    self.copy(x, start as isize * st[ax], &st, o, 0, &dense(&shape), &shape)?;
                    start += shape[ax];
                }
            }
            Op::Expand => {
                let src: Vec<isize> = bcast_strides6(&xs, &out_shape).iter().skip(6 - out_shape.len()).map(|&s| s as isize).collect();
                let (x, o) = (self.input(n, 0)?, self.output(n, 0)?);
                self.copy(x, 0, &src, o, 0, &dense(&out_shape), &out_shape)?;
            }
            Op::Tile => {
                let reps = self.const_ints(n, 1)?.unwrap_or_default();
                let (shape, src, dst) = tile_view(&xs, &reps).ok_or_else(|| Error::Tensor(format!("Tile of {xs:?} by {reps:?} needs more than 6 dimensions")))?;
                let (x, o) = (self.input(n, 0)?, self.output(n, 0)?);
                self.copy(x, 0, &src, o, 0, &dst, &shape)?;
            }
            Op::Pad { mode } => {
                let pads = self.const_ints(n, 1)?.unwrap_or_default();
                let axes = pad_axes(xs.len(), self.const_ints(n, 3)?)?;
                if pads.len() != 2 * axes.len() {
                    return Err(Error::Tensor(format!("{} pads for {} axes", pads.len(), axes.len())));
                }
                let value = self.g.input_const(n, 2).and_then(|t| t.to_f64_vec().first().copied()).unwrap_or(0.0) as f32;
                // One taps launch per padded axis: a source per output position, or the fill.
                let mut tables = vec![None; xs.len()];
                for (k, &d) in axes.iter().enumerate() {
                    let begin = pads[k];
                    if begin != 0 || pads[k + axes.len()] != 0 {
                        let sources = crate::backend::cpu::misc::pad_sources(xs[d], out_shape[d], begin, *mode)?;
                        tables[d] = Some((1, sources.into_iter().flat_map(|s| s.map_or([-1.0, 0.0], |i| [i as f32, 1.0])).collect()));
                    }
                }
                self.taps_per_axis(n, &xs, tables, value)?;
            }
            Op::Resize(attrs) => {
                let tables = resize_tables(self.g, n).ok_or_else(|| Error::Tensor("Resize needs constant scales, sizes and roi on the GPU".into()))?;
                self.taps_per_axis(n, &xs, tables, attrs.extrapolation)?;
            }
            Op::GatherElements { axis } => {
                let ax = norm_axis(*axis, xs.len())?;
                let (x, idx, o) = (self.input(n, 0)?, self.input(n, 1)?, self.output(n, 0)?);
                self.elements(x, idx, o, &self.in_shape(n, 1), &xs, ax, false)?;
            }
            Op::GatherNd { .. } => {
                let (x, idx, o) = (self.input(n, 0)?, self.input(n, 1)?, self.output(n, 0)?);
                self.nd(x, idx, o, &self.in_shape(n, 1), &xs, numel_of(&out_shape), false)?;
            }
            Op::ScatterElements { .. } | Op::ScatterNd { .. } => {
                // The data, then each update written over it (reduction "none": no two updates
                // share a target).
                let (x, idx, updates, o) = (self.input(n, 0)?, self.input(n, 1)?, self.input(n, 2)?, self.output(n, 0)?);
                self.copy(x, 0, &dense(&xs), o, 0, &dense(&xs), &xs)?;
                let (is, us) = (self.in_shape(n, 1), self.in_shape(n, 2));
                match &node.op {
                    Op::ScatterElements { axis, .. } => self.elements(updates, idx, o, &is, &xs, norm_axis(*axis, xs.len())?, true)?,
                    _ => self.nd(updates, idx, o, &is, &xs, numel_of(&us), true)?,
                }
            }
            Op::GridSample(at) => {
                let (x, grid_buf, o) = (self.input(n, 0)?, self.input(n, 1)?, self.output(n, 0)?);
                let mode = match at.mode {
                    crate::graph::GridInterp::Nearest => 0,
                    crate::graph::GridInterp::Linear => 1,
                    crate::graph::GridInterp::Cubic => 2,
                };
                let padding = match at.padding {
                    crate::graph::GridPadding::Zeros => 0,
                    crate::graph::GridPadding::Border => 1,
                    crate::graph::GridPadding::Reflection => 2,
                };
                let count = numel_of(&out_shape);
                if count > 0 && xs[2..].contains(&0) {
                    return Err(Error::Tensor(format!("cannot sample an empty input {xs:?}")));
                }
                let p = [count, xs[1], xs[2], xs[3], out_shape[2], out_shape[3], mode, padding, at.align_corners as usize].map(|v| v as u32);
                self.step(Kernel::GridSample, OpSpec::None, &p, &[x, grid_buf, o], grid(count))?;
            }
            Op::Concat { axis } => {
                let ax = norm_axis(*axis, out_shape.len())?;
                let o = match self.value_buf.get(&(n, 0)) {
                    Some(&o) => o,
                    None => self.output(n, 0)?,
                };
                let dst = dense(&out_shape);
                let mut offset = 0;
                for i in 0..node.num_inputs {
                    let Some(src) = self.g.source(n, i) else { continue };
                    let shape = self.in_shape(n, i);
                    if self.placed.contains(&src) {
                        offset += shape[ax];
                        continue;
                    }
                    let x = self.input(n, i)?;
                    self.copy(x, 0, &dense(&shape), o, offset * dst[ax] as usize, &dst, &shape)?;
                    offset += shape[ax];
                }
            }
            other => return Err(Error::Tensor(format!("{} is not a data-movement op", other.name()))),
        }
        Ok(())
    }
}
