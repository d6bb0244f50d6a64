//! CPU pooling (Max / Average / Lp over a window, and the global forms), NCHW f32,
//! parallel over (image, channel) planes.

use crate::error::Result;
use crate::graph::infer::resolve_pads;
use crate::graph::{PoolKind, Window};
use crate::tensor::Tensor;
use rayon::prelude::*;

pub fn pool(x: &Tensor, kind: PoolKind, window: &Window, out_shape: &[usize]) -> Result<Tensor> {
    let xs = x.shape();
    let nd = xs.len() - 2;
    if nd > 2 {
        return pool_nd(x, kind, window, out_shape);
    }
    let pads = resolve_pads(window, &xs[2..], &window.kernel_shape)?;
    let at = |v: &[usize], i: usize| v.get(i).copied().unwrap_or(1);
    // 1-D pooling runs as 2-D with a unit H axis.
    let (h, w, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl) = if nd == 2 {
        let k = &window.kernel_shape;
        (xs[2], xs[3], k[0], k[1], out_shape[2], out_shape[3], at(&window.strides, 0), at(&window.strides, 1),
         at(&window.dilations, 0), at(&window.dilations, 1), pads[0], pads[1])
    } else {
        (1, xs[2], 1, window.kernel_shape[0], 1, out_shape[2], 1, at(&window.strides, 0), 1, at(&window.dilations, 0), 0, pads[0])
    };
    let (pb, pr) = if nd == 2 { (pads[2], pads[3]) } else { (0, pads[1]) };
    let xv = x.as_f32()?;
    let mut y = super::arena::output_zeroed(out_shape.iter().product());
    // Valid taps per output column and row, computed once: the inner loops then run without
    // bounds tests.
    let cols = axis_taps(ow, sw, dw, pl, pr, kw, w);
    let rows = axis_taps(oh, sh, dh, pt, pb, kh, h);
    // All taps of output columns [full_lo, full_hi) are inside the row: no tap lists needed.
    let full_lo = pl.div_ceil(sw).min(ow);
    let full_hi = if w + pl > (kw - 1) * dw { ((w + pl - (kw - 1) * dw - 1) / sw + 1).clamp(full_lo, ow) } else { full_lo };
    let geom = RowPool { w, ow, sw, dw, pl, kw, full: full_lo..full_hi };
    y.par_chunks_mut(oh * ow).enumerate().with_min_len(super::threads::min_len(super::conv::min_tasks(oh * ow * kh * kw))).for_each_init(
        || (vec![0f32; w], vec![0f32; w]),
        |(vrow, vtmp), (p, out)| {
            let src = &xv[p * h * w..(p + 1) * h * w];
            match kind {
                // Max and sum are separable: reduce the window's rows element-wise (vectorised
                // over whole rows), then along the row.
                PoolKind::Max => separable_plane(src, out, (vrow, vtmp), &rows, &cols, &geom, Fold::Max),
                PoolKind::Average { count_include_pad } => {
                    separable_plane(src, out, (vrow, vtmp), &rows, &cols, &geom, Fold::Sum);
                    for (orow, (iys, prow)) in out.chunks_mut(ow).zip(&rows) {
                        for (o, (ixs, pcol)) in orow.iter_mut().zip(&cols) {
                            let n = if count_include_pad { prow * pcol } else { iys.len() * ixs.len() };
                            *o /= n.max(1) as f32;
                        }
                    }
                }
                PoolKind::Lp { p } => {
                    for (oy, (iys, _)) in rows.iter().enumerate() {
                        for (ox, (ixs, _)) in cols.iter().enumerate() {
                            let mut acc = 0.0f32;
                            for &iy in iys {
                                let r = &src[iy * w..(iy + 1) * w];
                                acc += ixs.iter().map(|&ix| r[ix].abs().powi(p as i32)).sum::<f32>();
                            }
                            out[oy * ow + ox] = acc.powf(1.0 / p as f32);
                        }
                    }
                }
            }
        },
    );
    Tensor::from_f32(out_shape, y)
}

/// The max of a window so far and one more value, where a NaN wins and stays (as in ONNX
/// Runtime; `f32::max` would skip it). Every max pooling path reduces with it.
#[inline(always)]
#[allow(clippy::eq_op)]
fn nan_max(a: f32, b: f32) -> f32 {
    if b > a || b != b { b } else { a }
}

/// Row geometry of a 2-D pooling window.
pub(super) struct RowPool {
    w: usize,
    ow: usize,
    sw: usize,
    dw: usize,
    pl: usize,
    kw: usize,
    full: std::ops::Range<usize>,
}

