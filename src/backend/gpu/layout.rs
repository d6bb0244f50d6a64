//! Launch geometry and data layout for the GPU kernels (wgpu and CUDA share the layouts): dispatch grids, 6-D padded shapes and
//! strides, host <-> device element encoding, and which reductions and matmuls map onto the
//! row and GEMM kernels.

use super::{Elem, BLOCK};
use crate::graph::geometry::ConvAxes;
use crate::graph::infer::reduce_axes;
use crate::graph::{Activation, Graph, Op};
use crate::tensor::{norm_axis, strides_of, DType, Data, Tensor};
use petgraph::stable_graph::NodeIndex;

/// 1-D work of `n` items as a 2-D grid of BLOCK-wide workgroups (thread blocks).
pub fn grid(n: usize) -> [u32; 3] {
    let groups = n.div_ceil(BLOCK as usize).max(1);
    let x = groups.min(65535);
    [x as u32, groups.div_ceil(x) as u32, 1]
}

/// Left-pads a shape to 6 dims with 1s.
pub fn shape6(s: &[usize]) -> [u32; 6] {
    let mut out = [1u32; 6];
    for (i, &d) in s.iter().enumerate() {
        out[6 - s.len() + i] = d as u32;
    }
    out
}

/// Strides of `input` broadcast against `out` (0 on broadcast axes), left-padded to 6 dims.
pub fn bcast_strides6(input: &[usize], out: &[usize]) -> [u32; 6] {
    let st = strides_of(input);
    let mut res = [0u32; 6];
    for (i, (&d, &s)) in input.iter().zip(&st).enumerate() {
        let pos = 6 - input.len() + i;
        let o = out[out.len() - input.len() + i];
        res[pos] = if d == 1 && o != 1 { 0 } else { s as u32 };
    }
    res
}

pub fn i32_6(v: &[isize]) -> [u32; 6] {
    let mut out = [0u32; 6];
    for (i, &x) in v.iter().enumerate() {
        out[6 - v.len() + i] = (x as i32) as u32;
    }
    out
}

pub fn carrier(t: &Tensor) -> Vec<f32> {
    match t.data() {
        Data::F32(v) => v.clone(),
        d => d.to_f64_vec().into_iter().map(|x| x as f32).collect(),
    }
}

/// Device bytes of a tensor stored as `elem` (padded to a multiple of 4 bytes).
pub fn encode(t: &Tensor, elem: Elem) -> Vec<u8> {
    let mut bytes = vec![0u8; buffer_bytes(t.numel(), elem)];
    encode_into(t, elem, &mut bytes);
    bytes
}

/// Writes `t` stored as `elem` into `dst` (at least its encoded size; the rest is zeroed).
/// An f32 tensor stored as f32 is one copy: no intermediate buffer, which matters for batched
/// image inputs of tens of megabytes written straight into pinned staging.
pub fn encode_into(t: &Tensor, elem: Elem, dst: &mut [u8]) {
    let converted;
    let values: &[f32] = match t.data() {
        Data::F32(v) => v,
        _ => {
            converted = carrier(t);
            &converted
        }
    };
    let used = values.len() * elem.bytes();
    match elem {
        Elem::F32 => dst[..used].copy_from_slice(bytemuck::cast_slice(values)),
        Elem::F16 => {
            for (d, &x) in dst[..used].chunks_exact_mut(2).zip(values) {
                d.copy_from_slice(&half::f16::from_f32(x).to_bits().to_le_bytes());
            }
        }
    }
    dst[used..].fill(0);
}

pub fn decode(bytes: &[u8], elem: Elem, n: usize) -> Vec<f32> {
    match elem {
        Elem::F32 => bytemuck::cast_slice::<u8, f32>(bytes)[..n].to_vec(),
        Elem::F16 => bytes.chunks_exact(2).take(n).map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()).collect(),
    }
}

