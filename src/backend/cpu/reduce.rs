//! Reductions and normalisations: Reduce*, ArgMax/ArgMin, Softmax/LogSoftmax,
//! LayerNormalization, BatchNormalization (inference).

use super::elementwise::cast;
use super::layout::transpose;
use crate::error::Result;
use crate::graph::infer::{reduce_axes, reduced_shape};
use crate::graph::ReduceOp;
use crate::tensor::{norm_axis, Data, DType, Tensor};
use crate::bail;
use super::fastmath::exp;
use rayon::prelude::*;

/// Moves `axes` to the end so each reduction is over one contiguous block; returns the data as
/// f64 with the block length.
fn blocks(x: &Tensor, axes: &[usize]) -> Result<(Vec<f64>, usize)> {
    let r = x.rank();
    let trailing = axes.iter().enumerate().all(|(i, &a)| a == r - axes.len() + i);
    let block: usize = axes.iter().map(|&a| x.shape()[a]).product();
    let v = if trailing {
        x.to_f64_vec()
    } else {
        let perm: Vec<usize> = (0..r).filter(|d| !axes.contains(d)).chain(axes.iter().copied()).collect();
        let shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
        transpose(x, &perm, &shape)?.to_f64_vec()
    };
    Ok((v, block))
}

pub fn reduce(x: &Tensor, op: ReduceOp, axes: Option<&[i64]>, keepdims: bool, noop: bool) -> Result<Tensor> {
    let red = reduce_axes(x.rank(), axes, noop)?;
    let out_shape = reduced_shape(x.shape(), &red, keepdims);
    if red.is_empty() {
        return Tensor::new(out_shape, x.data().clone());
    }
    if x.dtype() == DType::F32 && op == ReduceOp::Mean && red.iter().enumerate().all(|(i, &a)| a == x.rank() - red.len() + i) {
        // Fast path for the global-pool-like mean over trailing axes.
        let v = x.as_f32()?;
        let block: usize = red.iter().map(|&a| x.shape()[a]).product();
        let out: Vec<f32> = if block == 0 { vec![f32::NAN; out_shape.iter().product()] } else { v.par_chunks(block).with_min_len(super::threads::min_len(1)).map(|c| c.iter().sum::<f32>() / block as f32).collect() };
        return Tensor::from_f32(&out_shape, out);
    }
    let (v, block) = blocks(x, &red)?;
    let nout: usize = out_shape.iter().product();
    // Max and Min of an empty set are the type's lowest and highest values (false and true for
    // bools; integers saturate from the infinities at the cast).
    let (lowest, highest) = if x.dtype() == DType::Bool { (0.0, 1.0) } else { (f64::NEG_INFINITY, f64::INFINITY) };
    let out: Vec<f64> = (0..nout)
        .map(|i| {
            let c = &v[i * block..(i + 1) * block];
            match op {
                ReduceOp::Sum => c.iter().sum(),
                ReduceOp::Mean => c.iter().sum::<f64>() / block as f64,
                ReduceOp::Max => c.iter().copied().fold(lowest, |a, b| if b.is_nan() || a.is_nan() { f64::NAN } else { a.max(b) }),
                ReduceOp::Min => c.iter().copied().fold(highest, |a, b| if b.is_nan() || a.is_nan() { f64::NAN } else { a.min(b) }),
                ReduceOp::Prod => c.iter().product(),
                ReduceOp::L1 => c.iter().map(|x| x.abs()).sum(),
                ReduceOp::L2 => c.iter().map(|x| x * x).sum::<f64>().sqrt(),
                ReduceOp::LogSum => c.iter().sum::<f64>().ln(),
                ReduceOp::LogSumExp => {
                    let m = c.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    if m.is_infinite() { c.iter().map(|x| x.exp()).sum::<f64>().ln() } else { m + c.iter().map(|x| (x - m).exp()).sum::<f64>().ln() }
                }
                ReduceOp::SumSquare => c.iter().map(|x| x * x).sum(),
            }
        })
        .collect();
    cast(&Tensor::new(out_shape, Data::F64(out))?, x.dtype())
}

pub fn arg_extreme(x: &Tensor, max: bool, axis: i64, keepdims: bool, last: bool) -> Result<Tensor> {
    let ax = norm_axis(axis, x.rank())?;
    let out_shape = reduced_shape(x.shape(), &[ax], keepdims);
    let (v, block) = blocks(x, &[ax])?;
    let out: Vec<i64> = v
        .chunks(block.max(1))
        .map(|c| {
            let mut best = 0;
            for (i, &e) in c.iter().enumerate() {
                let better = if max { e > c[best] || (last && e == c[best]) } else { e < c[best] || (last && e == c[best]) };
                if better {
                    best = i;
                }
            }
            best as i64
        })
        .collect();
    Tensor::new(out_shape, Data::I64(out))
}