/// `dst[j] = reduce(row(ids[0])[j], row(ids[1])[j], ...)` (`init` for no rows), never reducing
/// in place: `*a = max(*a, b)` lets the compiler store only where b wins, as a masked store,
/// which is microcoded and many times slower on some CPUs (AMD Zen). Two buffers alternate
/// instead, so every store writes a new value; the last fold lands in `dst`. Each pass reads
/// three rows (the first) or the running result and two more, so a 3-row window is one pass
/// over the row, not two. The rows are reduced left to right, as one at a time would.
#[inline(always)]
fn fold_rows<'a>(ids: &[usize], row: impl Fn(usize) -> &'a [f32], dst: &mut [f32], scratch: &mut [f32], init: f32, reduce: impl Fn(f32, f32) -> f32 + Copy) {
    match ids {
        [] => dst.fill(init),
        [only] => dst.copy_from_slice(row(*only)),
        [first, second] => {
            for ((o, &x), &y) in dst.iter_mut().zip(row(*first)).zip(row(*second)) {
                *o = reduce(x, y);
            }
        }
        [first, second, third, rest @ ..] => {
            let passes = rest.len().div_ceil(2);
            let (mut a, mut b) = if passes % 2 == 0 { (&mut *dst, &mut *scratch) } else { (&mut *scratch, &mut *dst) };
            for (((o, &x), &y), &z) in a.iter_mut().zip(row(*first)).zip(row(*second)).zip(row(*third)) {
                *o = reduce(reduce(x, y), z);
            }
            for pair in rest.chunks(2) {
                if let [one, two] = *pair {
                    for (((o, &x), &y), &z) in b.iter_mut().zip(a.iter()).zip(row(one)).zip(row(two)) {
                        *o = reduce(reduce(x, y), z);
                    }
                } else {
                    for ((o, &x), &y) in b.iter_mut().zip(a.iter()).zip(row(pair[0])) {
                        *o = reduce(x, y);
                    }
                }
                std::mem::swap(&mut a, &mut b);
            }
        }
    }
}

/// The reduction of a separable pooling: max (NaN wins, see [`nan_max`]) or sum.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fold {
    Max,
    Sum,
}

/// One plane of a separable pooling, with AVX2 where the CPU has it.
#[allow(clippy::too_many_arguments)]
fn separable_plane(src: &[f32], out: &mut [f32], vrow: (&mut [f32], &mut [f32]), rows: &[(Vec<usize>, usize)], cols: &[(Vec<usize>, usize)], g: &RowPool, fold: Fold) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { separable_plane_avx2(src, out, vrow, rows, cols, g, fold) };
    }
    match fold {
        Fold::Max => separable_plane_generic(src, out, vrow, rows, cols, g, f32::NEG_INFINITY, nan_max),
        Fold::Sum => separable_plane_generic(src, out, vrow, rows, cols, g, 0.0, |a, b| a + b),
    }
}

/// The AVX2 plane: a 3-wide, stride-2 window (the common max pooling of CNN stems) reads its
/// window rows directly and reduces 8 outputs at a time with deinterleaving shuffles; the last
/// block of a row overlaps the one before instead of leaving a scalar tail. Other windows take
/// the generic plane, vectorised by the compiler for AVX2. The result is bit-identical either
/// way: each output reduces its rows first, then its columns, left to right.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
unsafe fn separable_plane_avx2(src: &[f32], out: &mut [f32], vrow: (&mut [f32], &mut [f32]), rows: &[(Vec<usize>, usize)], cols: &[(Vec<usize>, usize)], g: &RowPool, fold: Fold) {
    if !(g.kw == 3 && g.sw == 2 && g.dw == 1 && g.full.len() >= 8) {
        return match fold {
            Fold::Max => separable_plane_generic(src, out, vrow, rows, cols, g, f32::NEG_INFINITY, nan_max),
            Fold::Sum => separable_plane_generic(src, out, vrow, rows, cols, g, 0.0, |a, b| a + b),
        };
    }
    match fold {
        Fold::Max => window3_plane::<MAX>(src, out, vrow, rows, cols, g),
        Fold::Sum => window3_plane::<SUM>(src, out, vrow, rows, cols, g),
    }
}