/// The output tensor of dtype `dtype` from its f32 carrier values (integers were carried exactly
/// and are rounded back).
pub fn output_tensor(shape: &[usize], carrier: Vec<f32>, dtype: DType) -> crate::error::Result<Tensor> {
    let t = Tensor::from_f32(shape, carrier)?;
    if dtype == DType::F32 {
        Ok(t)
    } else if dtype.is_float() {
        crate::backend::cpu::elementwise::cast(&t, dtype)
    } else {
        let rounded: Vec<f64> = t.to_f64_vec().iter().map(|v| v.round()).collect();
        crate::backend::cpu::elementwise::cast(&Tensor::new(shape.to_vec(), Data::F64(rounded))?, dtype)
    }
}

/// Bytes a buffer of `len` elements of `elem` occupies on a device (a multiple of 4, at least 4).
pub fn buffer_bytes(len: usize, elem: Elem) -> usize {
    (len.max(1) * elem.bytes()).div_ceil(4) * 4
}

pub fn act_params(a: Option<Activation>) -> [u32; 3] {
    match a {
        None => [0, 0, 0],
        Some(Activation::Relu) => [1, 0, 0],
        Some(Activation::Clip { min, max }) => [2, min.to_bits(), max.to_bits()],
        Some(Activation::Swish(alpha)) => [3, alpha.to_bits(), 0],
        Some(Activation::HardSwish) => [4, 0, 0],
    }
}

/// How a reduction runs: the permutation that moves the reduced axes last (None when they are
/// already trailing), the rows and the row length. None when the axes are not plan-time
/// constants or nothing (or an empty set) is reduced.
pub fn reduce_plan(g: &Graph, n: NodeIndex) -> Option<(Option<Vec<usize>>, usize, usize)> {
    let shape = g.input_value(n, 0)?.shape.clone()?;
    let red: Vec<usize> = match &g.g[n].op {
        Op::Reduce { axes, noop_with_empty_axes, .. } => {
            let axes = match axes {
                Some(a) => Some(a.clone()),
                None => match g.source(n, 1) {
                    Some(_) => Some(g.input_const(n, 1)?.to_i64_vec().ok()?),
                    None => None,
                },
            };
            reduce_axes(shape.len(), axes.as_deref(), *noop_with_empty_axes).ok()?
        }
        Op::ArgExtreme { axis, .. } => vec![norm_axis(*axis, shape.len()).ok()?],
        _ => return None,
    };
    let len: usize = red.iter().map(|&a| shape[a]).product();
    if red.is_empty() || len == 0 {
        return None;
    }
    let k = red.len();
    let trailing = red.iter().enumerate().all(|(i, &a)| a == shape.len() - k + i);
    let perm = (!trailing).then(|| (0..shape.len()).filter(|d| !red.contains(d)).chain(red.iter().copied()).collect());
    Some((perm, shape.iter().product::<usize>() / len, len))
}

/// Normalised block length of an RMSNormalization whose scale covers the whole block.
pub fn rms_len(g: &Graph, n: NodeIndex) -> Option<usize> {
    let Op::RmsNorm { axis, .. } = &g.g[n].op else { return None };
    let shape = g.input_value(n, 0)?.shape.clone()?;
    let len: usize = shape[norm_axis(*axis, shape.len()).ok()?..].iter().product();
    (g.input_value(n, 1)?.shape.as_ref()?.iter().product::<usize>() == len).then_some(len)
}

/// MatMul geometry: (batch, m, k, n, A batch stride, B batch stride), if its batch dims are equal
/// or one side has none.
pub fn matmul_batches(g: &Graph, n: NodeIndex) -> Option<(usize, usize, usize, usize, usize, usize)> {
    let a = g.input_value(n, 0)?.shape.clone()?;
    let b = g.input_value(n, 1)?.shape.clone()?;
    let a2 = if a.len() == 1 { vec![1, a[0]] } else { a };
    let b2 = if b.len() == 1 { vec![b[0], 1] } else { b };
    let (m, k, nn) = (a2[a2.len() - 2], a2[a2.len() - 1], b2[b2.len() - 1]);
    let ab: usize = a2[..a2.len() - 2].iter().product();
    let bb: usize = b2[..b2.len() - 2].iter().product();
    let batch = ab.max(bb);
    if batch > 65535 {
        return None;
    }
    let stride = |x: usize, size: usize| if x == batch { Some(size) } else if x == 1 { Some(0) } else { None };
    if ab != bb && ab != 1 && bb != 1 {
        return None;
    }
    // Equal batch counts must also have equal batch shapes to index the same way.
    if ab == bb && ab > 1 && a2[..a2.len() - 2].iter().rev().zip(b2[..b2.len() - 2].iter().rev()).any(|(x, y)| x != y) {
        return None;
    }
    Some((batch, m, k, nn, stride(ab, m * k)?, stride(bb, k * nn)?))
}

