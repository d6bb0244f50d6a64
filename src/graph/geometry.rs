//! Shape arithmetic shared by inference, the kernels and the GPU planners: convolution and
//! pooling windows, pads, matmul broadcasting, reshape specs, reductions, slices, splits,
//! attention heads and resize sizes. Pure functions of shapes and attributes.

use super::{AutoPad, Window};
use crate::error::{Error, Result};
use crate::tensor::{broadcast_shapes, norm_axis};

fn bcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    broadcast_shapes(a, b).ok_or_else(|| Error::Tensor(format!("shapes {a:?} and {b:?} do not broadcast")))
}

/// Output spatial dims of a convolution or pooling window.
pub fn window_output(w: &Window, input: &[usize], kernel: &[usize], ceil: bool) -> Result<Vec<usize>> {
    let pads = resolve_pads(w, input, kernel)?;
    let nd = input.len();
    let mut out = Vec::with_capacity(nd);
    for i in 0..nd {
        let (s, d) = (w.strides.get(i).copied().unwrap_or(1), w.dilations.get(i).copied().unwrap_or(1));
        let ext = d * (kernel[i].max(1) - 1) + 1;
        let padded = input[i] + pads[i] + pads[i + nd];
        if padded < ext || s == 0 {
            return Err(Error::Tensor(format!("window {kernel:?} (dilations {:?}) larger than padded input {input:?}", w.dilations)));
        }
        let mut o = if ceil { (padded - ext).div_ceil(s) + 1 } else { (padded - ext) / s + 1 };
        if ceil && (o - 1) * s >= input[i] + pads[i] {
            o -= 1;
        }
        out.push(o);
    }
    Ok(out)
}

/// A convolution window over up to three spatial axes, lifted to exactly three (D, H, W): a 2-D
/// convolution has D = KD = OD = 1, a 1-D one also H = 1. Every backend's kernels index 3 axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvAxes {
    pub input: [usize; 3],
    pub kernel: [usize; 3],
    pub out: [usize; 3],
    pub strides: [usize; 3],
    /// Begin pads.
    pub pads: [usize; 3],
    pub pad_ends: [usize; 3],
    pub dilations: [usize; 3],
}

/// Per-axis values `v` of an `nd`-axis window (nd <= 3) on (D, H, W): axis `a` is the model's
/// axis `a + nd - 3`; leading axes it lacks, and values `v` omits, are `fill`.
pub fn lift3(v: &[usize], nd: usize, fill: usize) -> [usize; 3] {
    std::array::from_fn(|a| (a + nd).checked_sub(3).and_then(|i| v.get(i).copied()).unwrap_or(fill))
}

impl ConvAxes {
    /// From the spatial dims of X, the kernel (W's, or a pool's kernel_shape) and Y, and the
    /// window. `None` above 3 spatial axes.
    pub fn new(w: &Window, input: &[usize], kernel: &[usize], out: &[usize]) -> Result<Option<ConvAxes>> {
        let nd = input.len();
        if nd > 3 || kernel.len() != nd || out.len() != nd {
            return Ok(None);
        }
        let pads = resolve_pads(w, input, kernel)?;
        let lift = |v: &[usize], fill: usize| lift3(v, nd, fill);
        Ok(Some(ConvAxes {
            input: lift(input, 1),
            kernel: lift(kernel, 1),
            out: lift(out, 1),
            strides: lift(&w.strides, 1),
            pads: lift(&pads[..nd], 0),
            pad_ends: lift(&pads[nd..], 0),
            dilations: lift(&w.dilations, 1),
        }))
    }

    /// A 1x1x1 window at stride 1 without padding: the input is already the GEMM's right side.
    pub fn pointwise(&self) -> bool {
        self.kernel == [1; 3] && self.strides == [1; 3] && self.pads == [0; 3] && self.out == self.input
    }
}

/// Explicit pads (begins then ends) after applying `auto_pad`.
pub fn resolve_pads(w: &Window, input: &[usize], kernel: &[usize]) -> Result<Vec<usize>> {
    let nd = input.len();
    if kernel.len() != nd {
        return Err(Error::Tensor(format!("kernel {kernel:?} rank differs from spatial input {input:?}")));
    }
    match w.auto_pad {
        AutoPad::NotSet => {
            if w.pads.is_empty() {
                Ok(vec![0; 2 * nd])
            } else if w.pads.len() == 2 * nd {
                Ok(w.pads.clone())
            } else {
                Err(Error::Tensor(format!("pads {:?} should have {} entries", w.pads, 2 * nd)))
            }
        }
        AutoPad::Valid => Ok(vec![0; 2 * nd]),
        AutoPad::SameUpper | AutoPad::SameLower => {
            let mut p = vec![0; 2 * nd];
            for i in 0..nd {
                let (s, d) = (w.strides.get(i).copied().unwrap_or(1).max(1), w.dilations.get(i).copied().unwrap_or(1));
                let out = input[i].div_ceil(s);
                let ext = d * (kernel[i].max(1) - 1) + 1;
                let total = ((out - 1) * s + ext).saturating_sub(input[i]);
                let small = total / 2;
                let (b, e) = if w.auto_pad == AutoPad::SameUpper { (small, total - small) } else { (total - small, small) };
                p[i] = b;
                p[i + nd] = e;
            }
            Ok(p)
        }
    }
}

