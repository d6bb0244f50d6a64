//! Depthwise convolution (one input and one output channel per group) over narrow planes or with a
//! stride, NCHW f32, with the channels blocked by eight: the late layers of MobileNet- and
//! EfficientNet-style networks have hundreds of channels of 7x7, 6x6 or 3x3 pixels, too narrow to
//! fill a vector along a row, and the per-plane kernel (`depthwise.rs`) spends more on each plane's
//! setup than on its taps there. Here eight channels are interleaved into a zero-padded scratch, so
//! a vector holds one pixel of eight channels and every tap is one FMA for all of them, whatever
//! the plane's width (the NCHWc layout ONNX Runtime converts whole networks to, applied per block).

use super::conv::{min_tasks, Geom};
use super::epilogue::Epilogue;
use super::simd;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU8, Ordering};

/// Channels per block: one AVX2 vector.
const CB: usize = 8;
/// Output pixels computed together, each with its own accumulator, to hide the FMA latency.
const PIXELS: usize = 4;

/// From this output width on, a stride-1 depthwise convolution runs the per-plane kernel, whose
/// rows then fill its vectors and which needs no transposes. Strided ones always run here: the
/// per-plane kernel splits their columns by phase, and its rows get short (measured in
/// BENCHMARKS.md, "Depthwise kernels", `cargo bench --bench conv_kernels`).
pub const PLANE_KERNEL_WIDTH: usize = 48;

/// Which kernel runs depthwise convolutions: chosen by shape, or one of the two forced, so that
/// `benches/conv_kernels.rs` can time both on the same shape.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DepthwiseKernel {
    ByShape = 0,
    PerPlane = 1,
    ChannelBlocked = 2,
}

static FORCED: AtomicU8 = AtomicU8::new(DepthwiseKernel::ByShape as u8);

/// Forces a depthwise kernel process-wide (benches only; the default is by shape).
#[doc(hidden)]
pub fn force_depthwise_kernel(kernel: DepthwiseKernel) {
    FORCED.store(kernel as u8, Ordering::Relaxed);
}

/// Whether the blocked kernel takes this convolution.
pub fn applies(g: &Geom) -> bool {
    let depthwise = g.group == g.c && g.group == g.m && g.d == 1 && g.kd == 1;
    match FORCED.load(Ordering::Relaxed) {
        1 => false,
        2 => depthwise,
        _ => depthwise && (g.sw > 1 || g.ow < PLANE_KERNEL_WIDTH),
    }
}

