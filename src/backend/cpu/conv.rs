//! CPU convolution, NCHW f32. Depthwise and narrow grouped convolutions run a direct kernel
//! (`depthwise.rs`, or `depthwise_blocked.rs` for depthwise ones over narrow or strided planes);
//! one-group 2-D convolutions deep enough (256 taps) run the direct kernel with the output
//! channels in the vector lanes (`conv_direct.rs`); everything else is a GEMM per group:
//! straight on the input for pointwise (1x1, stride 1, no pad) convolutions, on an im2col
//! unfolding otherwise. A batch of small planes runs as one GEMM over all its images' pixels, a
//! batch of larger ones one task per image; a single image splits its output columns across
//! threads, each task unfolding, multiplying and applying bias + activation to its own columns
//! while they are in cache, so one convolution is one parallel region. 3-D convolutions take the
//! GEMM path with a depth axis in the unfolding.

use super::depthwise::{grouped_image, MAX_GROUP_WIDTH};
use super::conv_direct;
#[doc(hidden)]
pub use super::conv_direct::{force_conv_path, ConvPath};
use super::depthwise_blocked;
#[doc(hidden)]
pub use super::depthwise_blocked::{force_depthwise_kernel, DepthwiseKernel};
use super::epilogue::Epilogue;
use super::prepared::Prepared;
use super::fused_gemm::{gemm_epilogue, Rhs, RowFill};
use super::gemm::{sgemm, Mat, SharedOut};
use crate::error::Result;
use crate::graph::geometry::{lift3, ConvAxes};
use crate::graph::{Activation, Window};
use crate::tensor::Tensor;
use crate::bail;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Geometry of a convolution over (D, H, W): 2-D convs run as D = 1, 1-D as D = H = 1.
#[derive(Clone, Copy, Debug)]
pub(super) struct Geom {
    pub c: usize,
    pub d: usize,
    pub kd: usize,
    pub od: usize,
    pub sd: usize,
    pub dd: usize,
    /// Front (depth) padding.
    pub pf: usize,
    pub h: usize,
    pub w: usize,
    pub m: usize,
    pub kh: usize,
    pub kw: usize,
    pub oh: usize,
    pub ow: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    pub pt: usize,
    pub pl: usize,
    pub group: usize,
    /// 1x1x1 at stride 1 without padding: the GEMM reads the input as it is.
    pub pointwise: bool,
}

impl Geom {
    pub(super) fn new(c: usize, m: usize, a: &ConvAxes, group: usize) -> Geom {
        let ([d, h, w], [kd, kh, kw], [od, oh, ow]) = (a.input, a.kernel, a.out);
        let ([sd, sh, sw], [dd, dh, dw], [pf, pt, pl]) = (a.strides, a.dilations, a.pads);
        Geom { c, d, h, w, m, kd, kh, kw, od, oh, ow, sd, sh, sw, dd, dh, dw, pf, pt, pl, group, pointwise: a.pointwise() }
    }

    /// A same-size stride-1 2-D (or 1-D) convolution: each row of its unfolding is the input
    /// plane shifted by one tap's offset.
    pub fn unfolds_by_shift(&self) -> bool {
        self.d == 1 && self.sh == 1 && self.sw == 1 && self.oh == self.h && self.ow == self.w
    }

    /// A 2-D 1x1 convolution with a stride, no begin padding and every output on an input
    /// pixel, as the pointwise convolution over its subsampled input ([`subsampled_input`]).
    pub fn subsampled(&self) -> Option<Geom> {
        let one_by_one = self.d == 1 && self.kd == 1 && self.kh == 1 && self.kw == 1 && self.od == 1;
        let inside = self.oh > 0 && self.ow > 0 && (self.oh - 1) * self.sh < self.h && (self.ow - 1) * self.sw < self.w;
        (one_by_one && (self.sh > 1 || self.sw > 1) && self.pt == 0 && self.pl == 0 && self.pf == 0 && inside)
            .then_some(Geom { h: self.oh, w: self.ow, sh: 1, sw: 1, dh: 1, dw: 1, pointwise: true, ..*self })
    }

    /// Extents `(rows, cols)` of the zero-padded 2-D input that every tap of every output pixel
    /// reads, from the first padded row and column.
    pub fn padded_extents(&self) -> (usize, usize) {
        ((self.oh - 1) * self.sh + (self.kh - 1) * self.dh + 1, (self.ow - 1) * self.sw + (self.kw - 1) * self.dw + 1)
    }