/// The vector reductions of [`window3_plane`]: max where a NaN wins (as [`nan_max`]), the same
/// as a plain max while no value is NaN, and sum. Keeping a NaN costs a compare and a blend per
/// max; `MAX` runs plain maxes, notes whether any value it read was NaN (one unordered compare
/// per two vectors), and only then redoes the row with `MAX_KEEPING_NAN`.
const MAX: u8 = 0;
const MAX_KEEPING_NAN: u8 = 1;
const SUM: u8 = 2;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn window3_plane<const OP: u8>(src: &[f32], out: &mut [f32], (vrow, vtmp): (&mut [f32], &mut [f32]), rows: &[(Vec<usize>, usize)], cols: &[(Vec<usize>, usize)], g: &RowPool) {
    let (init, reduce): (f32, fn(f32, f32) -> f32) = if OP == SUM { (0.0, |a, b| a + b) } else { (f32::NEG_INFINITY, nan_max) };
    let row = |iy: usize| &src[iy * g.w..(iy + 1) * g.w];
    for ((iys, _), orow) in rows.iter().zip(out.chunks_mut(g.ow)) {
        match iys[..] {
            [a] => output_row::<OP, 1>(&[row(a)], orow, cols, g, init, reduce),
            [a, b] => output_row::<OP, 2>(&[row(a), row(b)], orow, cols, g, init, reduce),
            [a, b, c] => output_row::<OP, 3>(&[row(a), row(b), row(c)], orow, cols, g, init, reduce),
            ref ids => {
                fold_rows(ids, row, vrow, vtmp, init, reduce);
                output_row::<OP, 1>(&[&*vrow], orow, cols, g, init, reduce);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn output_row<const OP: u8, const N: usize>(rows: &[&[f32]; N], orow: &mut [f32], cols: &[(Vec<usize>, usize)], g: &RowPool, init: f32, reduce: fn(f32, f32) -> f32) {
    if window3_stride2::<OP, N>(rows, orow, cols, g, init, reduce) {
        window3_stride2::<MAX_KEEPING_NAN, N>(rows, orow, cols, g, init, reduce);
    }
}

/// One output row of a 3-wide, stride-2 window over the element-wise reduction of `rows`;
/// under `MAX`, whether a value read was NaN (the row is then to be redone).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn window3_stride2<const OP: u8, const N: usize>(rows: &[&[f32]; N], orow: &mut [f32], cols: &[(Vec<usize>, usize)], g: &RowPool, init: f32, reduce: fn(f32, f32) -> f32) -> bool {
    use std::arch::x86_64::*;
    let column = |ix: usize| rows[1..].iter().fold(rows[0][ix], |acc, r| reduce(acc, r[ix]));
    for ox in (0..g.full.start).chain(g.full.end..g.ow) {
        orow[ox] = cols[ox].0.iter().fold(init, |acc, &ix| reduce(acc, column(ix)));
    }
    let vreduce = |a: __m256, b: __m256| match OP {
        // max_ps returns its second operand on a NaN or a tie: `a` then, unless b is NaN.
        MAX => _mm256_max_ps(b, a),
        MAX_KEEPING_NAN => _mm256_blendv_ps(_mm256_max_ps(b, a), b, _mm256_cmp_ps::<_CMP_UNORD_Q>(b, b)),
        _ => _mm256_add_ps(a, b),
    };
    // 8 columns from `at` of the rows' element-wise reduction; under MAX, `nan` gains a lane
    // where one of them was NaN (an unordered compare tests both its sides).
    let mut nan = _mm256_setzero_ps();
    let mut load = |at: usize| {
        let x: [__m256; N] = std::array::from_fn(|r| _mm256_loadu_ps(rows[r][at..at + 8].as_ptr()));
        if OP == MAX {
            for pair in x.chunks(2) {
                nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(pair[0], pair[pair.len() - 1]));
            }
        }
        x[1..].iter().fold(x[0], |v, &y| vreduce(v, y))
    };
    // The even and odd lanes of 16 consecutive values, in order.
    let split = |lo: __m256, hi: __m256| {
        let order = |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)));
        (order(_mm256_shuffle_ps::<0b10_00_10_00>(lo, hi)), order(_mm256_shuffle_ps::<0b11_01_11_01>(lo, hi)))
    };
    let last = g.full.end - 8;
    let mut ox = g.full.start;
    loop {
        let at = ox.min(last);
        // Every output of the block has its 3 taps inside the row: base + 16 < w.
        let base = at * 2 - g.pl;
        let (even, odd) = split(load(base), load(base + 8));
        // Columns 2, 4, .. 16: the evens moved down a lane, and column 16 from 9..17's last lane.
        let shifted = _mm256_permutevar8x32_ps(even, _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 0));
        let next_even = _mm256_blend_ps::<0b1000_0000>(shifted, load(base + 9));
        _mm256_storeu_ps(orow[at..at + 8].as_mut_ptr(), vreduce(vreduce(even, odd), next_even));
        if at == last {
            break;
        }
        ox += 8;
    }
    OP == MAX && _mm256_movemask_ps(nan) != 0
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn separable_plane_generic(src: &[f32], out: &mut [f32], (vrow, vtmp): (&mut [f32], &mut [f32]), rows: &[(Vec<usize>, usize)], cols: &[(Vec<usize>, usize)], g: &RowPool, init: f32, reduce: impl Fn(f32, f32) -> f32 + Copy) {
    for ((iys, _), orow) in rows.iter().zip(out.chunks_mut(g.ow)) {
        fold_rows(iys, |iy| &src[iy * g.w..(iy + 1) * g.w], vrow, vtmp, init, reduce);
        // The common 3-wide, stride-2 window in blocks of 8 outputs over 17 inputs, which the
        // vectoriser turns into shuffles instead of a scalar loop over taps; the blocks cover
        // whole multiples of 8 of the columns whose taps are all inside the row.
        let blocked = if g.kw == 3 && g.sw == 2 && g.dw == 1 { g.full.start..g.full.start + g.full.len() / 8 * 8 } else { 0..0 };
        for ox in blocked.clone().step_by(8) {
            let base = ox * 2 - g.pl;
            let s: &[f32; 17] = vrow[base..base + 17].try_into().unwrap();
            let o: &mut [f32; 8] = (&mut orow[ox..ox + 8]).try_into().unwrap();
            for i in 0..8 {
                o[i] = reduce(reduce(s[2 * i], s[2 * i + 1]), s[2 * i + 2]);
            }
        }
        for ox in (0..blocked.start).chain(blocked.end..g.ow) {
            orow[ox] = if g.full.contains(&ox) {
                let base = ox * g.sw - g.pl;
                (1..g.kw).fold(vrow[base], |acc, t| reduce(acc, vrow[base + t * g.dw]))
            } else {
                cols[ox].0.iter().fold(init, |acc, &ix| reduce(acc, vrow[ix]))
            };
        }
    }
}

