//! Index-manipulating ops, generic over the element type: Split, Trilu, Pad, Tile, DepthToSpace,
//! SpaceToDepth, Compress, NonZero, GatherND, ScatterND, ScatterElements, OneHot, EyeLike,
//! ReverseSequence, TopK, CumSum/CumProd, Hardmax.

use super::elementwise::cast;
use super::layout::{gather, slice, transpose};
use crate::error::{Error, Result};
use crate::graph::infer::SliceAxis;
use crate::graph::{PadMode, Reduction};
use crate::tensor::{checked_numel, norm_axis, strides_of, DType, Data, Tensor};

use crate::{bail, map_data};

pub fn split(x: &Tensor, axis: usize, sizes: &[usize]) -> Result<Vec<Tensor>> {
    let mut start = 0;
    sizes
        .iter()
        .map(|&len| {
            let axes: Vec<SliceAxis> = x
                .shape()
                .iter()
                .enumerate()
                .map(|(d, &n)| if d == axis { SliceAxis { start: start as i64, step: 1, len } } else { SliceAxis { start: 0, step: 1, len: n } })
                .collect();
            start += len;
            slice(x, &axes)
        })
        .collect()
}

/// Output built from per-axis source-offset tables: element (o0, o1, ...) reads
/// `v[tables[0][o0] + tables[1][o1] + ...]`, or `fill` where any table entry is `usize::MAX`.
fn gather_by_tables<T: Copy>(v: &[T], shape: &[usize], tables: &[Vec<usize>], fill: T) -> Vec<T> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let st = strides_of(shape);
    for i in 0..n {
        let mut off = 0usize;
        let mut pad = false;
        for d in 0..shape.len() {
            let t = tables[d][(i / st[d]) % shape[d]];
            if t == usize::MAX {
                pad = true;
                break;
            }
            off += t;
        }
        out.push(if pad { fill } else { v[off] });
    }
    out
}

/// Where each of `out_len` positions along one axis of a Pad output reads from an axis of `n`
/// (`before` positions were added in front, negative to crop); `None` takes the fill value.
/// Only constant padding can grow an empty axis.
pub fn pad_sources(n: usize, out_len: usize, before: i64, mode: PadMode) -> Result<Vec<Option<usize>>> {
    if mode != PadMode::Constant && n == 0 && out_len > 0 {
        bail!("{mode:?} padding of an empty axis");
    }
    let n = n as i64;
    Ok((0..out_len as i64)
        .map(|o| {
            let i = o - before;
            let src = if (0..n).contains(&i) {
                Some(i)
            } else {
                match mode {
                    PadMode::Constant => None,
                    PadMode::Edge => Some(i.clamp(0, n - 1)),
                    PadMode::Wrap => Some(i.rem_euclid(n)),
                    PadMode::Reflect => {
                        if n == 1 {
                            Some(0)
                        } else {
                            let period = 2 * (n - 1);
                            let m = i.rem_euclid(period);
                            Some(if m < n { m } else { period - m })
                        }
                    }
                }
            };
            src.map(|s| s as usize)
        })
        .collect())
}

pub fn pad(x: &Tensor, pads: &[i64], axes: &[usize], mode: PadMode, value: Option<&Tensor>, out_shape: &[usize]) -> Result<Tensor> {
    let st = strides_of(x.shape());
    let r = x.rank();
    let tables: Vec<Vec<usize>> = (0..r)
        .map(|d| {
            let before = axes.iter().position(|&a| a == d).map(|i| pads[i]).unwrap_or(0);
            Ok(pad_sources(x.shape()[d], out_shape[d], before, mode)?.into_iter().map(|s| s.map(|s| s * st[d]).unwrap_or(usize::MAX)).collect())
        })
        .collect::<Result<_>>()?;
    let fill = match value {
        Some(v) if v.numel() > 0 => cast(v, x.dtype())?,
        _ => Tensor::zeros(x.dtype(), &[1])?,
    };
    let data = match (x.data(), fill.data()) {
        (Data::F32(v), Data::F32(f)) => Data::F32(gather_by_tables(v, out_shape, &tables, f[0])),
        (d, f) => {
            let fv = f.to_f64_vec()[0];
            let t = Tensor::new(vec![d.len()], Data::F64(d.to_f64_vec()))?;
            let out = gather_by_tables(t.to_f64_vec().as_slice(), out_shape, &tables, fv);
            return cast(&Tensor::new(out_shape.to_vec(), Data::F64(out))?, x.dtype());
        }
    };
    Tensor::new(out_shape.to_vec(), data)
}