    /// Elements of one input channel.
    pub fn volume(&self) -> usize {
        self.d * self.h * self.w
    }
}

pub fn conv(x: &Tensor, wt: &Tensor, bias: Option<&Tensor>, window: &Window, group: usize, act: Option<Activation>, out_shape: &[usize]) -> Result<Tensor> {
    conv_prepared(x, wt, bias, window, group, act, out_shape, None)
}

/// [`conv`] with the node's prepared state, where kernels keep what they derive from its
/// constant weights (`wt` must then be the same in every call).
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_prepared(x: &Tensor, wt: &Tensor, bias: Option<&Tensor>, window: &Window, group: usize, act: Option<Activation>, out_shape: &[usize], prepared: Option<&Prepared>) -> Result<Tensor> {
    let xs = x.shape();
    let nd = xs.len() - 2;
    if !(1..=3).contains(&nd) {
        crate::unsupported!("{nd}-D convolution on cpu");
    }
    let ws = wt.shape();
    let Some(axes) = ConvAxes::new(window, &xs[2..], &ws[2..], &out_shape[2..])? else { bail!("Conv of X {xs:?} and W {ws:?} into {out_shape:?}") };
    let g = Geom::new(xs[1], ws[0], &axes, group);
    let n = xs[0];
    let (xv, wv) = (x.as_f32()?, wt.as_f32()?);
    // A strided 1x1 convolution (a residual block's downsampling projection) is a pointwise one
    // over a subsample of its input: taken once, the product reads it in place, where the GEMM
    // path would gather it tap by tap and then pack it (regnet_y_400mf's stride-2 projections at
    // batch 8: 0.16-0.20 ms by GEMM, 0.11-0.15 subsampled). One deep enough for the direct
    // kernel stays there: resnet18's 256-channel projection onto a 3x3 plane took 0.115 ms
    // direct and 0.172 ms subsampled.
    let subsample;
    let (xv, g) = match g.subsampled().filter(|_| !conv_direct::applies(&g)) {
        Some(sub) => {
            subsample = subsampled_input(xv, n, &g);
            (&subsample[..], sub)
        }
        None => (xv, g),
    };
    let bv = bias.map(|b| b.as_f32()).transpose()?;
    let epi = Epilogue::new(bv, act);
    let plane = g.od * g.oh * g.ow;
    let total = n * g.m * plane;
    let mut y: Vec<f32> = super::arena::output(total);
    let yu = &mut y.spare_capacity_mut()[..total];
    // Depthwise and narrow groups run the direct kernel; 3-D ones take the GEMM path.
    let direct = g.group > 1 && g.c.is_multiple_of(g.group) && g.m.is_multiple_of(g.group) && g.c / g.group <= MAX_GROUP_WIDTH && g.kd == 1 && g.d == 1;
    // Every path below writes each output element exactly once, so the output starts
    // uninitialised rather than zeroed (a full extra pass over memory).
    let image = |img: usize, yi: &mut [MaybeUninit<f32>], tasks: usize| {
        let xi = &xv[img * g.c * g.volume()..(img + 1) * g.c * g.volume()];
        if direct {
            grouped_image(xi, wv, &epi, yi, &g);
        } else {
            gemm_conv_columns(xi, 1, wv, &epi, yi, &g, tasks);
        }
    };
    if g.m * plane == 0 {
    } else if direct && depthwise_blocked::applies(&g) {
        depthwise_blocked::depthwise(xv, n, wv, &epi, yu, &g);
    } else if conv_direct::applies(&g) {
        conv_direct::conv(xv, n, wv, &epi, yu, &g, prepared);
    } else if n > 1 && !direct && plane <= BATCH_MERGE_PLANE {
        batched_gemm_conv(xv, wv, &epi, yu, &g, n);
    } else if n > 1 {
        // One image per task: coarser work than splitting each image's GEMM, fewer hand-offs.
        yu.par_chunks_mut(g.m * plane).enumerate().with_min_len(super::threads::min_len(1)).for_each(|(img, yi)| image(img, yi, 1));
    } else if n == 1 {
        image(0, yu, super::threads::width());
    }
    // SAFETY: the loops above initialised all `total` elements.
    unsafe { y.set_len(total) };
    Tensor::from_f32(out_shape, y)
}

/// Planes per parallel task so that each task has at least ~16K element-operations: smaller
/// tasks cost more in thread hand-off than they compute.
pub fn min_tasks(work_per_plane: usize) -> usize {
    (16384 / work_per_plane.max(1)).max(1)
}