/// A convolution as the GPU kernels see it: batch, channels in and out, and the window on
/// (D, H, W).
#[derive(Clone, Copy, Debug)]
pub struct ConvShape {
    pub n: usize,
    pub c: usize,
    pub m: usize,
    pub axes: ConvAxes,
}

impl ConvShape {
    /// From X [N, C, spatial...], W [M, C/group, kernel...] and Y's shape; `None` above three
    /// spatial axes.
    pub fn new(xs: &[usize], ws: &[usize], out: &[usize], window: &crate::graph::Window) -> crate::error::Result<Option<ConvShape>> {
        if xs.len() < 3 || ws.len() != xs.len() || out.len() != xs.len() {
            return Ok(None);
        }
        Ok(ConvAxes::new(window, &xs[2..], &ws[2..], &out[2..])?.map(|axes| ConvShape { n: xs[0], c: xs[1], m: ws[0], axes }))
    }

    /// The direct conv2d kernel's geometry, `[N, C, H, W, M, OH, OW, KH, KW, sh, sw, ph, pw, dh,
    /// dw]`; `None` for a 3-D convolution.
    pub fn planar(&self) -> Option<[u32; 15]> {
        let a = &self.axes;
        if a.input[0] != 1 || a.kernel[0] != 1 || a.out[0] != 1 {
            return None;
        }
        let g = [self.n, self.c, a.input[1], a.input[2], self.m, a.out[1], a.out[2], a.kernel[1], a.kernel[2], a.strides[1], a.strides[2], a.pads[1], a.pads[2], a.dilations[1], a.dilations[2]];
        Some(g.map(|v| v as u32))
    }

    /// Rows of the unfolded input (C * KD * KH * KW) and its columns (OD * OH * OW).
    pub fn unfolded(&self) -> (usize, usize) {
        (self.c * self.axes.kernel.iter().product::<usize>(), self.axes.out.iter().product())
    }

    /// The im2col kernel's parameters: `[total, C, D, H, W, KD, KH, KW, OD, OH, OW, strides,
    /// pads, dilations]` (each of the last three per axis).
    pub fn im2col_params(&self) -> Vec<u32> {
        let (k, pixels) = self.unfolded();
        let a = &self.axes;
        let mut p = vec![self.n * k * pixels, self.c];
        for v in [a.input, a.kernel, a.out, a.strides, a.pads, a.dilations] {
            p.extend(v);
        }
        p.into_iter().map(|v| v as u32).collect()
    }
}

/// Tile as one strided copy: `(shape, source strides, destination strides)`, each tiled axis
/// split into (repeat, extent) with the repeat reading stride 0. `None` past 6 dimensions.
pub fn tile_view(input: &[usize], reps: &[i64]) -> Option<(Vec<usize>, Vec<isize>, Vec<isize>)> {
    if reps.len() != input.len() || reps.iter().any(|&r| r < 0) {
        return None;
    }
    let out: Vec<usize> = input.iter().zip(reps).map(|(&d, &r)| d * r as usize).collect();
    let (src_st, dst_st) = (strides_of(input), strides_of(&out));
    let (mut shape, mut src, mut dst) = (vec![], vec![], vec![]);
    for i in 0..input.len() {
        let r = reps[i] as usize;
        if r != 1 {
            shape.push(r);
            src.push(0);
            dst.push((input[i] * dst_st[i]) as isize);
        }
        if input[i] != 1 || r == 1 {
            shape.push(input[i]);
            src.push(src_st[i] as isize);
            dst.push(dst_st[i] as isize);
        }
    }
    (shape.len() <= 6).then_some((shape, src, dst))
}