pub fn matmul_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    if a.is_empty() || b.is_empty() {
        return Err(Error::Tensor(format!("MatMul of a scalar: {a:?} x {b:?}")));
    }
    let a2: Vec<usize> = if a.len() == 1 { vec![1, a[0]] } else { a.to_vec() };
    let b2: Vec<usize> = if b.len() == 1 { vec![b[0], 1] } else { b.to_vec() };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return Err(Error::Tensor(format!("MatMul inner dims differ: {a:?} x {b:?}")));
    }
    let mut s = bcast(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
    if a.len() > 1 {
        s.push(m);
    }
    if b.len() > 1 {
        s.push(n);
    }
    Ok(s)
}

pub fn reshape_shape(input: &[usize], spec: &[i64], allowzero: bool) -> Result<Vec<usize>> {
    let total: usize = input.iter().product();
    let mut out = Vec::with_capacity(spec.len());
    let mut infer_at = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            -1 if infer_at.is_none() => {
                infer_at = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(*input.get(i).ok_or_else(|| Error::Tensor(format!("shape {spec:?}: 0 at {i} but input {input:?} has no dim {i}")))?),
            d if d >= 0 => out.push(d as usize),
            _ => return Err(Error::Tensor(format!("invalid reshape spec {spec:?}"))),
        }
    }
    let known: usize = out.iter().try_fold(1usize, |a, &b| a.checked_mul(b)).ok_or_else(|| Error::Tensor(format!("shape {spec:?} overflows")))?;
    if let Some(i) = infer_at {
        if known == 0 || total % known != 0 {
            return Err(Error::Tensor(format!("cannot reshape {input:?} ({total} elements) to {spec:?}")));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(Error::Tensor(format!("cannot reshape {input:?} ({total} elements) to {spec:?}")));
    }
    Ok(out)
}

/// Sorted, deduplicated axes a reduction runs over.
pub fn reduce_axes(rank: usize, axes: Option<&[i64]>, noop_with_empty: bool) -> Result<Vec<usize>> {
    match axes {
        Some(a) if !a.is_empty() => {
            let mut v: Vec<usize> = a.iter().map(|&x| norm_axis(x, rank)).collect::<Result<_>>()?;
            v.sort_unstable();
            v.dedup();
            Ok(v)
        }
        _ if noop_with_empty => Ok(vec![]),
        _ => Ok((0..rank).collect()),
    }
}

pub fn reduced_shape(shape: &[usize], axes: &[usize], keepdims: bool) -> Vec<usize> {
    (0..shape.len())
        .filter_map(|d| if axes.contains(&d) { keepdims.then_some(1) } else { Some(shape[d]) })
        .collect()
}

/// One axis of a resolved Slice: first index, step and output length.
#[derive(Clone, Copy, Debug)]
pub struct SliceAxis {
    pub start: i64,
    pub step: i64,
    pub len: usize,
}

pub fn slice_axes(shape: &[usize], starts: &[i64], ends: &[i64], axes: Option<&[i64]>, steps: Option<&[i64]>) -> Result<Vec<SliceAxis>> {
    let r = shape.len();
    let mut out: Vec<SliceAxis> = shape.iter().map(|&d| SliceAxis { start: 0, step: 1, len: d }).collect();
    if starts.len() != ends.len() {
        return Err(Error::Tensor(format!("starts {starts:?} and ends {ends:?} differ in length")));
    }
    for i in 0..starts.len() {
        let ax = match axes {
            Some(a) => norm_axis(*a.get(i).ok_or_else(|| Error::Tensor("axes shorter than starts".into()))?, r)?,
            None => i,
        };
        if ax >= r {
            return Err(Error::Tensor(format!("slice axis {ax} out of range for rank {r}")));
        }
        let step = steps.and_then(|s| s.get(i).copied()).unwrap_or(1);
        if step == 0 {
            return Err(Error::Tensor("slice step 0".into()));
        }
        let d = shape[ax] as i64;
        let fix = |x: i64| if x < 0 { x + d } else { x };
        let (s, e) = (fix(starts[i]), fix(ends[i]));
        let (s, e, len) = if step > 0 {
            let (s, e) = (s.clamp(0, d), e.clamp(0, d));
            (s, e, if e > s { (e - s + step - 1) / step } else { 0 })
        } else {
            let (s, e) = (s.clamp(-1, d - 1), e.clamp(-1, d - 1));
            (s, e, if s > e { (s - e + (-step) - 1) / (-step) } else { 0 })
        };
        let _ = e;
        out[ax] = SliceAxis { start: s, step, len: len as usize };
    }
    Ok(out)
}

