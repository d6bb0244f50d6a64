//! Data-movement kernels, generic over the element type: Transpose, Concat, Slice, Gather,
//! GatherElements, Expand, Range, ConstantOfShape.

use rayon::prelude::*;
use crate::error::Result;
use crate::graph::infer::SliceAxis;
use crate::tensor::{norm_axis, strides_of, Data, Tensor};
use crate::{bail, map_data};

pub fn transpose(x: &Tensor, perm: &[usize], out_shape: &[usize]) -> Result<Tensor> {
    let ins = strides_of(x.shape());
    // Source stride of each output axis.
    let src: Vec<usize> = perm.iter().map(|&p| ins[p]).collect();
    let data = map_data!(x.data(), v => permute(v, out_shape, &src));
    Tensor::new(out_shape.to_vec(), data)
}

/// Copies `v` into a new row-major buffer of `shape`, where output axis d walks `src_strides[d]` in `v`.
fn permute<T: Copy + 'static>(v: &[T], shape: &[usize], src_strides: &[usize]) -> Vec<T> {
    let strides: Vec<isize> = src_strides.iter().map(|&s| s as isize).collect();
    strided_gather(v, 0, shape, &strides)
}

/// Row-major copy of the strided view (`base`, `strides`) of `v`: an odometer over the outer
/// axes and a tight loop (a memcpy when contiguous) over the innermost one.
fn strided_gather<T: Copy + 'static>(v: &[T], base: isize, shape: &[usize], strides: &[isize]) -> Vec<T> {
    let n: usize = shape.iter().product();
    let mut out = super::arena::output(n);
    if n == 0 {
        return out;
    }
    let r = shape.len();
    if r == 0 {
        out.push(v[base as usize]);
        return out;
    }
    let inner = shape[r - 1];
    let is = strides[r - 1];
    let mut idx = vec![0usize; r];
    let mut at = base;
    loop {
        if is == 1 {
            out.extend_from_slice(&v[at as usize..at as usize + inner]);
        } else {
            out.extend((0..inner as isize).map(|j| v[(at + j * is) as usize]));
        }
        let mut d = r - 1;
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            idx[d] += 1;
            at += strides[d];
            if idx[d] < shape[d] {
                break;
            }
            at -= strides[d] * shape[d] as isize;
            idx[d] = 0;
        }
    }
}

pub fn concat(inputs: &[&Tensor], axis: usize, out_shape: &[usize]) -> Result<Tensor> {
    let outer: usize = out_shape[..axis].iter().product();
    let inner: usize = out_shape[axis + 1..].iter().product();
    let data;
    macro_rules! go {
        ($out:ident, $variant:ident) => {{
            let parts: Vec<&[_]> = inputs.iter().map(|t| match t.data() { Data::$variant(v) => Ok(v.as_slice()), d => Err(d.dtype()) }).collect::<std::result::Result<_, _>>().map_err(|d| crate::error::Error::Tensor(format!("Concat input of dtype {d}")))?;
            let pieces = (0..outer).flat_map(|o| inputs.iter().zip(&parts).map(move |(t, p)| {
                let chunk = t.shape()[axis] * inner;
                &p[o * chunk..(o + 1) * chunk]
            }));
            let $out = gather_pieces(pieces.collect(), out_shape.iter().product());
            data = Data::$variant($out);
        }};
    }
    match inputs[0].data() {
        Data::F32(_) => go!(v, F32),
        Data::F16(_) => go!(v, F16),
        Data::BF16(_) => go!(v, BF16),
        Data::F64(_) => go!(v, F64),
        Data::I64(_) => go!(v, I64),
        Data::I32(_) => go!(v, I32),
        Data::I8(_) => go!(v, I8),
        Data::U8(_) => go!(v, U8),
        Data::I16(_) => go!(v, I16),
        Data::U16(_) => go!(v, U16),
        Data::U32(_) => go!(v, U32),
        Data::U64(_) => go!(v, U64),
        Data::Bool(_) => go!(v, Bool),
    }
    Tensor::new(out_shape.to_vec(), data)
}

/// Concatenates `pieces` (which add up to `total` elements). Large outputs are copied by all
/// threads: a copy of activations bigger than the caches is bound by memory bandwidth, which one
/// core does not saturate.
fn gather_pieces<T: Copy + Send + Sync + 'static>(pieces: Vec<&[T]>, total: usize) -> Vec<T> {
    if total * std::mem::size_of::<T>() < 1 << 20 || super::threads::width() < 2 {
        let mut out = super::arena::output(total);
        pieces.iter().for_each(|p| out.extend_from_slice(p));
        return out;
    }
    let mut out: Vec<T> = super::arena::output(total);
    let mut rest = &mut out.spare_capacity_mut()[..total];
    let mut jobs = Vec::with_capacity(pieces.len());
    for p in &pieces {
        let (dst, tail) = rest.split_at_mut(p.len());
        jobs.push((dst, *p));
        rest = tail;
    }
    assert!(rest.is_empty(), "concat pieces do not fill the output");
    jobs.into_par_iter().for_each(|(dst, src)| {
        for (d, &s) in dst.iter_mut().zip(src) {
            d.write(s);
        }
    });
    // SAFETY: the pieces' lengths add up to `total` (asserted above) and each element was
    // written once.
    unsafe { out.set_len(total) };
    out
}