pub fn tile(x: &Tensor, out_shape: &[usize]) -> Result<Tensor> {
    let st = strides_of(x.shape());
    let tables: Vec<Vec<usize>> = (0..x.rank()).map(|d| (0..out_shape[d]).map(|o| (o % x.shape()[d].max(1)) * st[d]).collect()).collect();
    let data = map_data!(x.data(), v => if v.is_empty() { vec![] } else { gather_by_tables(v, out_shape, &tables, v[0]) });
    Tensor::new(out_shape.to_vec(), data)
}

pub fn trilu(x: &Tensor, k: i64, upper: bool) -> Result<Tensor> {
    let r = x.rank();
    if r < 2 {
        bail!("Trilu needs rank >= 2, got {:?}", x.shape());
    }
    let (rows, cols) = (x.shape()[r - 2], x.shape()[r - 1]);
    let keep = |i: usize| {
        let (row, col) = ((i / cols) % rows, i % cols);
        let diff = col as i64 - row as i64;
        if upper { diff >= k } else { diff <= k }
    };
    let mut data = x.data().clone();
    crate::with_data!(&mut data, v => {
        for (i, e) in v.iter_mut().enumerate() {
            if !keep(i) {
                *e = Default::default();
            }
        }
    });
    Tensor::new(x.shape().to_vec(), data)
}

pub fn depth_to_space(x: &Tensor, b: usize, crd: bool, out_shape: &[usize]) -> Result<Tensor> {
    let s = x.shape();
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    let (t, perm) = if crd {
        (x.clone().reshaped(vec![n, c / (b * b), b, b, h, w])?, [0, 1, 4, 2, 5, 3])
    } else {
        (x.clone().reshaped(vec![n, b, b, c / (b * b), h, w])?, [0, 3, 4, 1, 5, 2])
    };
    let ps: Vec<usize> = perm.iter().map(|&p| t.shape()[p]).collect();
    transpose(&t, &perm, &ps)?.reshaped(out_shape.to_vec())
}

pub fn space_to_depth(x: &Tensor, b: usize, out_shape: &[usize]) -> Result<Tensor> {
    let s = x.shape();
    let t = x.clone().reshaped(vec![s[0], s[1], s[2] / b, b, s[3] / b, b])?;
    let perm = [0, 3, 5, 1, 2, 4];
    let ps: Vec<usize> = perm.iter().map(|&p| t.shape()[p]).collect();
    transpose(&t, &perm, &ps)?.reshaped(out_shape.to_vec())
}

pub fn compress(x: &Tensor, cond: &Tensor, axis: Option<i64>) -> Result<Tensor> {
    let c: Vec<bool> = cond.to_f64_vec().iter().map(|&v| v != 0.0).collect();
    let (src, ax) = match axis {
        Some(a) => (x.clone(), norm_axis(a, x.rank())?),
        None => (x.clone().reshaped(vec![x.numel()])?, 0),
    };
    if c.len() > src.shape()[ax] {
        bail!("condition has {} entries, axis has {}", c.len(), src.shape()[ax]);
    }
    let idx: Vec<i64> = c.iter().enumerate().filter(|(_, &b)| b).map(|(i, _)| i as i64).collect();
    let it = Tensor::from_i64(&[idx.len()], idx)?;
    let mut shape = src.shape().to_vec();
    shape[ax] = it.numel();
    gather(&src, &it, ax as i64, &shape)
}

pub fn nonzero(x: &Tensor) -> Result<Tensor> {
    let v = x.to_f64_vec();
    let st = strides_of(x.shape());
    let hits: Vec<usize> = (0..v.len()).filter(|&i| v[i] != 0.0).collect();
    let r = x.rank();
    let mut out = vec![0i64; r * hits.len()];
    for (j, &i) in hits.iter().enumerate() {
        for d in 0..r {
            out[d * hits.len() + j] = ((i / st[d]) % x.shape()[d]) as i64;
        }
    }
    Tensor::from_i64(&[r, hits.len()], out)
}

fn wrap_index(i: i64, dim: usize) -> Result<usize> {
    let j = if i < 0 { i + dim as i64 } else { i };
    if j < 0 || j >= dim as i64 {
        return Err(Error::Tensor(format!("index {i} out of range for axis of size {dim}")));
    }
    Ok(j as usize)
}