/// Per-image planes up to this many pixels run a batch as one GEMM whose columns are all the
/// images' pixels: a late layer's weights, far larger than its activations, then stream through
/// the cache once per batch instead of once per image, and the tiles fill.
const BATCH_MERGE_PLANE: usize = 256;

/// A batch of small planes as one GEMM over `images x plane` columns into a scratch, then each
/// image's channels copied to their place in the NCHW output.
fn batched_gemm_conv(xv: &[f32], wv: &[f32], epi: &Epilogue, y: &mut [MaybeUninit<f32>], g: &Geom, images: usize) {
    let plane = g.od * g.oh * g.ow;
    super::arena::with_scratch(g.m * images * plane, |merged| {
        gemm_conv_columns(xv, images, wv, epi, &mut merged.spare_capacity_mut()[..g.m * images * plane], g, super::threads::width());
        // SAFETY: the GEMM wrote every element of the m x (images * plane) block.
        unsafe { merged.set_len(g.m * images * plane) };
        for (ch, row) in merged.chunks(images * plane).enumerate() {
            for (img, src) in row.chunks(plane).enumerate() {
                let dst = &mut y[(img * g.m + ch) * plane..(img * g.m + ch + 1) * plane];
                for (d, &v) in dst.iter_mut().zip(src) {
                    d.write(v);
                }
            }
        }
    });
}

/// `y[M, images * OD*OH*OW] = W[M, C/g*KD*KH*KW] * unfold(x)` per group, then the epilogue, where
/// the columns run over the pixels of each of `images` images in turn (`x` holds them all);
/// split over up to `tasks` parallel tasks by output columns, or by output channels when there
/// are too few columns to share (the small feature maps late in a network).
fn gemm_conv_columns(x: &[f32], images: usize, wv: &[f32], epi: &Epilogue, y: &mut [MaybeUninit<f32>], g: &Geom, tasks: usize) {
    let (cg, mg) = (g.c / g.group, g.m / g.group);
    let kk = cg * g.kd * g.kh * g.kw;
    let plane = g.od * g.oh * g.ow;
    let cols_total = images * plane;
    let image_len = g.c * g.volume();
    // Below ~1M MACs a task is too small to hand to another thread.
    let tasks = if g.m * kk * cols_total >= 1 << 20 { tasks.max(1) } else { 1 };
    let out = SharedOut(y.as_mut_ptr().cast::<f32>());
    // Output rows [r0, r1) of group `grp` over columns [n0, n1), from the unfolded input `b`.
    let gemm_block = |grp: usize, (r0, r1): (usize, usize), (n0, n1): (usize, usize), b: Rhs| {
        let a = Mat::row_major(&wv[(grp * mg + r0) * kk..(grp * mg + r1) * kk], kk);
        let first = (grp * mg + r0) * cols_total + n0;
        // SAFETY: the block lies inside `y` (M x cols_total) and belongs to this task alone
        // (tasks take disjoint rows or columns); `y` is exclusively borrowed for the whole call.
        unsafe { gemm_epilogue(r1 - r0, n1 - n0, kk, a, b, out.ptr().add(first), cols_total, epi, grp * mg + r0) };
    };
    // Row `p` of group `grp`'s unfolding over columns [j0, j1), image by image. A pointwise
    // convolution's rows are its input channels. A batch of small planes makes a row of many
    // short segments (9 pixels each for 3x3): they advance without a division each and copy
    // inline.
    let unfold = |grp: usize, p: usize, j0: usize, j1: usize, dst: &mut [f32]| {
        let (mut j, mut img, mut pix) = (j0, j0 / plane, j0 % plane);
        while j < j1 {
            let len = (plane - pix).min(j1 - j);
            let xg = &x[img * image_len + grp * cg * g.volume()..];
            let d = &mut dst[j - j0..j - j0 + len];
            if g.pointwise {
                let src = &xg[p * plane + pix..p * plane + pix + len];
                if len < 64 {
                    short_copy(d, src);
                } else {
                    d.copy_from_slice(src);
                }
            } else {
                unfold_row(xg, g, p, pix, pix + len, d);
            }
            (j, img, pix) = (j + len, img + 1, 0);
        }
    };
    // One image's pointwise product reads its input as it is.
    fn rhs<'a>(in_place: Option<&'a [f32]>, plane: usize, fill: RowFill<'a>) -> Rhs<'a> {
        in_place.map_or(Rhs::Rows(fill), |data| Rhs::Matrix(Mat { data, rs: plane, cs: 1 }))
    }
    let in_place = |grp: usize, n0: usize| (g.pointwise && images == 1).then(|| &x[grp * cg * plane + n0..]);
    if tasks > 1 && cols_total < 64 * tasks && g.group == 1 {
        let fill = |p: usize, j0: usize, j1: usize, dst: &mut [f32]| unfold(0, p, j0, j1, dst);
        let b = rhs(in_place(0, 0), plane, &fill);
        // Row blocks stay multiples of the GEMM micro-tile height.
        let rows = mg.div_ceil(tasks).div_ceil(8) * 8;
        (0..tasks).into_par_iter().for_each(|t| {
            let (r0, r1) = (t * rows, ((t + 1) * rows).min(mg));
            if r0 < r1 {
                gemm_block(0, (r0, r1), (0, cols_total), b);
            }
        });
        return;
    }
    let tasks = tasks.min(cols_total.div_ceil(64));
    // Column blocks stay multiples of the GEMM micro-tile width.
    let cols = cols_total.div_ceil(tasks).div_ceil(16) * 16;
    let task = |t: usize| {
        let (n0, n1) = (t * cols, ((t + 1) * cols).min(cols_total));
        if n0 >= n1 {
            return;
        }
        for grp in 0..g.group {
            // The GEMM packs its B straight from the image (implicit im2col).
            let fill = |p: usize, j0: usize, j1: usize, dst: &mut [f32]| unfold(grp, p, n0 + j0, n0 + j1, dst);
            gemm_block(grp, (0, mg), (n0, n1), rhs(in_place(grp, n0), plane, &fill));
        }
    };
    if tasks == 1 {
        task(0);
    } else {
        (0..tasks).into_par_iter().for_each(task);
    }
}

