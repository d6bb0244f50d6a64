//! CPU convolution, NCHW f32. Three paths: pointwise (1x1, stride 1, no pad) is one GEMM per
//! image; depthwise runs a direct kernel per channel; everything else is im2col + GEMM per group.
//! Bias and the fused activation are applied in one pass over the output.

use super::gemm::{sgemm, Mat};
use super::simd;
use crate::error::Result;
use crate::graph::infer::resolve_pads;
use crate::graph::{Activation, Window};
use crate::tensor::Tensor;
use crate::bail;
use rayon::prelude::*;

/// Geometry of a 2-D convolution (1-D convs run as H = 1).
#[derive(Clone, Copy, Debug)]
struct Geom {
    c: usize,
    h: usize,
    w: usize,
    m: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    sh: usize,
    sw: usize,
    dh: usize,
    dw: usize,
    pt: usize,
    pl: usize,
    group: usize,
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
    let plane = g.oh * g.ow;
    let mut y = vec![0f32; n * g.m * plane];
    let pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pl == 0 && g.oh == g.h && g.ow == g.w;
    let depthwise = g.group == g.c && g.group > 1 && g.m % g.c == 0;
    let image = |img: usize, yi: &mut [f32]| {
        let xi = &xv[img * g.c * g.h * g.w..(img + 1) * g.c * g.h * g.w];
        if depthwise {
            depthwise_image(xi, wv, yi, &g);
        } else if pointwise && g.group == 1 {
            sgemm(g.m, plane, g.c, Mat::row_major(wv, g.c), Mat::row_major(xi, plane), yi, false, 1.0);
        } else {
            grouped_im2col_image(xi, wv, yi, &g);
        }
        // While this image's output is still warm in cache.
        bias_activation(yi, bv, act, g.m, plane);
    };
    if n > 1 && g.m * plane > 0 {
        // One image per task: coarser work than splitting each image's GEMM, fewer hand-offs.
        y.par_chunks_mut(g.m * plane).enumerate().for_each(|(img, yi)| image(img, yi));
    } else if n == 1 {
        image(0, &mut y);
    }
    Tensor::from_f32(out_shape, y)
}

/// Planes per parallel task so that each task has at least ~16K element-operations: smaller
/// tasks cost more in thread hand-off than they compute.
pub fn min_tasks(work_per_plane: usize) -> usize {
    (16384 / work_per_plane.max(1)).max(1)
}

/// Adds the per-channel bias and applies the activation, parallel over (image, channel) planes.
fn bias_activation(y: &mut [f32], bias: Option<&[f32]>, act: Option<Activation>, m: usize, plane: usize) {
    if bias.is_none() && act.is_none() || plane == 0 {
        return;
    }
    y.par_chunks_mut(plane).enumerate().with_min_len(min_tasks(plane)).for_each(|(i, p)| {
        let b = bias.map(|b| b[i % m]).unwrap_or(0.0);
        let (lo, hi) = match act {
            None => (f32::NEG_INFINITY, f32::INFINITY),
            Some(Activation::Relu) => (0.0, f32::INFINITY),
            Some(Activation::Clip { min, max }) => (min, max),
        };
        simd::bias_act(p, b, lo, hi);
    });
}

fn grouped_im2col_image(xi: &[f32], wv: &[f32], yi: &mut [f32], g: &Geom) {
    let (cg, mg) = (g.c / g.group, g.m / g.group);
    let kk = cg * g.kh * g.kw;
    let plane = g.oh * g.ow;
    let mut col = vec![0f32; kk * plane];
    for grp in 0..g.group {
        let xg = &xi[grp * cg * g.h * g.w..(grp + 1) * cg * g.h * g.w];
        im2col(xg, &mut col, cg, g);
        let wg = &wv[grp * mg * kk..(grp + 1) * mg * kk];
        sgemm(mg, plane, kk, Mat::row_major(wg, kk), Mat::row_major(&col, plane), &mut yi[grp * mg * plane..(grp + 1) * mg * plane], false, 1.0);
    }
}