pub fn gather_nd(x: &Tensor, idx: &Tensor, batch_dims: usize, out_shape: &[usize]) -> Result<Tensor> {
    let ids = idx.to_i64_vec()?;
    let m = *idx.shape().last().unwrap();
    let xs = x.shape();
    let st = strides_of(xs);
    let inner: usize = xs[batch_dims + m..].iter().product();
    let batch: usize = xs[..batch_dims].iter().product();
    let per_batch_x: usize = xs[batch_dims..].iter().product();
    let tuples = ids.len() / m.max(1);
    let per_batch_t = tuples / batch.max(1);
    let mut offsets = Vec::with_capacity(tuples);
    for t in 0..tuples {
        let b = t / per_batch_t.max(1);
        let mut off = b * per_batch_x;
        for j in 0..m {
            off += wrap_index(ids[t * m + j], xs[batch_dims + j])? * st[batch_dims + j];
        }
        offsets.push(off);
    }
    let data = map_data!(x.data(), v => {
        let mut out = Vec::with_capacity(tuples * inner);
        for &o in &offsets {
            out.extend_from_slice(&v[o..o + inner]);
        }
        out
    });
    Tensor::new(out_shape.to_vec(), data)
}

fn reduce_into(dst: &mut f64, src: f64, r: Reduction) {
    *dst = match r {
        Reduction::None => src,
        Reduction::Add => *dst + src,
        Reduction::Mul => *dst * src,
        Reduction::Max => dst.max(src),
        Reduction::Min => dst.min(src),
    };
}

pub fn scatter_nd(x: &Tensor, idx: &Tensor, upd: &Tensor, r: Reduction) -> Result<Tensor> {
    let ids = idx.to_i64_vec()?;
    let m = *idx.shape().last().ok_or_else(|| Error::Tensor("indices must have rank >= 1".into()))?;
    let xs = x.shape();
    let st = strides_of(xs);
    let inner: usize = xs[m.min(xs.len())..].iter().product();
    let mut v = x.to_f64_vec();
    let u = upd.to_f64_vec();
    for t in 0..ids.len() / m.max(1) {
        let mut off = 0;
        for j in 0..m {
            off += wrap_index(ids[t * m + j], xs[j])? * st[j];
        }
        for k in 0..inner {
            reduce_into(&mut v[off + k], *u.get(t * inner + k).ok_or_else(|| Error::Tensor("updates too short".into()))?, r);
        }
    }
    cast(&Tensor::new(xs.to_vec(), Data::F64(v))?, x.dtype())
}

pub fn scatter_elements(x: &Tensor, idx: &Tensor, upd: &Tensor, axis: i64, r: Reduction) -> Result<Tensor> {
    let ax = norm_axis(axis, x.rank())?;
    let ids = idx.to_i64_vec()?;
    let (xs, is) = (strides_of(x.shape()), strides_of(idx.shape()));
    let mut v = x.to_f64_vec();
    let u = upd.to_f64_vec();
    for (i, &id) in ids.iter().enumerate() {
        let mut off = 0;
        for d in 0..idx.rank() {
            let c = if d == ax { wrap_index(id, x.shape()[ax])? } else { (i / is[d]) % idx.shape()[d] };
            off += c * xs[d];
        }
        reduce_into(&mut v[off], u[i], r);
    }
    cast(&Tensor::new(x.shape().to_vec(), Data::F64(v))?, x.dtype())
}

pub fn one_hot(idx: &Tensor, depth: &Tensor, values: &Tensor, axis: i64, out_shape: &[usize]) -> Result<Tensor> {
    let d = depth.to_f64_vec()[0] as i64;
    let vals = values.to_f64_vec();
    if vals.len() != 2 {
        bail!("OneHot values must have 2 elements, got {}", vals.len());
    }
    let ax = norm_axis(axis, out_shape.len())?;
    let ids: Vec<i64> = idx.to_f64_vec().iter().map(|&v| v as i64).collect();
    let inner: usize = out_shape[ax + 1..].iter().product();
    let n = checked_numel(out_shape)?;
    let mut out = vec![vals[0]; n];
    for (i, &id) in ids.iter().enumerate() {
        let id = if id < 0 { id + d } else { id };
        if (0..d).contains(&id) {
            let (o, inn) = (i / inner, i % inner);
            out[(o * d as usize + id as usize) * inner + inn] = vals[1];
        }
    }
    cast(&Tensor::new(out_shape.to_vec(), Data::F64(out))?, values.dtype())
}

pub fn eye_like(x: &Tensor, dtype: DType, k: i64) -> Result<Tensor> {
    let (r, c) = (x.shape()[0], x.shape()[1]);
    let mut out = vec![0f64; r * c];
    for i in 0..r {
        let j = i as i64 + k;
        if (0..c as i64).contains(&j) {
            out[i * c + j as usize] = 1.0;
        }
    }
    cast(&Tensor::new(vec![r, c], Data::F64(out))?, dtype)
}