/// Sizes of Split's outputs: explicit, or equal parts (the last one smaller when uneven).
pub fn split_sizes(dim: usize, outputs: usize, split: Option<Vec<i64>>) -> Result<Vec<usize>> {
    match split {
        Some(v) => {
            if v.len() != outputs || v.iter().any(|&x| x < 0) || v.iter().sum::<i64>() != dim as i64 {
                return Err(Error::Tensor(format!("split {v:?} does not divide an axis of {dim} into {outputs} outputs")));
            }
            Ok(v.into_iter().map(|x| x as usize).collect())
        }
        None => {
            let n = outputs.max(1);
            let chunk = dim.div_ceil(n);
            Ok((0..n).map(|i| chunk.min(dim.saturating_sub(i * chunk))).collect())
        }
    }
}

/// Axes Pad applies to (all, or the `axes` input).
pub fn pad_axes(rank: usize, axes: Option<Vec<i64>>) -> Result<Vec<usize>> {
    match axes {
        None => Ok((0..rank).collect()),
        Some(a) => a.iter().map(|&x| norm_axis(x, rank)).collect(),
    }
}

/// ConvTranspose's begin/end pads, from explicit pads, auto_pad, or a requested output shape.
pub fn convtranspose_pads(w: &Window, input: &[usize], kernel: &[usize], output_padding: &[usize], output_shape: &[usize]) -> Result<Vec<usize>> {
    let nd = input.len();
    let auto = !output_shape.is_empty() || matches!(w.auto_pad, AutoPad::SameUpper | AutoPad::SameLower);
    if !auto {
        return match w.pads.len() {
            0 => Ok(vec![0; 2 * nd]),
            n if n == 2 * nd => Ok(w.pads.clone()),
            _ => Err(Error::Tensor(format!("pads {:?} should have {} entries", w.pads, 2 * nd))),
        };
    }
    let mut p = vec![0; 2 * nd];
    for i in 0..nd {
        let (s, d) = (w.strides.get(i).copied().unwrap_or(1), w.dilations.get(i).copied().unwrap_or(1));
        let out = if output_shape.is_empty() { input[i] * s } else { output_shape[output_shape.len() - nd + i] };
        let full = s * (input[i] - 1) + output_padding.get(i).copied().unwrap_or(0) + (kernel[i] - 1) * d + 1;
        let total = full.saturating_sub(out);
        let (b, e) = if w.auto_pad == AutoPad::SameUpper { (total / 2, total - total / 2) } else { (total - total / 2, total / 2) };
        p[i] = b;
        p[i + nd] = e;
    }
    Ok(p)
}

/// Head counts and sizes of an Attention node, from 3-D or 4-D inputs.
#[derive(Clone, Copy, Debug)]
pub struct AttentionGeometry {
    pub batch: usize,
    pub q_heads: usize,
    pub kv_heads: usize,
    pub q_seq: usize,
    pub kv_seq: usize,
    pub past_seq: usize,
    pub total_seq: usize,
    pub head_size: usize,
    pub v_size: usize,
}

pub fn attention_geometry(at: &super::AttentionAttrs, q: &[usize], k: &[usize], v: &[usize], past: Option<&[usize]>) -> Result<AttentionGeometry> {
    let (batch, q_heads, q_seq, head_size, kv_heads, kv_seq, v_size) = match (q.len(), k.len(), v.len()) {
        (4, 4, 4) => (q[0], q[1], q[2], q[3], k[1], k[2], v[3]),
        (3, 3, 3) => {
            if at.q_num_heads == 0 || at.kv_num_heads == 0 || q[2] % at.q_num_heads != 0 || k[2] % at.kv_num_heads != 0 || v[2] % at.kv_num_heads != 0 {
                return Err(Error::Tensor(format!("3-D Attention needs q_num_heads/kv_num_heads dividing the hidden sizes: Q {q:?} K {k:?} V {v:?}")));
            }
            (q[0], at.q_num_heads, q[1], q[2] / at.q_num_heads, at.kv_num_heads, k[1], v[2] / at.kv_num_heads)
        }
        _ => return Err(Error::Tensor(format!("Attention needs Q, K, V all 3-D or all 4-D, got {q:?} {k:?} {v:?}"))),
    };
    if kv_heads == 0 || q_heads % kv_heads != 0 {
        return Err(Error::Tensor(format!("{q_heads} query heads do not group over {kv_heads} key/value heads")));
    }
    let past_seq = past.map(|p| p.get(2).copied().unwrap_or(0)).unwrap_or(0);
    Ok(AttentionGeometry { batch, q_heads, kv_heads, q_seq, kv_seq, past_seq, total_seq: past_seq + kv_seq, head_size, v_size })
}