pub fn global_pool(x: &Tensor, kind: PoolKind, out_shape: &[usize]) -> Result<Tensor> {
    let xv = x.as_f32()?;
    let plane: usize = x.shape()[2..].iter().product();
    let planes = x.shape()[0] * x.shape()[1];
    let mut y = super::arena::output_zeroed(planes);
    y.par_iter_mut().enumerate().with_min_len(super::threads::min_len(1)).for_each(|(p, out)| {
        let s = &xv[p * plane..(p + 1) * plane];
        *out = match kind {
            PoolKind::Max => s.iter().copied().fold(f32::NEG_INFINITY, nan_max),
            // Eight lanes: a single running sum cannot be reordered into vectors.
            PoolKind::Average { .. } => super::reduce::lane_sum(s, |v| v) / plane as f32,
            PoolKind::Lp { p } => s.iter().map(|v| v.abs().powi(p as i32)).sum::<f32>().powf(1.0 / p as f32),
        };
    });
    Tensor::from_f32(out_shape, y)
}

/// Valid input taps of every output position along one axis, and how many taps the padded
/// window covers (for count_include_pad).
fn axis_taps(out: usize, stride: usize, dil: usize, pad_begin: usize, pad_end: usize, k: usize, size: usize) -> Vec<(Vec<usize>, usize)> {
    (0..out)
        .map(|o| {
            let (mut v, mut padded) = (vec![], 0);
            for t in 0..k {
                let i = (o * stride + t * dil) as isize - pad_begin as isize;
                if i < (size + pad_end) as isize {
                    padded += 1;
                }
                if i >= 0 && i < size as isize {
                    v.push(i as usize);
                }
            }
            (v, padded)
        })
        .collect()
}