pub fn reverse_sequence(x: &Tensor, lens: &Tensor, batch_axis: usize, time_axis: usize) -> Result<Tensor> {
    let lens = lens.to_i64_vec()?;
    crate::graph::validate::check_lengths(&lens, x.shape()[time_axis])?;
    let st = strides_of(x.shape());
    let n = x.numel();
    let src: Vec<usize> = (0..n)
        .map(|i| {
            let b = (i / st[batch_axis]) % x.shape()[batch_axis];
            let t = (i / st[time_axis]) % x.shape()[time_axis];
            let l = lens.get(b).copied().unwrap_or(0).max(0) as usize;
            if t < l { i - t * st[time_axis] + (l - 1 - t) * st[time_axis] } else { i }
        })
        .collect();
    let data = map_data!(x.data(), v => src.iter().map(|&s| v[s]).collect());
    Tensor::new(x.shape().to_vec(), data)
}

/// Runs `f` over every lane along `axis` (as f64), writing results of the same length.
fn lanes(x: &Tensor, axis: usize, mut f: impl FnMut(&[f64], &mut [f64])) -> Vec<f64> {
    let v = x.to_f64_vec();
    let dim = x.shape()[axis];
    let inner: usize = x.shape()[axis + 1..].iter().product();
    let outer: usize = x.shape()[..axis].iter().product();
    let mut out = vec![0f64; v.len()];
    let (mut lane, mut res) = (vec![0f64; dim], vec![0f64; dim]);
    for o in 0..outer {
        for i in 0..inner {
            for k in 0..dim {
                lane[k] = v[(o * dim + k) * inner + i];
            }
            f(&lane, &mut res);
            for k in 0..dim {
                out[(o * dim + k) * inner + i] = res[k];
            }
        }
    }
    out
}

pub fn cumulative(x: &Tensor, axis: &Tensor, product: bool, exclusive: bool, reverse: bool) -> Result<Tensor> {
    let ax = norm_axis(axis.to_i64_vec()?[0], x.rank())?;
    let out = lanes(x, ax, |lane, res| {
        let n = lane.len();
        let mut acc = if product { 1.0 } else { 0.0 };
        for j in 0..n {
            let k = if reverse { n - 1 - j } else { j };
            if exclusive {
                res[k] = acc;
            }
            acc = if product { acc * lane[k] } else { acc + lane[k] };
            if !exclusive {
                res[k] = acc;
            }
        }
    });
    cast(&Tensor::new(x.shape().to_vec(), Data::F64(out))?, x.dtype())
}

pub fn hardmax(x: &Tensor, axis: i64) -> Result<Tensor> {
    let ax = norm_axis(axis, x.rank())?;
    let out = lanes(x, ax, |lane, res| {
        res.fill(0.0);
        let best = (0..lane.len()).fold(0, |b, i| if lane[i] > lane[b] { i } else { b });
        if !lane.is_empty() {
            res[best] = 1.0;
        }
    });
    cast(&Tensor::new(x.shape().to_vec(), Data::F64(out))?, x.dtype())
}

pub fn top_k(x: &Tensor, k: usize, axis: i64, largest: bool) -> Result<Vec<Tensor>> {
    let ax = norm_axis(axis, x.rank())?;
    let v = x.to_f64_vec();
    let dim = x.shape()[ax];
    let inner: usize = x.shape()[ax + 1..].iter().product();
    let outer: usize = x.shape()[..ax].iter().product();
    let mut vals = vec![0f64; outer * k * inner];
    let mut ids = vec![0i64; outer * k * inner];
    let mut order: Vec<usize> = Vec::with_capacity(dim);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| v[(o * dim + j) * inner + i];
            order.clear();
            order.extend(0..dim);
            // Stable sort keeps the lower index first among equal values, as ONNX requires; NaN
            // ranks above every number (first when largest, last when smallest), as in ONNX Runtime.
            order.sort_by(|&a, &b| {
                let (x, y) = (at(a), at(b));
                let c = match (x.is_nan(), y.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                };
                if largest { c.reverse() } else { c }
            });
            for (j, &src) in order.iter().take(k).enumerate() {
                vals[(o * k + j) * inner + i] = at(src);
                ids[(o * k + j) * inner + i] = src as i64;
            }
        }
    }
    let mut shape = x.shape().to_vec();
    shape[ax] = k;
    Ok(vec![cast(&Tensor::new(shape.clone(), Data::F64(vals))?, x.dtype())?, Tensor::from_i64(&shape, ids)?])
}