/// Unfolds `channels` input planes into rows of (c, ky, kx) x output positions; out-of-image taps are 0.
fn im2col(x: &[f32], col: &mut [f32], channels: usize, g: &Geom) {
    let plane = g.oh * g.ow;
    col.par_chunks_mut(plane).enumerate().with_min_len(min_tasks(plane)).for_each(|(row, dst)| {
        let c = row / (g.kh * g.kw);
        let ky = (row / g.kw) % g.kh;
        let kx = row % g.kw;
        let src = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        let _ = channels;
        let (lo, hi) = valid_range(g.ow, g.sw, g.pl, kx * g.dw, g.w);
        for oy in 0..g.oh {
            let d = &mut dst[oy * g.ow..(oy + 1) * g.ow];
            let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
            if iy < 0 || iy >= g.h as isize || lo >= hi {
                d.fill(0.0);
                continue;
            }
            let srow = &src[iy as usize * g.w..(iy as usize + 1) * g.w];
            d[..lo].fill(0.0);
            d[hi..].fill(0.0);
            if g.sw == 1 {
                let start = lo + kx * g.dw - g.pl;
                d[lo..hi].copy_from_slice(&srow[start..start + hi - lo]);
            } else {
                for (ox, v) in d[lo..hi].iter_mut().enumerate() {
                    *v = srow[(ox + lo) * g.sw + kx * g.dw - g.pl];
                }
            }
        }
    });
}

/// Output positions `[lo, hi)` along one axis whose tap `o * stride + offset - pad` lands inside `[0, size)`.
fn valid_range(out: usize, stride: usize, pad: usize, offset: usize, size: usize) -> (usize, usize) {
    // o * stride + offset >= pad  and  o * stride + offset < pad + size
    let lo = if offset >= pad { 0 } else { (pad - offset).div_ceil(stride) };
    let hi = if pad + size > offset { ((pad + size - offset).div_ceil(stride)).min(out) } else { 0 };
    (lo.min(out), hi.max(lo.min(out)))
}

/// Direct depthwise convolution (group == C, M = C * multiplier), parallel over channels. Each
/// plane is copied once into a zero-padded buffer so the tap loops need no bounds tests; the
/// whole per-plane kernel is compiled with AVX2+FMA where the CPU has it, so the short row loops
/// inline and vectorise instead of calling a helper per row and tap.
fn depthwise_image(xi: &[f32], wv: &[f32], yi: &mut [f32], g: &Geom) {
    let plane = g.oh * g.ow;
    let mult = g.m / g.c;
    let kplane = g.kh * g.kw;
    let wp = (g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1;
    let hp = (g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1;
    yi.par_chunks_mut(plane).enumerate().with_min_len(min_tasks(plane * kplane)).for_each_init(
        || vec![0f32; hp * wp],
        |padded, (oc, out)| {
            let src = &xi[(oc / mult) * g.h * g.w..(oc / mult + 1) * g.h * g.w];
            padded.fill(0.0);
            for y in 0..g.h {
                let py = y + g.pt;
                if py >= hp || g.pl >= wp {
                    continue;
                }
                let n = g.w.min(wp - g.pl);
                padded[py * wp + g.pl..py * wp + g.pl + n].copy_from_slice(&src[y * g.w..y * g.w + n]);
            }
            let wk = &wv[oc * kplane..(oc + 1) * kplane];
            depthwise_plane(padded, wp, wk, out, g);
        },
    );
}

fn depthwise_plane(padded: &[f32], wp: usize, wk: &[f32], out: &mut [f32], g: &Geom) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { depthwise_plane_avx2(padded, wp, wk, out, g) };
    }
    depthwise_plane_generic(padded, wp, wk, out, g)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn depthwise_plane_avx2(padded: &[f32], wp: usize, wk: &[f32], out: &mut [f32], g: &Geom) {
    depthwise_plane_generic(padded, wp, wk, out, g)
}

#[inline(always)]
fn depthwise_plane_generic(padded: &[f32], wp: usize, wk: &[f32], out: &mut [f32], g: &Geom) {
    for (oy, orow) in out.chunks_mut(g.ow).enumerate() {
        orow.fill(0.0);
        for ky in 0..g.kh {
            let row = &padded[(oy * g.sh + ky * g.dh) * wp..];
            for kx in 0..g.kw {
                let w = wk[ky * g.kw + kx];
                let s = &row[kx * g.dw..];
                if g.sw == 1 {
                    for (o, &v) in orow.iter_mut().zip(&s[..g.ow]) {
                        *o = w.mul_add(v, *o);
                    }
                } else {
                    for (x, o) in orow.iter_mut().enumerate() {
                        *o = w.mul_add(s[x * g.sw], *o);
                    }
                }
            }
        }
    }
}

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