/// Row `row` = (c, kz, ky, kx) of the unfolding, output columns `[n0, n1)`, into `dst`.
/// It runs once per row of every packed block, over segments as short as one output row, so
/// the position advances by increments (no division per segment) and short runs copy inline.
pub(super) fn unfold_row(x: &[f32], g: &Geom, row: usize, n0: usize, n1: usize, dst: &mut [f32]) {
    let c = row / (g.kd * g.kh * g.kw);
    let kz = (row / (g.kh * g.kw)) % g.kd;
    let ky = (row / g.kw) % g.kh;
    let kx = row % g.kw;
    let src = &x[c * g.volume()..(c + 1) * g.volume()];
    let (lo, hi) = valid_range(g.ow, g.sw, g.pl, kx * g.dw, g.w);
    if g.unfolds_by_shift() {
        return unfold_row_shifted(src, g, (ky, kx), (lo, hi), n0, n1, dst);
    }
    let (mut oz, mut oy, mut ox0) = (n0 / (g.oh * g.ow), (n0 / g.ow) % g.oh, n0 % g.ow);
    let mut p = n0;
    while p < n1 {
        let ox1 = (g.ow).min(ox0 + n1 - p);
        let d = &mut dst[p - n0..p - n0 + ox1 - ox0];
        p += ox1 - ox0;
        let iz = (oz * g.sd + kz * g.dd) as isize - g.pf as isize;
        let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
        let (a, b) = (lo.clamp(ox0, ox1), hi.clamp(ox0, ox1));
        if iz < 0 || iz >= g.d as isize || iy < 0 || iy >= g.h as isize || a >= b {
            d.fill(0.0);
        } else {
            let row_start = (iz as usize * g.h + iy as usize) * g.w;
            let srow = &src[row_start..row_start + g.w];
            d[..a - ox0].fill(0.0);
            d[b - ox0..].fill(0.0);
            let first = a * g.sw + kx * g.dw - g.pl;
            if g.sw == 1 {
                short_copy(&mut d[a - ox0..b - ox0], &srow[first..first + b - a]);
            } else {
                strided_copy(&mut d[a - ox0..b - ox0], &srow[first..], g.sw);
            }
        }
        ox0 = 0;
        oy += 1;
        if oy == g.oh {
            oy = 0;
            oz += 1;
        }
    }
}