/// Unique: distinct elements (or slices along `axis`), sorted or in first-seen order, with
/// first indices, inverse indices and counts.
pub fn unique(x: &Tensor, axis: Option<i64>, sorted: bool) -> Result<Vec<Tensor>> {
    let (src, ax) = match axis {
        Some(a) => (x.clone(), norm_axis(a, x.rank())?),
        None => (x.clone().reshaped(vec![x.numel()])?, 0),
    };
    let v = src.to_f64_vec();
    let dim = src.shape()[ax];
    let inner: usize = src.shape()[ax + 1..].iter().product();
    let outer: usize = src.shape()[..ax].iter().product();
    let slice_of = |k: usize| -> Vec<f64> { (0..outer).flat_map(|o| v[(o * dim + k) * inner..(o * dim + k + 1) * inner].to_vec()).collect() };
    let slices: Vec<Vec<f64>> = (0..dim).map(slice_of).collect();
    // NaNs equal each other here (as numpy's unique with equal_nan), so every element has a
    // first occurrence; sorting puts them last.
    let same = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| x == y || (x.is_nan() && y.is_nan()));
    let mut firsts: Vec<usize> = vec![];
    for k in 0..dim {
        if !firsts.iter().any(|&f| same(&slices[f], &slices[k])) {
            firsts.push(k);
        }
    }
    if sorted {
        let key = |v: &f64| if v.is_nan() { f64::INFINITY } else { *v };
        firsts.sort_by(|&a, &b| slices[a].iter().zip(&slices[b]).map(|(x, y)| key(x).total_cmp(&key(y)).then(x.is_nan().cmp(&y.is_nan()))).find(|o| o.is_ne()).unwrap_or(std::cmp::Ordering::Equal));
    }
    let inverse: Vec<i64> = (0..dim).map(|k| firsts.iter().position(|&f| same(&slices[f], &slices[k])).unwrap_or(0) as i64).collect();
    let counts: Vec<i64> = (0..firsts.len()).map(|u| inverse.iter().filter(|&&i| i as usize == u).count() as i64).collect();
    let idx = Tensor::from_i64(&[firsts.len()], firsts.iter().map(|&f| f as i64).collect())?;
    let mut shape = src.shape().to_vec();
    shape[ax] = firsts.len();
    Ok(vec![
        gather(&src, &idx, ax as i64, &shape)?,
        idx,
        Tensor::from_i64(&[dim], inverse)?,
        Tensor::from_i64(&[counts.len()], counts)?,
    ])
}

/// CenterCropPad: crop or zero-pad each listed axis to its target size, centred.
pub fn center_crop_pad(x: &Tensor, target: &[i64], axes: &[usize]) -> Result<Tensor> {
    let st = strides_of(x.shape());
    let mut out_shape = x.shape().to_vec();
    for (&a, &t) in axes.iter().zip(target) {
        out_shape[a] = t.max(0) as usize;
    }
    let tables: Vec<Vec<usize>> = (0..x.rank())
        .map(|d| {
            let (n, t) = (x.shape()[d] as i64, out_shape[d] as i64);
            // Crop drops floor((n - t) / 2) from the start; pad adds floor((t - n) / 2) there.
            let shift = if t <= n { (n - t) / 2 } else { -((t - n) / 2) };
            (0..t).map(|o| { let i = o + shift; if (0..n).contains(&i) { i as usize * st[d] } else { usize::MAX } }).collect()
        })
        .collect();
    let data = map_data!(x.data(), v => gather_by_tables(v, &out_shape, &tables, Default::default()));
    Tensor::new(out_shape, data)
}

/// Hann, Hamming or Blackman window of `n` points: periodic windows divide the period by n
/// (for spectral analysis), symmetric ones by n - 1.
pub fn signal_window(kind: crate::graph::WindowKind, periodic: bool, dtype: crate::tensor::DType, n: usize) -> Result<Tensor> {
    use crate::graph::WindowKind;
    let denom = if periodic { n } else { n.saturating_sub(1) }.max(1) as f64;
    let tau = 2.0 * std::f64::consts::PI;
    let w: Vec<f64> = (0..n)
        .map(|i| {
            let t = i as f64 / denom;
            match kind {
                WindowKind::Hann => 0.5 - 0.5 * (tau * t).cos(),
                WindowKind::Hamming => 25.0 / 46.0 - 21.0 / 46.0 * (tau * t).cos(),
                WindowKind::Blackman => 0.42 - 0.5 * (tau * t).cos() + 0.08 * (2.0 * tau * t).cos(),
            }
        })
        .collect();
    super::elementwise::cast(&Tensor::new(vec![n], crate::tensor::Data::F64(w))?, dtype)
}