pub fn softmax(x: &Tensor, axis: i64, log: bool, legacy: bool) -> Result<Tensor> {
    let ax = norm_axis(axis, x.rank())?;
    if x.dtype() != DType::F32 {
        let y = softmax(&cast(x, DType::F32)?, axis, log, legacy)?;
        return cast(&y, x.dtype());
    }
    // Opset < 13 flattens from `axis` on; later opsets normalise along the one axis.
    let axes: Vec<usize> = if legacy { (ax..x.rank()).collect() } else { vec![ax] };
    let trailing = axes.last() == Some(&(x.rank() - 1));
    if !trailing {
        // One axis with others after it (channels of an NCHW map): normalised in place along
        // the axis, the inner positions side by side, where moving the axis last would cost
        // two transposes and leave rows as short as the axis.
        let (c, inner) = (x.shape()[ax], x.shape()[ax + 1..].iter().product::<usize>());
        let mut y = super::arena::output_copy(x.as_f32()?);
        if let Some(outer) = y.len().checked_div(c * inner) {
            // Units of (outer block, run of inner columns): enough of them to share, each
            // long enough to vectorise.
            let run = inner.min(1024);
            let units: Vec<(usize, usize)> = (0..outer).flat_map(|o| (0..inner).step_by(run).map(move |j| (o, j))).collect();
            let base = SharedF32(y.as_mut_ptr());
            let f = |&(o, j): &(usize, usize)| {
                let len = run.min(inner - j);
                // SAFETY: units cover disjoint (outer, column-run) cells of `y`, which outlives the loop.
                let cols = (0..c).map(|ch| unsafe { std::slice::from_raw_parts_mut(base.at((o * c + ch) * inner + j), len) });
                softmax_columns(&mut cols.collect::<Vec<_>>(), log);
            };
            if y.len() >= 1 << 15 {
                units.par_iter().with_min_len(super::threads::min_len((1 << 13) / (c * run) + 1)).for_each(f);
            } else {
                units.iter().for_each(f);
            }
        }
        return Tensor::from_f32(x.shape(), y);
    }
    let block: usize = axes.iter().map(|&a| x.shape()[a]).product();
    let mut y = super::arena::output_copy(x.as_f32()?);
    if block == 0 {
        return Tensor::from_f32(x.shape(), y);
    }
    let f = |row: &mut [f32]| softmax_row(row, log);
    if y.len() >= 1 << 15 {
        y.par_chunks_mut(block).with_min_len(super::threads::min_len((1 << 13) / block + 1)).for_each(f);
    } else {
        y.chunks_mut(block).for_each(f);
    }
    Tensor::from_f32(x.shape(), y)
}

/// One softmax (or log-softmax) row in place, with AVX2 and FMA where the CPU has them.
fn softmax_row(row: &mut [f32], log: bool) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { softmax_row_avx2(row, log) };
    }
    softmax_row_generic(row, log)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_row_avx2(row: &mut [f32], log: bool) {
    softmax_row_generic(row, log)
}

#[inline(always)]
fn softmax_row_generic(row: &mut [f32], log: bool) {
    // The row's max in eight lanes (a NaN is skipped, as `f32::max` does; it reaches the
    // output through the exponentials).
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = if v > *l { v } else { *l };
        }
    }
    let m = chunks.remainder().iter().chain(&lanes).copied().fold(f32::NEG_INFINITY, f32::max);
    if log {
        // x - m - log(sum) stays accurate where exp(x - m) underflows.
        let ls = lane_sum(row, |v| exp(v - m)).ln();
        row.iter_mut().for_each(|v| *v = *v - m - ls);
    } else {
        // Exponentials and their sum in separate passes: each vectorises on its own.
        row.iter_mut().for_each(|v| *v = exp(*v - m));
        let inv = 1.0 / lane_sum(row, |v| v);
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// `y`'s base pointer, shared by tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
struct SharedF32(*mut f32);
// SAFETY: tasks only write disjoint elements through it (see the use).
unsafe impl Send for SharedF32 {}
unsafe impl Sync for SharedF32 {}

impl SharedF32 {
    fn at(self, i: usize) -> *mut f32 {
        // SAFETY: callers pass offsets inside the allocation.
        unsafe { self.0.add(i) }
    }
}

/// Softmax (or log-softmax) across `rows` at each column: `rows[k][j]` is element k of
/// column j's softmax. Column-wise passes over whole rows, so the arithmetic runs across
/// columns in vector lanes.
fn softmax_columns(rows: &mut [&mut [f32]], log: bool) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { softmax_columns_avx2(rows, log) };
    }
    softmax_columns_generic(rows, log)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_columns_avx2(rows: &mut [&mut [f32]], log: bool) {
    softmax_columns_generic(rows, log)
}