/// Output sizes and the per-axis scale used by the coordinate transform.
pub fn resize_plan(attrs: &super::ResizeAttrs, input: &[usize], scales: Option<&[f64]>, sizes: Option<&[i64]>) -> Result<(Vec<usize>, Vec<f64>)> {
    let r = input.len();
    let axes: Vec<usize> = match &attrs.axes {
        Some(a) => a.iter().map(|&x| crate::tensor::norm_axis(x, r)).collect::<Result<_>>()?,
        None => (0..r).collect(),
    };
    let mut out = input.to_vec();
    let mut sc = vec![1.0f64; r];
    match (sizes, scales) {
        (Some(sz), _) if !sz.is_empty() => {
            if sz.len() != axes.len() {
                return Err(Error::Tensor(format!("sizes {sz:?} do not match {} axes", axes.len())));
            }
            let ratios: Vec<f64> = axes.iter().zip(sz).map(|(&a, &s)| s as f64 / input[a] as f64).collect();
            let common = match attrs.aspect.as_str() {
                "not_larger" => Some(ratios.iter().copied().fold(f64::INFINITY, f64::min)),
                "not_smaller" => Some(ratios.iter().copied().fold(0.0, f64::max)),
                _ => None,
            };
            for (i, &a) in axes.iter().enumerate() {
                match common {
                    Some(c) => {
                        sc[a] = c;
                        out[a] = (c * input[a] as f64 + 0.5).floor() as usize;
                    }
                    None => {
                        sc[a] = ratios[i];
                        out[a] = sz[i].max(0) as usize;
                    }
                }
            }
        }
        (_, Some(s)) if !s.is_empty() => {
            if s.len() != axes.len() {
                return Err(Error::Tensor(format!("scales {s:?} do not match {} axes", axes.len())));
            }
            for (i, &a) in axes.iter().enumerate() {
                if !(s[i] > 0.0 && s[i].is_finite()) {
                    return Err(Error::Tensor(format!("scale {} must be a positive finite number", s[i])));
                }
                sc[a] = s[i];
                out[a] = (input[a] as f64 * s[i]).floor() as usize;
            }
        }
        _ => return Err(Error::Tensor("Resize needs scales or sizes".into())),
    }
    super::validate::check_resize_axes(input, &out)?;
    Ok((out, sc))
}

/// RotaryEmbedding's layout: X as [batch, heads, seq, head] (4-D input, `heads_first`) or [batch,
/// seq, heads, head] (3-D input [batch, seq, heads * head] with `num_heads`), and `half` =
/// rotary_embedding_dim / 2 (the cos/sin caches' last dim).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotaryGeometry {
    pub batch: usize,
    pub heads: usize,
    pub seq: usize,
    pub head: usize,
    pub half: usize,
    pub heads_first: bool,
}

impl RotaryGeometry {
    pub fn new(x: &[usize], cos: &[usize], rotary_dim: usize, num_heads: usize) -> Result<RotaryGeometry> {
        let (batch, heads, seq, head, heads_first) = match x.len() {
            4 => (x[0], x[1], x[2], x[3], true),
            3 if num_heads > 0 && x[2] % num_heads == 0 => (x[0], num_heads, x[1], x[2] / num_heads, false),
            _ => return Err(Error::Tensor(format!("RotaryEmbedding needs [B, H, S, D] or [B, S, H*D] with num_heads, got {x:?}"))),
        };
        let rd = if rotary_dim == 0 { head } else { rotary_dim };
        if rd > head || rd % 2 != 0 || cos.last() != Some(&(rd / 2)) {
            return Err(Error::Tensor(format!("rotary_embedding_dim {rd} does not fit head size {head} and cache {cos:?}")));
        }
        Ok(RotaryGeometry { batch, heads, seq, head, half: rd / 2, heads_first })
    }

    /// X viewed as 4 dims: [batch, heads, seq, head] or [batch, seq, heads, head].
    pub fn view(&self) -> [usize; 4] {
        if self.heads_first {
            [self.batch, self.heads, self.seq, self.head]
        } else {
            [self.batch, self.seq, self.heads, self.head]
        }
    }

    /// The (batch, seq) cos/sin rows broadcast against [`Self::view`] with the last dim `half`.
    pub fn cache_view(&self) -> [usize; 4] {
        if self.heads_first {
            [self.batch, 1, self.seq, self.half]
        } else {
            [self.batch, self.seq, 1, self.half]
        }
    }
}