/// [`unfold_row`] for a same-size stride-1 convolution, where the row is the input plane
/// shifted by the tap's offset: one copy, then zeros where the tap falls outside the plane.
fn unfold_row_shifted(src: &[f32], g: &Geom, (ky, kx): (usize, usize), (lo, hi): (usize, usize), n0: usize, n1: usize, dst: &mut [f32]) {
    let dst = &mut dst[..n1 - n0];
    let shift = (ky * g.dh) as isize * g.w as isize + (kx * g.dw) as isize - (g.pt * g.w + g.pl) as isize;
    // Output rows whose input row is inside the plane, as output columns.
    let (rlo, rhi) = valid_range(g.oh, 1, g.pt, ky * g.dh, g.h);
    let (a, b) = ((rlo * g.ow).clamp(n0, n1), (rhi * g.ow).clamp(n0, n1));
    if a >= b || lo >= hi {
        dst.fill(0.0);
        return;
    }
    dst[..a - n0].fill(0.0);
    dst[b - n0..].fill(0.0);
    // Columns outside [lo, hi) read the neighbouring input row (zeroed below), except left of
    // the first copied column and right of the last, where they could fall outside the plane:
    // the copy starts and ends on valid columns.
    let (oxa, oxb) = (a % g.ow, (b - 1) % g.ow);
    let ca = if oxa < lo { (a - oxa + lo).min(b) } else { a };
    let cb = if oxb >= hi { (b - 1 - oxb + hi).max(ca) } else { b };
    if ca < cb {
        let first = (ca as isize + shift) as usize;
        dst[ca - n0..cb - n0].copy_from_slice(&src[first..first + (cb - ca)]);
    }
    let mut row0 = a - a % g.ow;
    while row0 < b {
        let (z0, z1) = (row0.max(a), (row0 + lo).min(b));
        if z0 < z1 {
            dst[z0 - n0..z1 - n0].fill(0.0);
        }
        let (z0, z1) = ((row0 + hi).max(a), (row0 + g.ow).min(b));
        if z0 < z1 {
            dst[z0 - n0..z1 - n0].fill(0.0);
        }
        row0 += g.ow;
    }
}

/// `dst.copy_from_slice(src)` for runs of a few dozen elements: in fixed blocks, which inline
/// to vector moves, where a `memcpy` call costs more than the copy.
#[inline(always)]
fn short_copy(dst: &mut [f32], src: &[f32]) {
    let mut i = 0;
    while i + 16 <= dst.len() {
        let d: &mut [f32; 16] = (&mut dst[i..i + 16]).try_into().unwrap();
        d.copy_from_slice(&src[i..i + 16]);
        i += 16;
    }
    if i + 8 <= dst.len() {
        let d: &mut [f32; 8] = (&mut dst[i..i + 8]).try_into().unwrap();
        d.copy_from_slice(&src[i..i + 8]);
        i += 8;
    }
    for (d, &v) in dst[i..].iter_mut().zip(&src[i..]) {
        *d = v;
    }
}

/// The input pixels a strided 1x1 convolution reads ([`Geom::subsampled`]), as planes of
/// OH x OW: `images` images of `g.c` channels.
fn subsampled_input(x: &[f32], images: usize, g: &Geom) -> Vec<f32> {
    let (plane, sub) = (g.h * g.w, g.oh * g.ow);
    let mut out = vec![0f32; images * g.c * sub];
    out.par_chunks_mut(sub).zip(x.par_chunks(plane)).with_min_len(super::threads::min_len(min_tasks(sub))).for_each(|(dst, src)| {
        for (oy, row) in dst.chunks_exact_mut(g.ow).enumerate() {
            strided_copy(row, &src[oy * g.sh * g.w..], g.sw);
        }
    });
    out
}

/// `dst[i] = src[i * stride]`; at stride 2 four at a time from two loads and a shuffle.
#[inline(always)]
pub(super) fn strided_copy(dst: &mut [f32], src: &[f32], stride: usize) {
    let mut i = 0;
    if stride == 2 {
        i = every_other(dst, src);
    }
    for (d, &v) in dst[i..].iter_mut().zip(src[i * stride..].iter().step_by(stride)) {
        *d = v;
    }
}