#[inline(always)]
fn softmax_columns_generic(rows: &mut [&mut [f32]], log: bool) {
    let Some(n) = rows.first().map(|r| r.len()) else { return };
    // Max skips NaN as the row kernel does; a NaN still reaches its column through exp.
    let mut m = vec![f32::NEG_INFINITY; n];
    for r in rows.iter() {
        m.iter_mut().zip(r.iter()).for_each(|(m, &v)| *m = if v > *m { v } else { *m });
    }
    let mut sum = vec![0.0f32; n];
    if log {
        for r in rows.iter() {
            sum.iter_mut().zip(r.iter()).zip(&m).for_each(|((s, &v), &m)| *s += exp(v - m));
        }
        // x - m - log(sum) stays accurate where exp(x - m) underflows.
        sum.iter_mut().for_each(|s| *s = s.ln());
        for r in rows.iter_mut() {
            r.iter_mut().zip(&m).zip(&sum).for_each(|((v, &m), &ls)| *v = *v - m - ls);
        }
    } else {
        for r in rows.iter_mut() {
            r.iter_mut().zip(&mut sum).zip(&m).for_each(|((v, s), &m)| {
                *v = exp(*v - m);
                *s += *v;
            });
        }
        sum.iter_mut().for_each(|s| *s = 1.0 / *s);
        for r in rows.iter_mut() {
            r.iter_mut().zip(&sum).for_each(|(v, &inv)| *v *= inv);
        }
    }
}

pub fn layer_norm(x: &Tensor, scale: &Tensor, bias: Option<&Tensor>, axis: i64, eps: f32) -> Result<Vec<Tensor>> {
    let ax = norm_axis(axis, x.rank())?;
    let block: usize = x.shape()[ax..].iter().product();
    let (sv, bv) = (scale.as_f32()?, bias.map(|b| b.as_f32()).transpose()?);
    if sv.len() != block && sv.len() != 1 || bv.is_some_and(|b| b.len() != block && b.len() != 1) {
        bail!("scale {:?} / bias do not match normalised shape {:?}", scale.shape(), &x.shape()[ax..]);
    }
    let xv = x.as_f32()?;
    let block = block.max(1);
    let rows = xv.len() / block;
    let mut y = super::arena::output_zeroed(xv.len());
    let mut mean = vec![0f32; rows];
    let mut inv_std = vec![0f32; rows];
    // Scale and bias as full rows, so the inner loop is a plain vectorisable multiply-add.
    let full = |v: &[f32]| if v.len() == 1 { vec![v[0]; block] } else { v.to_vec() };
    let (sv, bv) = (full(sv), bv.map(full).unwrap_or_else(|| vec![0.0; block]));
    let normalise = |((out, row), (m, is)): ((&mut [f32], &[f32]), (&mut f32, &mut f32))| {
        // Two passes (mean, then centred squares) keep f32 accurate without a wider type.
        let mu = lane_sum(row, |v| v) / block as f32;
        let var = lane_sum(row, |v| (v - mu) * (v - mu)) / block as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for (((o, &v), &s), &b) in out.iter_mut().zip(row).zip(&sv).zip(&bv) {
            *o = (v - mu) * inv * s + b;
        }
        (*m, *is) = (mu, inv);
    };
    if xv.len() >= 1 << 15 {
        let work = y.par_chunks_mut(block).zip(xv.par_chunks(block)).zip(mean.par_iter_mut().zip(inv_std.par_iter_mut()));
        work.with_min_len(super::threads::min_len((1 << 13) / block + 1)).for_each(normalise);
    } else {
        y.chunks_mut(block).zip(xv.chunks(block)).zip(mean.iter_mut().zip(inv_std.iter_mut())).for_each(normalise);
    }
    let stat: Vec<usize> = (0..x.rank()).map(|d| if d < ax { x.shape()[d] } else { 1 }).collect();
    Ok(vec![Tensor::from_f32(x.shape(), y)?, Tensor::from_f32(&stat, mean)?, Tensor::from_f32(&stat, inv_std)?])
}