/// Resize as a tap table per resized axis (`None` for axes it leaves alone; see
/// `cpu::resize::axis_tables`): the GPU applies one axis at a time with the taps kernel. `None`
/// unless scales, sizes and roi are constants; interpolating modes need float data.
pub fn resize_tables(g: &Graph, n: NodeIndex) -> Option<Vec<Option<(usize, Vec<f32>)>>> {
    let Op::Resize(attrs) = &g.g[n].op else { return None };
    let xs = g.input_value(n, 0)?.shape.clone()?;
    let out = g.g[n].outputs[0].shape.clone()?;
    if attrs.mode != crate::graph::ResizeMode::Nearest && !g.input_value(n, 0)?.dtype.is_some_and(|d| d.is_float()) {
        return None;
    }
    // Some(None): input absent; None: present but not a constant.
    let constant = |i: usize| match g.source(n, i) {
        None => Some(None),
        Some(_) => g.input_const(n, i).map(Some),
    };
    let scales = constant(attrs.scales_input)?.map(|t| t.to_f64_vec());
    let (sizes, roi) = if attrs.scales_input == 2 {
        (constant(3)?.map(|t| t.to_i64_vec()).transpose().ok()?, constant(1)?.map(|t| t.to_f64_vec()))
    } else {
        (None, None)
    };
    let (shape, sc) = crate::graph::infer::resize_plan(attrs, &xs, scales.as_deref(), sizes.as_deref()).ok()?;
    if shape != out {
        return None;
    }
    crate::backend::cpu::resize::axis_tables(attrs, roi.as_deref(), &xs, &out, &sc).ok()
}

/// ConvTranspose as an ordinary stride-1 convolution over the input with (stride - 1) zeros
/// between elements and `dilation * (k - 1) - pad` zeros before (after: the same with the end pad,
/// plus the output padding): the zero-inserted shape and the zeros in front per spatial axis.
/// An error where a pad exceeds the kernel's reach or the output shape does not follow.
pub fn convtranspose_zero_insertion(w: &crate::graph::Window, xs: &[usize], ws: &[usize], output_padding: &[usize], output_shape: &[usize], out: &[usize]) -> crate::error::Result<(Vec<usize>, Vec<usize>)> {
    let fail = |what: String| crate::error::Error::Tensor(format!("ConvTranspose on the GPU: {what}"));
    let nd = xs.len().checked_sub(2).filter(|&d| d >= 1 && ws.len() == xs.len()).ok_or_else(|| fail(format!("input {xs:?} and weights {ws:?}")))?;
    let pads = crate::graph::infer::convtranspose_pads(w, &xs[2..], &ws[2..], output_padding, output_shape)?;
    let at = |v: &[usize], i: usize, d: usize| v.get(i).copied().unwrap_or(d);
    let (mut zs, mut front) = (xs[..2].to_vec(), vec![]);
    for i in 0..nd {
        let (s, d, k) = (at(&w.strides, i, 1), at(&w.dilations, i, 1), ws[2 + i]);
        let reach = d * k.saturating_sub(1);
        let before = reach.checked_sub(pads[i]).ok_or_else(|| fail(format!("pads {pads:?} exceed the kernel's reach")))?;
        let after = (reach + at(output_padding, i, 0)).checked_sub(pads[i + nd]).ok_or_else(|| fail(format!("pads {pads:?} exceed the kernel's reach")))?;
        let len = (xs[2 + i].max(1) - 1) * s + 1 + before + after;
        if len - reach != out.get(2 + i).copied().unwrap_or(0) {
            return Err(fail(format!("output {out:?} does not follow from input {xs:?}")));
        }
        zs.push(len);
        front.push(before);
    }
    Ok((zs, front))
}