/// Pooling over any number of spatial axes (the 3-D and higher cases; 1-D and 2-D take the
/// faster path above). Every kind is separable: max and sums reduce one axis at a time (an
/// average divides by each axis's count as it goes, Lp raises to p first and takes the root
/// last), so each output costs the sum of the window's sides, not their product, and every
/// axis but the last reduces whole contiguous rows.
fn pool_nd(x: &Tensor, kind: PoolKind, window: &Window, out_shape: &[usize]) -> Result<Tensor> {
    let xs = x.shape();
    let nd = xs.len() - 2;
    let pads = resolve_pads(window, &xs[2..], &window.kernel_shape)?;
    let at = |v: &[usize], i: usize| v.get(i).copied().unwrap_or(1);
    let taps: Vec<Vec<(Vec<usize>, usize)>> = (0..nd)
        .map(|d| axis_taps(out_shape[2 + d], at(&window.strides, d), at(&window.dilations, d), pads[d], pads[d + nd], window.kernel_shape[d], xs[2 + d]))
        .collect();
    let (in_plane, out_plane): (usize, usize) = (xs[2..].iter().product(), out_shape[2..].iter().product());
    let xv = x.as_f32()?;
    let mut y = super::arena::output_zeroed(out_shape.iter().product());
    if out_plane == 0 {
        return Tensor::from_f32(out_shape, y);
    }
    let work = out_plane * window.kernel_shape.iter().sum::<usize>();
    y.par_chunks_mut(out_plane).enumerate().with_min_len(super::threads::min_len(super::conv::min_tasks(work))).for_each_init(
        || (Vec::new(), Vec::new(), Vec::new()),
        |(a, b, scratch), (p, out)| {
            let src = &xv[p * in_plane..(p + 1) * in_plane];
            a.clear();
            match kind {
                PoolKind::Lp { p } => a.extend(src.iter().map(|v| v.abs().powi(p as i32))),
                _ => a.extend_from_slice(src),
            }
            let mut dims = xs[2..].to_vec();
            for (d, axis) in taps.iter().enumerate() {
                pool_axis(a, b, scratch, &dims[..d], dims[d], &dims[d + 1..], axis, kind);
                std::mem::swap(a, b);
                dims[d] = axis.len();
            }
            match kind {
                PoolKind::Lp { p } => out.iter_mut().zip(a.iter()).for_each(|(o, &v)| *o = v.powf(1.0 / p as f32)),
                _ => out.copy_from_slice(a),
            }
        },
    );
    Tensor::from_f32(out_shape, y)
}

/// One axis of a separable pooling: `src` is `[outer.., len, inner..]`, `dst` becomes
/// `[outer.., taps.len(), inner..]`.
#[allow(clippy::too_many_arguments)]
fn pool_axis(src: &[f32], dst: &mut Vec<f32>, scratch: &mut Vec<f32>, outer: &[usize], len: usize, inner: &[usize], taps: &[(Vec<usize>, usize)], kind: PoolKind) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { pool_axis_avx2(src, dst, scratch, outer, len, inner, taps, kind) };
    }
    pool_axis_generic(src, dst, scratch, outer, len, inner, taps, kind)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn pool_axis_avx2(src: &[f32], dst: &mut Vec<f32>, scratch: &mut Vec<f32>, outer: &[usize], len: usize, inner: &[usize], taps: &[(Vec<usize>, usize)], kind: PoolKind) {
    pool_axis_generic(src, dst, scratch, outer, len, inner, taps, kind)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pool_axis_generic(src: &[f32], dst: &mut Vec<f32>, scratch: &mut Vec<f32>, outer: &[usize], len: usize, inner: &[usize], taps: &[(Vec<usize>, usize)], kind: PoolKind) {
    let (outer, inner): (usize, usize) = (outer.iter().product(), inner.iter().product());
    let out_len = taps.len();
    dst.clear();
    dst.resize(outer * out_len * inner, 0.0);
    scratch.resize(inner, 0.0);
    let is_max = kind == PoolKind::Max;
    let init = if is_max { f32::NEG_INFINITY } else { 0.0 };
    for o in 0..outer {
        let plane = &src[o * len * inner..(o + 1) * len * inner];
        for (j, (ids, padded)) in taps.iter().enumerate() {
            let row = &mut dst[(o * out_len + j) * inner..][..inner];
            let divisor = match kind {
                PoolKind::Average { count_include_pad: true } => *padded,
                PoolKind::Average { count_include_pad: false } => ids.len(),
                _ => 1,
            };
            if inner == 1 {
                let v = ids.iter().fold(init, |acc, &i| if is_max { nan_max(acc, plane[i]) } else { acc + plane[i] });
                row[0] = if divisor > 1 { v / divisor as f32 } else { v };
                continue;
            }
            let source = |i: usize| &plane[i * inner..(i + 1) * inner];
            if is_max {
                fold_rows(ids, source, row, scratch, init, nan_max);
            } else {
                fold_rows(ids, source, row, scratch, init, |a, b| a + b);
            }
            if divisor > 1 {
                let inv = 1.0 / divisor as f32;
                row.iter_mut().for_each(|v| *v *= inv);
            }
        }
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