/// `dst[i] = src[2 i]` in whole blocks of 4 from the start; returns where it stopped. SSE
/// shuffles, which every x86-64 CPU has: the vectoriser left the earlier blocked loop as one
/// scalar move per element, and a 3-channel stride-2 stem's unfolding (all of its taps gathered
/// this way) took 54% of the convolution's time (`perf`, 3 -> 16 channels on 96x96, batch 8).
#[inline(always)]
fn every_other(dst: &mut [f32], src: &[f32]) -> usize {
    let n = dst.len().min(src.len() / 2) / 4 * 4;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let (d, s) = (dst[..n].as_mut_ptr(), src[..2 * n].as_ptr());
        for i in (0..n).step_by(4) {
            // SAFETY: i + 4 <= n, so dst has room for 4 from i and src holds 8 from 2 i; SSE is
            // part of x86-64.
            unsafe {
                let (a, b) = (_mm_loadu_ps(s.add(2 * i)), _mm_loadu_ps(s.add(2 * i + 4)));
                _mm_storeu_ps(d.add(i), _mm_shuffle_ps::<0x88>(a, b));
            }
        }
        n
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// Output positions `[lo, hi)` along one axis whose tap `o * stride + offset - pad` lands inside `[0, size)`.
fn valid_range(out: usize, stride: usize, pad: usize, offset: usize, size: usize) -> (usize, usize) {
    // o * stride + offset >= pad  and  o * stride + offset < pad + size
    let lo = if offset >= pad { 0 } else { (pad - offset).div_ceil(stride) };
    let hi = if pad + size > offset { ((pad + size - offset).div_ceil(stride)).min(out) } else { 0 };
    (lo.min(out), hi.max(lo.min(out)))
}

#[allow(clippy::too_many_arguments)]
/// ConvTranspose over 1 to 3 spatial axes: per image and group, `col = W_g^T * X_g` by GEMM,
/// then col2im scatters each column entry to its output position.
pub fn conv_transpose(x: &Tensor, wt: &Tensor, bias: Option<&Tensor>, window: &Window, group: usize, output_padding: &[usize], output_shape: &[usize], out_shape: &[usize]) -> Result<Tensor> {
    let xs = x.shape();
    let nd = xs.len() - 2;
    if !(1..=3).contains(&nd) {
        crate::unsupported!("{nd}-D ConvTranspose on cpu");
    }
    let ws = wt.shape();
    let pads = crate::graph::infer::convtranspose_pads(window, &xs[2..], &ws[2..], output_padding, output_shape)?;
    let (size, k, o) = (lift3(&xs[2..], nd, 1), lift3(&ws[2..], nd, 1), lift3(&out_shape[2..], nd, 1));
    let (s, d, p) = (lift3(&window.strides, nd, 1), lift3(&window.dilations, nd, 1), lift3(&pads[..nd], nd, 0));
    let (n, c) = (xs[0], xs[1]);
    let (cg, mg) = (c / group, ws[1]);
    let m = mg * group;
    let (xv, wv) = (x.as_f32()?, wt.as_f32()?);
    let (vol, ovol, kvol) = (size.iter().product::<usize>(), o.iter().product::<usize>(), k.iter().product::<usize>());
    let kk = mg * kvol;
    let mut y = super::arena::output_zeroed(n * m * ovol);
    let mut col = vec![0f32; kk * vol];
    // Where input index i lands along axis a for tap t, if inside the output.
    let land = |a: usize, i: usize, t: usize| (i * s[a] + t * d[a]).checked_sub(p[a]).filter(|&v| v < o[a]);
    for img in 0..n {
        for g in 0..group {
            let xg = &xv[(img * c + g * cg) * vol..(img * c + (g + 1) * cg) * vol];
            let wg = &wv[g * cg * kk..(g + 1) * cg * kk];
            // W_g is [cg, kk]; its transpose times X_g [cg, vol] gives [kk, vol].
            sgemm(kk, vol, cg, Mat::row_major(wg, kk).transposed(), Mat::row_major(xg, vol), &mut col, false, 1.0);
            for r in 0..kk {
                let (oc, tap) = (r / kvol, r % kvol);
                let (kz, ky, kx) = (tap / (k[1] * k[2]), (tap / k[2]) % k[1], tap % k[2]);
                let dst = &mut y[(img * m + g * mg + oc) * ovol..(img * m + g * mg + oc + 1) * ovol];
                let src = &col[r * vol..(r + 1) * vol];
                for iz in 0..size[0] {
                    let Some(oz) = land(0, iz, kz) else { continue };
                    for iy in 0..size[1] {
                        let Some(oy) = land(1, iy, ky) else { continue };
                        for ix in 0..size[2] {
                            if let Some(ox) = land(2, ix, kx) {
                                dst[(oz * o[1] + oy) * o[2] + ox] += src[(iz * size[1] + iy) * size[2] + ix];
                            }
                        }
                    }
                }
            }
        }
    }
    if let Some(b) = bias {
        let b = b.as_f32()?;
        for (i, p) in y.chunks_mut(ovol.max(1)).enumerate() {
            p.iter_mut().for_each(|v| *v += b[i % m]);
        }
    }
    Tensor::from_f32(out_shape, y)
}

#[cfg(test)]
#[path = "conv_tests.rs"]
mod tests;