/// Extents of the padded input the taps read: `(rows, cols)`.
fn padded(g: &Geom) -> (usize, usize) {
    ((g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1, (g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1)
}

/// One image: `xi` is [C, H, W], `yi` is [C, OH, OW]; one task per block of eight channels.
pub fn depthwise_image(xi: &[f32], wv: &[f32], epi: &Epilogue, yi: &mut [MaybeUninit<f32>], g: &Geom) {
    let plane = g.oh * g.ow;
    if plane == 0 {
        return;
    }
    let taps = g.kh * g.kw;
    let (rows, cols) = padded(g);
    yi.par_chunks_mut(CB * plane).enumerate().with_min_len(super::threads::min_len(min_tasks(CB * plane * taps))).for_each_init(
        || (vec![0f32; rows * cols * CB], vec![0f32; plane * CB], vec![0f32; (taps + 1) * CB]),
        |(xs, ys, wk), (block, outs)| {
            let c0 = block * CB;
            let lanes = (g.c - c0).min(CB);
            interleave(xi, c0, lanes, xs, g, cols);
            // Weights as [tap][lane], then the bias as one more row; absent lanes stay zero.
            wk.fill(0.0);
            for l in 0..lanes {
                for t in 0..taps {
                    wk[t * CB + l] = wv[(c0 + l) * taps + t];
                }
                wk[taps * CB + l] = epi.bias(c0 + l);
            }
            block_kernel(xs, wk, epi, ys, g, cols);
            epi.finish(ys);
            deinterleave(ys, outs, lanes, plane);
        },
    );
}

/// Channels `[c0, c0 + lanes)` of `xi` into `xs` as [row][col][lane], zero where the taps read
/// padding (and in absent lanes). Full blocks go 8 pixels at a time through an 8 x 8 transpose.
fn interleave(xi: &[f32], c0: usize, lanes: usize, xs: &mut [f32], g: &Geom, cols: usize) {
    xs.fill(0.0);
    // Input columns the taps read: [0, width).
    let width = g.w.min(cols.saturating_sub(g.pl));
    for (sy, row) in xs.chunks_mut(cols * CB).enumerate() {
        let Some(iy) = sy.checked_sub(g.pt).filter(|&iy| iy < g.h) else { continue };
        let src = |l: usize| &xi[(c0 + l) * g.h * g.w + iy * g.w..][..g.w];
        let mut x = 0;
        if lanes == CB {
            let srcs: [&[f32]; CB] = std::array::from_fn(src);
            while x + 8 <= width {
                let dst = &mut row[(g.pl + x) * CB..(g.pl + x + 8) * CB];
                // SAFETY: each source row has 8 elements from x (x + 8 <= w) and `dst` is 8 x 8.
                unsafe { simd::transpose8x8(srcs.map(|s| s[x..].as_ptr()), dst.as_mut_ptr(), CB) };
                x += 8;
            }
        }
        for l in 0..lanes {
            let s = src(l);
            for ix in x..width {
                row[(g.pl + ix) * CB + l] = s[ix];
            }
        }
    }
}

/// The block's output `ys` ([pixel][lane]) into the channel planes `outs` ([lane][pixel]).
fn deinterleave(ys: &[f32], outs: &mut [MaybeUninit<f32>], lanes: usize, plane: usize) {
    let mut p = 0;
    if lanes == CB {
        assert!(outs.len() >= CB * plane && ys.len() >= CB * plane);
        while p + 8 <= plane {
            let srcs: [*const f32; CB] = std::array::from_fn(|j| ys[(p + j) * CB..].as_ptr());
            // SAFETY: pixels p..p + 8 hold 8 lanes each; lane l's plane has room at p..p + 8
            // (asserted above), and `outs` is exclusively borrowed.
            unsafe { simd::transpose8x8(srcs, outs.as_mut_ptr().add(p).cast::<f32>(), plane) };
            p += 8;
        }
    }
    for (l, out) in outs.chunks_mut(plane).enumerate().take(lanes) {
        for (q, o) in out.iter_mut().enumerate().skip(p) {
            o.write(ys[q * CB + l]);
        }
    }
}

fn block_kernel(xs: &[f32], wk: &[f32], epi: &Epilogue, ys: &mut [f32], g: &Geom, cols: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { block_kernel_avx2(xs, wk, epi, ys, g, cols) };
    }
    block_kernel_generic(xs, wk, epi, ys, g, cols)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_kernel_avx2(xs: &[f32], wk: &[f32], epi: &Epilogue, ys: &mut [f32], g: &Geom, cols: usize) {
    block_kernel_generic(xs, wk, epi, ys, g, cols)
}

/// All output pixels of one block, `PIXELS` of a row at a time: `ys[p][lane]` = bias + sum over
/// taps of weight x input, clamped.
#[inline(always)]
fn block_kernel_generic(xs: &[f32], wk: &[f32], epi: &Epilogue, ys: &mut [f32], g: &Geom, cols: usize) {
    let taps = g.kh * g.kw;
    let (rows, _) = padded(g);
    // Bounds every read below: the furthest tap of the furthest pixel is inside the scratch.
    assert!(xs.len() >= rows * cols * CB && wk.len() >= (taps + 1) * CB && ys.len() >= g.oh * g.ow * CB, "depthwise block scratch too small");
    let at = |i: usize| -> &[f32; CB] {
        // SAFETY: callers pass i < rows * cols (pixels inside the padded extents).
        unsafe { &*xs.as_ptr().add(i * CB).cast::<[f32; CB]>() }
    };
    let weights: &[[f32; CB]] = &wk.as_chunks::<CB>().0[..taps + 1];
    let bias = weights[taps];
    for oy in 0..g.oh {
        let mut ox = 0;
        while ox < g.ow {
            let n = PIXELS.min(g.ow - ox);
            // Pixels past the row's end recompute its last one rather than branch in the tap loop.
            let first: [usize; PIXELS] = std::array::from_fn(|j| oy * g.sh * cols + (ox + j.min(n - 1)) * g.sw);
            let mut acc = [bias; PIXELS];
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let w = &weights[ky * g.kw + kx];
                    let off = ky * g.dh * cols + kx * g.dw;
                    for (a, &f) in acc.iter_mut().zip(&first) {
                        let s = at(f + off);
                        for l in 0..CB {
                            a[l] = w[l].mul_add(s[l], a[l]);
                        }
                    }
                }
            }
            for (j, a) in acc.iter().enumerate().take(n) {
                let o: &mut [f32; CB] = (&mut ys[((oy * g.ow) + ox + j) * CB..][..CB]).try_into().unwrap();
                *o = a.map(|v| epi.clamp(v));
            }
            ox += n;
        }
    }
}
