//! CPU convolution, NCHW f32. Depthwise convolutions run a direct kernel (`depthwise.rs`);
//! everything else is a GEMM per group: straight on the input for pointwise (1x1, stride 1, no
//! pad) convolutions, on an im2col unfolding otherwise. A batch runs one task per image; a
//! single image splits its output columns across threads, each task unfolding, multiplying and
//! applying bias + activation to its own columns while they are in cache, so one convolution is
//! one parallel region.

use super::depthwise::depthwise_image;
use super::fused_gemm::{gemm_epilogue, Rhs};
use super::gemm::{sgemm, Mat, SharedOut};
use super::simd;
use crate::error::Result;
use crate::graph::infer::resolve_pads;
use crate::graph::{Activation, Window};
use crate::tensor::Tensor;
use crate::bail;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Geometry of a 2-D convolution (1-D convs run as H = 1).
#[derive(Clone, Copy, Debug)]
pub(super) struct Geom {
    pub c: usize,
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
}

/// What every convolution output goes through last: the per-channel bias, then the fused
/// activation as a clamp (Relu is `[0, inf)`, Clip its bounds, none `(-inf, inf)`).
pub(super) struct Epilogue<'a> {
    bias: Option<&'a [f32]>,
    pub lo: f32,
    pub hi: f32,
}

impl<'a> Epilogue<'a> {
    pub fn new(bias: Option<&'a [f32]>, act: Option<Activation>) -> Self {
        let (lo, hi) = match act {
            None => (f32::NEG_INFINITY, f32::INFINITY),
            Some(Activation::Relu) => (0.0, f32::INFINITY),
            Some(Activation::Clip { min, max }) => (min, max),
        };
        Epilogue { bias, lo, hi }
    }
    pub fn bias(&self, channel: usize) -> f32 {
        self.bias.map_or(0.0, |b| b[channel])
    }
    fn is_identity(&self) -> bool {
        self.bias.is_none() && self.lo == f32::NEG_INFINITY && self.hi == f32::INFINITY
    }
    pub fn apply(&self, row: &mut [f32], channel: usize) {
        if !self.is_identity() {
            simd::bias_act(row, self.bias(channel), self.lo, self.hi);
        }
    }
}