/// `sum f(v)` in eight interleaved lanes: vectorises (a single running sum cannot be
/// reordered) and rounds less than one long chain.
#[inline(always)]
pub(super) fn lane_sum(v: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += f(x);
        }
    }
    chunks.remainder().iter().map(|&x| f(x)).sum::<f32>() + lanes.iter().sum::<f32>()
}

/// Inference BatchNormalization: `(x - mean) / sqrt(var + eps) * scale + bias` per channel.
pub fn batch_norm(x: &Tensor, scale: &Tensor, bias: &Tensor, mean: &Tensor, var: &Tensor, eps: f32) -> Result<Tensor> {
    let c = x.shape()[1];
    let plane: usize = x.shape()[2..].iter().product();
    let (s, b, m, v) = (scale.as_f32()?, bias.as_f32()?, mean.as_f32()?, var.as_f32()?);
    let mut y = super::arena::output_copy(x.as_f32()?);
    if plane > 0 {
        y.par_chunks_mut(plane).enumerate().with_min_len(super::threads::min_len(1)).for_each(|(i, p)| {
            let ch = i % c;
            let k = s[ch] / (v[ch] + eps).sqrt();
            let off = b[ch] - m[ch] * k;
            p.iter_mut().for_each(|e| *e = *e * k + off);
        });
    }
    Tensor::from_f32(x.shape(), y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_rows_match_the_definition() {
        let mut rng = crate::test_values::Rng::new(1);
        let mut next = || rng.uniform(-20.0, 20.0);
        // Rows shorter than a lane, ragged, long; enough of them for the parallel path.
        for (rows, len) in [(3, 1), (5, 7), (4, 9), (2, 1000), (70, 513)] {
            let x: Vec<f32> = (0..rows * len).map(|_| next()).collect();
            let t = Tensor::from_f32(&[rows, len], x.clone()).unwrap();
            for log in [false, true] {
                let got = softmax(&t, -1, log, false).unwrap();
                for (r, (g, xr)) in got.as_f32().unwrap().chunks(len).zip(x.chunks(len)).enumerate() {
                    let m = xr.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
                    let sum: f64 = xr.iter().map(|&v| (v as f64 - m).exp()).sum();
                    for (i, (&gv, &xv)) in g.iter().zip(xr).enumerate() {
                        let want = if log { xv as f64 - m - sum.ln() } else { (xv as f64 - m).exp() / sum };
                        assert!((gv as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()), "log={log} row {r} of {rows}x{len} at {i}: got {gv}, want {want}");
                    }
                }
            }
        }
        let nan = softmax(&Tensor::from_f32(&[1, 3], vec![1.0, f32::NAN, 2.0]).unwrap(), -1, false, false).unwrap();
        assert!(nan.as_f32().unwrap().iter().all(|v| v.is_nan()));
        let nan = softmax(&Tensor::from_f32(&[3, 1], vec![1.0, f32::NAN, 2.0]).unwrap(), 0, true, false).unwrap();
        assert!(nan.as_f32().unwrap().iter().all(|v| v.is_nan()));
    }

    #[test]
    fn softmax_along_an_inner_axis_matches_the_definition() {
        let mut rng = crate::test_values::Rng::new(2);
        let mut next = || rng.uniform(-20.0, 20.0);
        // [outer, c, inner]: one channel, ragged, runs longer than a task's 1024 columns, and
        // enough elements for the parallel path.
        for (outer, c, inner) in [(1, 1, 5), (2, 3, 7), (3, 5, 1030), (8, 3, 1024), (1, 21, 9)] {
            let x: Vec<f32> = (0..outer * c * inner).map(|_| next()).collect();
            let t = Tensor::from_f32(&[outer, c, inner], x.clone()).unwrap();
            for log in [false, true] {
                let got = softmax(&t, 1, log, false).unwrap();
                let g = got.as_f32().unwrap();
                for o in 0..outer {
                    for j in 0..inner {
                        let at = |k: usize| (o * c + k) * inner + j;
                        let m = (0..c).fold(f64::NEG_INFINITY, |a, k| a.max(x[at(k)] as f64));
                        let sum: f64 = (0..c).map(|k| (x[at(k)] as f64 - m).exp()).sum();
                        for k in 0..c {
                            let xv = x[at(k)] as f64;
                            let want = if log { xv - m - sum.ln() } else { (xv - m).exp() / sum };
                            let gv = g[at(k)] as f64;
                            assert!((gv - want).abs() <= 1e-6 * (1.0 + want.abs()), "log={log} {outer}x{c}x{inner} at ({o},{k},{j}): got {gv}, want {want}");
                        }
                    }
                }
            }
        }
    }
}