pub fn slice(x: &Tensor, axes: &[SliceAxis]) -> Result<Tensor> {
    let st = strides_of(x.shape());
    let shape: Vec<usize> = axes.iter().map(|a| a.len).collect();
    let n: usize = shape.iter().product();
    if n == 0 {
        return Tensor::new(shape, Data::zeros(x.dtype(), 0));
    }
    let base: isize = axes.iter().zip(&st).map(|(a, &s)| a.start as isize * s as isize).sum();
    let steps: Vec<isize> = axes.iter().zip(&st).map(|(a, &s)| a.step as isize * s as isize).collect();
    let data = map_data!(x.data(), v => strided_gather(v, base, &shape, &steps));
    Tensor::new(shape, data)
}

fn indices(idx: &Tensor, dim: usize) -> Result<Vec<usize>> {
    idx.to_i64_vec()?
        .into_iter()
        .map(|i| {
            let j = if i < 0 { i + dim as i64 } else { i };
            if j < 0 || j >= dim as i64 {
                Err(crate::error::Error::Tensor(format!("index {i} out of range for axis of size {dim}")))
            } else {
                Ok(j as usize)
            }
        })
        .collect()
}

pub fn gather(x: &Tensor, idx: &Tensor, axis: i64, out_shape: &[usize]) -> Result<Tensor> {
    let ax = norm_axis(axis, x.rank())?;
    let dim = x.shape()[ax];
    let ids = indices(idx, dim)?;
    let outer: usize = x.shape()[..ax].iter().product();
    let inner: usize = x.shape()[ax + 1..].iter().product();
    let data = map_data!(x.data(), v => {
        let mut out = super::arena::output(outer * ids.len() * inner);
        for o in 0..outer {
            for &i in &ids {
                let s = (o * dim + i) * inner;
                out.extend_from_slice(&v[s..s + inner]);
            }
        }
        out
    });
    Tensor::new(out_shape.to_vec(), data)
}

pub fn gather_elements(x: &Tensor, idx: &Tensor, axis: i64) -> Result<Tensor> {
    let ax = norm_axis(axis, x.rank())?;
    let dim = x.shape()[ax];
    let ids = indices(idx, dim)?;
    let is = strides_of(idx.shape());
    let xs = strides_of(x.shape());
    let ishape = idx.shape();
    for d in 0..ishape.len() {
        if d != ax && ishape[d] > x.shape()[d] {
            bail!("indices shape {:?} exceeds data shape {:?} on axis {d}", ishape, x.shape());
        }
    }
    let data = map_data!(x.data(), v => {
        ids.iter().enumerate().map(|(i, &j)| {
            let mut off = 0;
            for d in 0..ishape.len() {
                let c = if d == ax { j } else { (i / is[d]) % ishape[d] };
                off += c * xs[d];
            }
            v[off]
        }).collect()
    });
    Tensor::new(ishape.to_vec(), data)
}

pub fn expand(x: &Tensor, out_shape: &[usize]) -> Result<Tensor> {
    let r = out_shape.len();
    let xs: Vec<usize> = std::iter::repeat_n(1, r - x.rank()).chain(x.shape().iter().copied()).collect();
    let st = strides_of(&xs);
    let src: Vec<usize> = (0..r).map(|d| if xs[d] == 1 { 0 } else { st[d] }).collect();
    let data = map_data!(x.data(), v => permute(v, out_shape, &src));
    Tensor::new(out_shape.to_vec(), data)
}

pub fn range(start: &Tensor, delta: &Tensor, out_shape: &[usize]) -> Result<Tensor> {
    let n = out_shape[0];
    let data = match (start.data(), delta.data()) {
        (Data::I64(s), Data::I64(d)) => Data::I64((0..n as i64).map(|i| s[0] + i * d[0]).collect()),
        (Data::I32(s), Data::I32(d)) => Data::I32((0..n as i32).map(|i| s[0] + i * d[0]).collect()),
        (Data::F32(s), Data::F32(d)) => Data::F32((0..n).map(|i| s[0] + i as f32 * d[0]).collect()),
        (Data::F64(s), Data::F64(d)) => Data::F64((0..n).map(|i| s[0] + i as f64 * d[0]).collect()),
        (a, _) => crate::unsupported!("Range of {}", a.dtype()),
    };
    Tensor::new(out_shape.to_vec(), data)
}

pub fn constant_of_shape(value: &Tensor, out_shape: &[usize]) -> Result<Tensor> {
    let n: usize = out_shape.iter().product();
    let data = map_data!(value.data(), v => vec![v[0]; n]);
    Tensor::new(out_shape.to_vec(), data)
}

/// Elements of a 0-D or 1-element tensor as f64 (Clip bounds and similar scalars).
pub fn scalar_f64(t: &Tensor) -> Result<f64> {
    if t.numel() != 1 {
        bail!("expected a scalar, got shape {:?}", t.shape());
    }
    Ok(t.to_f64_vec()[0])
}