pub fn conv(x: &Tensor, wt: &Tensor, bias: Option<&Tensor>, window: &Window, group: usize, act: Option<Activation>, out_shape: &[usize]) -> Result<Tensor> {
    let xs = x.shape();
    let nd = xs.len() - 2;
    if nd > 2 {
        bail!("{nd}-D convolution is not supported on cpu yet");
    }
    let ws = wt.shape();
    let kernel = &ws[2..];
    let pads = resolve_pads(window, &xs[2..], kernel)?;
    let at = |v: &[usize], i: usize| v.get(i).copied().unwrap_or(1);
    let g = if nd == 2 {
        Geom {
            c: xs[1], h: xs[2], w: xs[3], m: ws[0], kh: ws[2], kw: ws[3], oh: out_shape[2], ow: out_shape[3],
            sh: at(&window.strides, 0), sw: at(&window.strides, 1), dh: at(&window.dilations, 0), dw: at(&window.dilations, 1),
            pt: pads[0], pl: pads[1], group,
        }
    } else {
        Geom {
            c: xs[1], h: 1, w: xs[2], m: ws[0], kh: 1, kw: ws[2], oh: 1, ow: out_shape[2],
            sh: 1, sw: at(&window.strides, 0), dh: 1, dw: at(&window.dilations, 0), pt: 0, pl: pads[0], group,
        }
    };
    let n = xs[0];
    let (xv, wv) = (x.as_f32()?, wt.as_f32()?);
    let bv = bias.map(|b| b.as_f32()).transpose()?;
    let epi = Epilogue::new(bv, act);
    let plane = g.oh * g.ow;
    let total = n * g.m * plane;
    let mut y: Vec<f32> = Vec::with_capacity(total);
    let yu = &mut y.spare_capacity_mut()[..total];
    let depthwise = g.group == g.c && g.group > 1 && g.m % g.c == 0;
    // Every path below writes each output element exactly once, so the output starts
    // uninitialised rather than zeroed (a full extra pass over memory).
    let image = |img: usize, yi: &mut [MaybeUninit<f32>], tasks: usize| {
        let xi = &xv[img * g.c * g.h * g.w..(img + 1) * g.c * g.h * g.w];
        if depthwise {
            depthwise_image(xi, wv, &epi, yi, &g);
        } else {
            gemm_conv_image(xi, wv, &epi, yi, &g, tasks);
        }
    };
    if g.m * plane == 0 {
    } else if n > 1 {
        // One image per task: coarser work than splitting each image's GEMM, fewer hand-offs.
        yu.par_chunks_mut(g.m * plane).enumerate().for_each(|(img, yi)| image(img, yi, 1));
    } else if n == 1 {
        image(0, yu, rayon::current_num_threads());
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



/// One image by GEMM: `yi[M, OH*OW] = W[M, C/g*KH*KW] * unfold(xi)` per group, then the epilogue,
/// split over up to `tasks` parallel tasks by output columns, or by output channels when there
/// are too few columns to share (the small feature maps late in a network).
fn gemm_conv_image(xi: &[f32], wv: &[f32], epi: &Epilogue, yi: &mut [MaybeUninit<f32>], g: &Geom, tasks: usize) {
    let (cg, mg) = (g.c / g.group, g.m / g.group);
    let kk = cg * g.kh * g.kw;
    let plane = g.oh * g.ow;
    let pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pl == 0 && g.oh == g.h && g.ow == g.w;
    // Below ~1M MACs a task is too small to hand to another thread.
    let tasks = if g.m * kk * plane >= 1 << 20 { tasks.max(1) } else { 1 };
    let out = SharedOut(yi.as_mut_ptr().cast::<f32>());
    // Output rows [r0, r1) of group `grp` over columns [n0, n1), from the unfolded input `b`.
    let gemm_block = |grp: usize, (r0, r1): (usize, usize), (n0, n1): (usize, usize), b: Rhs| {
        let a = Mat::row_major(&wv[(grp * mg + r0) * kk..(grp * mg + r1) * kk], kk);
        let first = (grp * mg + r0) * plane + n0;
        // SAFETY: the block lies inside `yi` (M x plane) and belongs to this task alone (tasks
        // take disjoint rows or columns); `yi` is exclusively borrowed for the whole call.
        unsafe { gemm_epilogue(r1 - r0, n1 - n0, kk, a, b, out.ptr().add(first), plane, epi, grp * mg + r0) };
    };
    if tasks > 1 && plane < 64 * tasks && g.group == 1 {
        let unfold = |p: usize, j0: usize, j1: usize, dst: &mut [f32]| unfold_row(xi, g, p, j0, j1, dst);
        let b = if pointwise { Rhs::Matrix(Mat::row_major(xi, plane)) } else { Rhs::Rows(&unfold) };
        // Row blocks stay multiples of the GEMM micro-tile height.
        let rows = mg.div_ceil(tasks).div_ceil(8) * 8;
        (0..tasks).into_par_iter().for_each(|t| {
            let (r0, r1) = (t * rows, ((t + 1) * rows).min(mg));
            if r0 < r1 {
                gemm_block(0, (r0, r1), (0, plane), b);
            }
        });
        return;
    }
    let tasks = tasks.min(plane.div_ceil(64));
    // Column blocks stay multiples of the GEMM micro-tile width.
    let cols = plane.div_ceil(tasks).div_ceil(16) * 16;
    let task = |t: usize| {
        let (n0, n1) = (t * cols, ((t + 1) * cols).min(plane));
        if n0 >= n1 {
            return;
        }
        for grp in 0..g.group {
            let xg = &xi[grp * cg * g.h * g.w..(grp + 1) * cg * g.h * g.w];
            if pointwise {
                gemm_block(grp, (0, mg), (n0, n1), Rhs::Matrix(Mat { data: &xg[n0..], rs: plane, cs: 1 }));
            } else {
                // The GEMM packs its B straight from the image (implicit im2col).
                let unfold = |p: usize, j0: usize, j1: usize, dst: &mut [f32]| unfold_row(xg, g, p, n0 + j0, n0 + j1, dst);
                gemm_block(grp, (0, mg), (n0, n1), Rhs::Rows(&unfold));
            }
        }
    };
    if tasks == 1 {
        task(0);
    } else {
        (0..tasks).into_par_iter().for_each(task);
    }
}

/// Row `row` = (c, ky, kx) of the unfolding, output columns `[n0, n1)`, into `dst`.
pub(super) fn unfold_row(x: &[f32], g: &Geom, row: usize, n0: usize, n1: usize, dst: &mut [f32]) {
    let c = row / (g.kh * g.kw);
    let ky = (row / g.kw) % g.kh;
    let kx = row % g.kw;
    let src = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
    let (lo, hi) = valid_range(g.ow, g.sw, g.pl, kx * g.dw, g.w);
    let mut p = n0;
    while p < n1 {
        let (oy, ox0) = (p / g.ow, p % g.ow);
        let ox1 = (g.ow).min(ox0 + n1 - p);
        let d = &mut dst[p - n0..p - n0 + ox1 - ox0];
        p += ox1 - ox0;
        let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
        let (a, b) = (lo.clamp(ox0, ox1), hi.clamp(ox0, ox1));
        if iy < 0 || iy >= g.h as isize || a >= b {
            d.fill(0.0);
            continue;
        }
        let srow = &src[iy as usize * g.w..(iy as usize + 1) * g.w];
        d[..a - ox0].fill(0.0);
        d[b - ox0..].fill(0.0);
        if g.sw == 1 {
            let start = a + kx * g.dw - g.pl;
            d[a - ox0..b - ox0].copy_from_slice(&srow[start..start + b - a]);
        } else {
            for (i, v) in d[a - ox0..b - ox0].iter_mut().enumerate() {
                *v = srow[(a + i) * g.sw + kx * g.dw - g.pl];
            }
        }
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
/// ConvTranspose (1-D and 2-D): per image and group, `col = W_g^T * X_g` by GEMM, then col2im
/// scatters each column entry to its output position.
pub fn conv_transpose(x: &Tensor, wt: &Tensor, bias: Option<&Tensor>, window: &Window, group: usize, output_padding: &[usize], output_shape: &[usize], out_shape: &[usize]) -> Result<Tensor> {
    let xs = x.shape();
    let nd = xs.len() - 2;
    if nd > 2 {
        crate::unsupported!("{nd}-D ConvTranspose on cpu");
    }
    let ws = wt.shape();
    let pads = crate::graph::infer::convtranspose_pads(window, &xs[2..], &ws[2..], output_padding, output_shape)?;
    let at = |v: &[usize], i: usize| v.get(i).copied().unwrap_or(1);
    let (h, w, kh, kw, oh, ow) = if nd == 2 { (xs[2], xs[3], ws[2], ws[3], out_shape[2], out_shape[3]) } else { (1, xs[2], 1, ws[2], 1, out_shape[2]) };
    let (sh, sw, dh, dw, pt, pl) = if nd == 2 {
        (at(&window.strides, 0), at(&window.strides, 1), at(&window.dilations, 0), at(&window.dilations, 1), pads[0], pads[1])
    } else {
        (1, at(&window.strides, 0), 1, at(&window.dilations, 0), 0, pads[0])
    };
    let (n, c) = (xs[0], xs[1]);
    let (cg, mg) = (c / group, ws[1]);
    let m = mg * group;
    let (xv, wv) = (x.as_f32()?, wt.as_f32()?);
    let kk = mg * kh * kw;
    let mut y = vec![0f32; n * m * oh * ow];
    let mut col = vec![0f32; kk * h * w];
    for img in 0..n {
        for g in 0..group {
            let xg = &xv[(img * c + g * cg) * h * w..(img * c + (g + 1) * cg) * h * w];
            let wg = &wv[g * cg * kk..(g + 1) * cg * kk];
            // W_g is [cg, kk]; its transpose times X_g [cg, h*w] gives [kk, h*w].
            sgemm(kk, h * w, cg, Mat::row_major(wg, kk).transposed(), Mat::row_major(xg, h * w), &mut col, false, 1.0);
            for r in 0..kk {
                let (oc, ky, kx) = (r / (kh * kw), (r / kw) % kh, r % kw);
                let dst = &mut y[(img * m + g * mg + oc) * oh * ow..(img * m + g * mg + oc + 1) * oh * ow];
                for iy in 0..h {
                    let oy = (iy * sh + ky * dh) as isize - pt as isize;
                    if oy < 0 || oy >= oh as isize {
                        continue;
                    }
                    for ix in 0..w {
                        let ox = (ix * sw + kx * dw) as isize - pl as isize;
                        if ox >= 0 && ox < ow as isize {
                            dst[oy as usize * ow + ox as usize] += col[r * h * w + iy * w + ix];
                        }
                    }
                }
            }
        }
    }
    if let Some(b) = bias {
        let b = b.as_f32()?;
        for (i, p) in y.chunks_mut(oh * ow).enumerate() {
            p.iter_mut().for_each(|v| *v += b[i % m]);
        }
    }
    Tensor::from_f32(out_shape, y)
}

#[cfg(test)]
#[path = "conv_tests.rs"]
mod tests;
