//! Depthwise convolution (one input and one output channel per group) over narrow planes or with a
//! stride, NCHW f32, with the channels blocked by one vector's lanes (8 with AVX2, 16 with
//! AVX-512): the late layers of MobileNet- and
//! EfficientNet-style networks have hundreds of channels of 7x7, 6x6 or 3x3 pixels, too narrow to
//! fill a vector along a row, and the per-plane kernel (`depthwise.rs`) spends more on each plane's
//! setup than on its taps there. Here a block's channels are interleaved into a zero-padded scratch,
//! so a vector holds one pixel of all of them and every tap is one FMA for the block, whatever
//! the plane's width (the NCHWc layout ONNX Runtime converts whole networks to, applied per block).

use super::conv::{min_tasks, Geom};
use super::epilogue::Epilogue;
use super::simd;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// Channels per block for this convolution: 16, one AVX-512 vector, for a stride-1 output plane
/// of at most `WIDE_BLOCK_PLANE` pixels on a CPU that has AVX-512, else 8; or the width
/// `force_depthwise_lanes` set (tests run both on an AVX-512 CPU). Wide blocks pay on late
/// layers' small planes, where a block's taps outweigh its interleaving. Measured on
/// mobilenet_v2: with 16 lanes a 56x56 or 14x14 plane, or a stride of 2, ran up to 2x slower
/// than with 8; 7x7 planes ran 10% faster (BENCHMARKS.md).
fn block_width(g: &Geom) -> usize {
    match FORCED_LANES.load(Ordering::Relaxed) {
        0 => {
            #[cfg(target_arch = "x86_64")]
            if g.sw == 1 && g.sh == 1 && g.oh * g.ow <= WIDE_BLOCK_PLANE && std::arch::is_x86_feature_detected!("avx512f") {
                return 16;
            }
            8
        }
        forced => forced,
    }
}

static FORCED_LANES: AtomicUsize = AtomicUsize::new(0);

/// Output planes up to this many pixels, at stride 1, take blocks of 16 lanes where the CPU has
/// them.
const WIDE_BLOCK_PLANE: usize = 64;

/// Forces the block width, 8 or 16 (0: by shape and CPU), for tests; 16 lanes run correctly
/// anywhere, in two AVX2 vectors where there is no AVX-512.
#[cfg(test)]
pub(super) fn force_depthwise_lanes(lanes: usize) {
    FORCED_LANES.store(lanes, Ordering::Relaxed);
}

/// Output pixels computed together, each with its own accumulator, to hide the FMA latency (two
/// FMAs a cycle, four cycles each); a plane's last few go in groups of `TAIL_PIXELS`.
const PIXELS: usize = 8;
const TAIL_PIXELS: usize = 4;

/// From this output width on, a stride-1 depthwise convolution runs the per-plane kernel, whose
/// rows then fill its vectors and which needs no transposes. Strided ones always run here: the
/// per-plane kernel splits their columns by phase, and its rows get short (measured in
/// BENCHMARKS.md, "Depthwise kernels", `cargo bench --bench conv_kernels`).
pub const PLANE_KERNEL_WIDTH: usize = 48;
/// The same width on AVX-512 CPUs, where the per-plane kernel's rows are 16 lanes from 14
/// pixels on. `cargo bench --bench conv_kernels`, once the row kernels load each input column
/// once per kernel row: at 28 pixels the blocked kernel took 170-174 µs against 188-215, at 40
/// the two were even (165 against 173), at 48 and 56 the per-plane one won (206 against 277,
/// 487 against 573). Before the row kernels the switch was at 28 (BENCHMARKS.md).
pub const PLANE_KERNEL_WIDTH_AVX512: usize = 40;

fn plane_kernel_width() -> usize {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        return PLANE_KERNEL_WIDTH_AVX512;
    }
    PLANE_KERNEL_WIDTH
}

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
        _ => depthwise && (g.sw > 1 || g.ow < plane_kernel_width()),
    }
}


/// All images: `x` is [N, C, H, W], `y` is [N, C, OH, OW]; one task per image and block of
/// channels, so a batch of late layers (hundreds of channels, a few pixels each) fills every
/// thread, and the weights are interleaved once per convolution rather than once per image.
pub fn depthwise(x: &[f32], images: usize, wv: &[f32], epi: &Epilogue, y: &mut [MaybeUninit<f32>], g: &Geom) {
    if block_width(g) == 16 {
        blocked::<16>(x, images, wv, epi, y, g)
    } else {
        blocked::<8>(x, images, wv, epi, y, g)
    }
}

/// [`depthwise`] in blocks of `CB` channels.
fn blocked<const CB: usize>(x: &[f32], images: usize, wv: &[f32], epi: &Epilogue, y: &mut [MaybeUninit<f32>], g: &Geom) {
    let plane = g.oh * g.ow;
    if plane == 0 || images == 0 {
        return;
    }
    let taps = g.kh * g.kw;
    // Weights as [block][tap][lane], then the bias as one more row; absent lanes stay zero.
    let block_len = (taps + 1) * CB;
    let mut wk = vec![0f32; g.c.div_ceil(CB) * block_len];
    for c in 0..g.c {
        let block = &mut wk[(c / CB) * block_len..][..block_len];
        for t in 0..taps {
            block[t * CB + c % CB] = wv[c * taps + t];
        }
        block[taps * CB + c % CB] = epi.bias(c);
    }
    let mut tasks: Vec<(usize, usize, &mut [MaybeUninit<f32>])> = Vec::with_capacity(images * g.c.div_ceil(CB));
    for (img, yi) in y.chunks_mut(g.c * plane).take(images).enumerate() {
        tasks.extend(yi.chunks_mut(CB * plane).enumerate().map(|(block, outs)| (img, block, outs)));
    }
    let (rows, cols) = g.padded_extents();
    let image_len = g.c * g.h * g.w;
    tasks.into_par_iter().with_min_len(super::threads::min_len(min_tasks(CB * plane * taps))).for_each_init(
        // The padded scratch's border is never written, so it stays zero from here on.
        || (vec![0f32; rows * cols * CB + ROW_SLACK * CB], Vec::new(), vec![0f32; plane * CB]),
        |(xs, flat, ys), (img, block, outs)| {
            let c0 = block * CB;
            let lanes = (g.c - c0).min(CB);
            let planes = &x[img * image_len + c0 * g.h * g.w..][..lanes * g.h * g.w];
            interleave::<CB>(planes, lanes, flat, xs, g, cols);
            block_kernel::<CB>(xs, &wk[block * block_len..][..block_len], epi, ys, g, cols);
            epi.finish(ys);
            deinterleave::<CB>(ys, outs, lanes, plane);
        },
    );
}

/// The `lanes` input planes `planes` into the padded scratch `xs` as [row][col][lane], inside its
/// zero border; absent lanes read zero. A full block transposes 8 pixels of 8 lanes at a time,
/// straight into the scratch along each row when the rows hold 8 pixels (a last, overlapping
/// transpose takes the row's tail), else over the planes taken as one run of pixels into `flat`,
/// then copied row by row (a late layer's 3- or 6-pixel rows would leave no whole transpose); `flat` grows to
/// its size on first use, so tasks whose rows are wide enough never allocate it.
fn interleave<const CB: usize>(planes: &[f32], lanes: usize, flat: &mut Vec<f32>, xs: &mut [f32], g: &Geom, cols: usize) {
    let hw = g.h * g.w;
    // Input columns the taps read: [0, width); rows past the padded extent are never read.
    let width = g.w.min(cols.saturating_sub(g.pl));
    let rows = g.padded_extents().0.saturating_sub(g.pt).min(g.h);
    if lanes == CB && width >= 8 {
        for iy in 0..rows {
            let row = &mut xs[((iy + g.pt) * cols + g.pl) * CB..][..width * CB];
            for x in simd::starts_of_eight(width) {
                for l0 in (0..CB).step_by(8) {
                    // SAFETY: each plane has 8 pixels from iy * w + x (x + 8 <= width <= w) and
                    // the row of the scratch room for pixels x..x + 8 of CB lanes each.
                    unsafe { simd::transpose8x8(std::array::from_fn(|l| planes[(l0 + l) * hw + iy * g.w + x..].as_ptr()), row[x * CB + l0..(x + 7) * CB + l0 + 8].as_mut_ptr(), CB) };
                }
            }
        }
        return;
    }
    flat.resize(hw * CB, 0.0);
    if lanes == CB && hw >= 8 {
        for q in simd::starts_of_eight(hw) {
            for l0 in (0..CB).step_by(8) {
                // SAFETY: each plane has 8 pixels from q (q + 8 <= hw), and `flat` room for
                // pixels q..q + 8 of CB lanes each.
                unsafe { simd::transpose8x8(std::array::from_fn(|l| planes[(l0 + l) * hw + q..].as_ptr()), flat[q * CB + l0..(q + 7) * CB + l0 + 8].as_mut_ptr(), CB) };
            }
        }
    } else {
        for (p, pixel) in flat.chunks_exact_mut(CB).enumerate() {
            for (l, v) in pixel.iter_mut().enumerate() {
                *v = if l < lanes { planes[l * hw + p] } else { 0.0 };
            }
        }
    }
    for (iy, src) in flat.chunks_exact(g.w * CB).take(rows).enumerate() {
        xs[((iy + g.pt) * cols + g.pl) * CB..][..width * CB].copy_from_slice(&src[..width * CB]);
    }
}

/// The block's output `ys` ([pixel][lane]) into the channel planes `outs` ([lane][pixel]). Its
/// own loops, with the block width a constant, rather than `simd::transpose_into`: through that
/// helper the depthwise layers of mnasnet0_5 measured 4-13% slower.
fn deinterleave<const CB: usize>(ys: &[f32], outs: &mut [MaybeUninit<f32>], lanes: usize, plane: usize) {
    if lanes == CB && plane >= 8 {
        assert!(outs.len() >= CB * plane && ys.len() >= CB * plane);
        for p in simd::starts_of_eight(plane) {
            for l0 in (0..CB).step_by(8) {
                let srcs: [*const f32; 8] = std::array::from_fn(|j| ys[(p + j) * CB + l0..].as_ptr());
                // SAFETY: pixels p..p + 8 hold CB lanes each; lane l's plane has room at
                // p..p + 8 (asserted above), and `outs` is exclusively borrowed.
                unsafe { simd::transpose8x8(srcs, outs.as_mut_ptr().add(l0 * plane + p).cast::<f32>(), plane) };
            }
        }
        return;
    }
    for (l, out) in outs.chunks_mut(plane).enumerate().take(lanes) {
        for (q, o) in out.iter_mut().enumerate() {
            o.write(ys[q * CB + l]);
        }
    }
}

fn block_kernel<const CB: usize>(xs: &[f32], wk: &[f32], epi: &Epilogue, ys: &mut [f32], g: &Geom, cols: usize) {
    #[cfg(target_arch = "x86_64")]
    if CB == 16 && std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { block_kernel_avx512(xs, wk, epi, ys, g, cols) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { block_kernel_avx2::<CB>(xs, wk, epi, ys, g, cols) };
    }
    block_kernel_generic::<CB>(xs, wk, epi, ys, g, cols)
}

/// [`block_kernel_generic`] for 16 lanes in AVX-512 registers, written out: left to itself the
/// vectoriser runs the generic loops across pixels, with a gather and a scatter per tap.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block_kernel_avx512(xs: &[f32], wk: &[f32], epi: &Epilogue, ys: &mut [f32], g: &Geom, cols: usize) {
    use std::arch::x86_64::*;
    assert_scratch(xs, wk, ys, g, cols, 16);
    // SAFETY: AVX-512F is enabled here.
    if unsafe { by_rows_avx512(xs, wk, epi, ys, g, cols) } {
        return;
    }
    let plane = g.oh * g.ow;
    let (lo, hi) = (_mm512_set1_ps(epi.lo), _mm512_set1_ps(epi.hi));
    let mut p = 0;
    while p < plane {
        p += if plane - p > TAIL_PIXELS {
            // SAFETY: AVX-512F is enabled here; the scratch sizes are asserted above.
            unsafe { pixel_group_avx512::<PIXELS>(xs, wk, (lo, hi), ys, g, cols, p) }
        } else {
            // SAFETY: as above.
            unsafe { pixel_group_avx512::<TAIL_PIXELS>(xs, wk, (lo, hi), ys, g, cols, p) }
        };
    }
}

/// [`pixel_group`] in AVX-512 registers, 16 lanes.
///
/// # Safety
/// AVX-512F must be available, and the scratches as large as `block_kernel_avx512` asserts.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn pixel_group_avx512<const P: usize>(xs: &[f32], wk: &[f32], (lo, hi): (std::arch::x86_64::__m512, std::arch::x86_64::__m512), ys: &mut [f32], g: &Geom, cols: usize, p: usize) -> usize {
    use std::arch::x86_64::*;
    const CB: usize = 16;
    let taps = g.kh * g.kw;
    let (n, first) = group_starts::<P>(g, cols, p);
    // SAFETY (every load and store below): pixels inside the padded extents and taps + 1 weight
    // rows, as the caller vouches; ys holds the plane's pixels.
    let mut acc = [unsafe { _mm512_loadu_ps(wk.as_ptr().add(taps * CB)) }; P];
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            let w = unsafe { _mm512_loadu_ps(wk.as_ptr().add((ky * g.kw + kx) * CB)) };
            let off = ky * g.dh * cols + kx * g.dw;
            for (a, &f) in acc.iter_mut().zip(&first) {
                *a = _mm512_fmadd_ps(w, unsafe { _mm512_loadu_ps(xs.as_ptr().add((f + off) * CB)) }, *a);
            }
        }
    }
    for (j, &a) in acc.iter().enumerate().take(n) {
        // x second, so a NaN stays NaN (as `Epilogue::clamp`).
        unsafe { _mm512_storeu_ps(ys.as_mut_ptr().add((p + j) * CB), _mm512_min_ps(hi, _mm512_max_ps(lo, a))) };
    }
    n
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_kernel_avx2<const CB: usize>(xs: &[f32], wk: &[f32], epi: &Epilogue, ys: &mut [f32], g: &Geom, cols: usize) {
    assert_scratch(xs, wk, ys, g, cols, CB);
    // SAFETY: AVX2 and FMA are enabled here.
    if CB == 8 && unsafe { by_rows_avx2(xs, wk, epi, ys, g, cols) } {
        return;
    }
    block_kernel_generic::<CB>(xs, wk, epi, ys, g, cols)
}

/// All output pixels of one block, `PIXELS` at a time: `ys[p][lane]` = bias + sum over
/// taps of weight x input, clamped.
#[inline(always)]
fn block_kernel_generic<const CB: usize>(xs: &[f32], wk: &[f32], epi: &Epilogue, ys: &mut [f32], g: &Geom, cols: usize) {
    let taps = g.kh * g.kw;
    assert_scratch(xs, wk, ys, g, cols, CB);
    let at = |i: usize| -> &[f32; CB] {
        // SAFETY: callers pass i < rows * cols (pixels inside the padded extents).
        unsafe { &*xs.as_ptr().add(i * CB).cast::<[f32; CB]>() }
    };
    let weights: &[[f32; CB]] = &wk.as_chunks::<CB>().0[..taps + 1];
    // Pixels run in groups across row ends, so a 3- or 6-wide row wastes no accumulators.
    let plane = g.oh * g.ow;
    let mut p = 0;
    while p < plane {
        p += if plane - p > TAIL_PIXELS { pixel_group::<PIXELS, CB>(&at, weights, epi, ys, g, cols, p) } else { pixel_group::<TAIL_PIXELS, CB>(&at, weights, epi, ys, g, cols, p) };
    }
}

/// Up to `P` output pixels of a block from `p` on, into `ys`; returns how many it wrote.
#[inline(always)]
fn pixel_group<'a, const P: usize, const CB: usize>(at: &impl Fn(usize) -> &'a [f32; CB], weights: &[[f32; CB]], epi: &Epilogue, ys: &mut [f32], g: &Geom, cols: usize, p: usize) -> usize {
    let taps = g.kh * g.kw;
    let (n, first) = group_starts::<P>(g, cols, p);
    let mut acc = [weights[taps]; P];
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
        let o: &mut [f32; CB] = (&mut ys[(p + j) * CB..][..CB]).try_into().unwrap();
        *o = a.map(|v| epi.clamp(v));
    }
    n
}

/// Output rows at least this wide run through the row kernels; narrower ones group their pixels
/// across rows. A 6- or 3-pixel row leaves a quarter of its group of 8 or 4 empty, and still
/// runs 20-25% faster than across rows: mnasnet0_5's 6x6 and 3x3 layers at batch 8, one
/// thread, went from 0.059-0.100 to 0.046-0.074 ms each.
const ROW_KERNEL_WIDTH: usize = 3;

/// Pixels of scratch past the padded extents, so that a row's last group of `PIXELS` may read
/// the columns of pixels past the row's end (computed, never stored) without a bounds branch.
const ROW_SLACK: usize = 2 * PIXELS;

/// Whether the row kernels take this convolution's plane (where the CPU has AVX2 or AVX-512):
/// a kernel 3, 5 or 7 columns wide, stride 1 or 2 along the rows, no dilation along them, and
/// output rows `ROW_KERNEL_WIDTH` wide or more.
pub(super) fn takes_rows(g: &Geom) -> bool {
    g.dw == 1 && g.ow >= ROW_KERNEL_WIDTH && matches!(g.kw, 3 | 5 | 7) && matches!(g.sw, 1 | 2)
}

/// Row kernels for one vector width: `$by_rows` runs the whole plane row by row where the kernel
/// width and stride are ones they are built for (3, 5 or 7 columns, stride 1 or 2, no dilation)
/// and the rows are `ROW_KERNEL_WIDTH` wide or more, and returns false (nothing written)
/// otherwise. Each group is up to `P` pixels of one output row; with the kernel's width and
/// stride constants the loops unroll and the input columns the pixels share (pixel j's tap kx
/// reads column `S j + kx`) are loaded once per kernel row, where [`pixel_group`] loads every tap
/// of every pixel and computes each pixel's offsets. Written in intrinsics: left to itself the
/// vectoriser ran the lanes' loops across pixels, with blends and broadcasts.
macro_rules! row_kernels {
    ($by_rows:ident, $rows:ident, $group:ident, $feature:literal, $cb:literal, $vec:ident, $load:ident, $store:ident, $fma:ident, $set1:ident, $min:ident, $max:ident) => {
        /// # Safety
        /// The CPU must have the features this is compiled for; the scratches as large as
        /// `assert_scratch` checks.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $by_rows(xs: &[f32], wk: &[f32], epi: &Epilogue, ys: &mut [f32], g: &Geom, cols: usize) -> bool {
            if !takes_rows(g) {
                return false;
            }
            // SAFETY (each arm): the features are enabled here.
            unsafe {
                match (g.kw, g.sw) {
                    (3, 1) => $rows::<3, 1>(xs, wk, epi, ys, g, cols),
                    (3, 2) => $rows::<3, 2>(xs, wk, epi, ys, g, cols),
                    (5, 1) => $rows::<5, 1>(xs, wk, epi, ys, g, cols),
                    (5, 2) => $rows::<5, 2>(xs, wk, epi, ys, g, cols),
                    (7, 1) => $rows::<7, 1>(xs, wk, epi, ys, g, cols),
                    (7, 2) => $rows::<7, 2>(xs, wk, epi, ys, g, cols),
                    _ => unreachable!("takes_rows admits these kernel widths and strides only"),
                }
            }
            true
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $rows<const K: usize, const S: usize>(xs: &[f32], wk: &[f32], epi: &Epilogue, ys: &mut [f32], g: &Geom, cols: usize) {
            use std::arch::x86_64::*;
            // The furthest read: the last kernel row of the last output row, from the last
            // group's last pixel, at most PIXELS - 1 past the row's end.
            let last_row = (g.oh - 1) * g.sh + (g.kh - 1) * g.dh;
            assert!(wk.len() >= (g.kh * K + 1) * $cb && (last_row * cols + (g.ow + PIXELS - 2) * S + K) * $cb <= xs.len() && ys.len() >= g.oh * g.ow * $cb, "depthwise row scratch too small");
            let clamp = ($set1(epi.lo), $set1(epi.hi));
            for oy in 0..g.oh {
                let mut ox = 0;
                while ox < g.ow {
                    // SAFETY: the bounds asserted above.
                    ox += unsafe { if g.ow - ox > TAIL_PIXELS { $group::<PIXELS, K, S>(xs, wk, clamp, ys, g, cols, oy, ox) } else { $group::<TAIL_PIXELS, K, S>(xs, wk, clamp, ys, g, cols, oy, ox) } };
                }
            }
        }

        /// Up to `P` output pixels of row `oy` from column `ox` on, into `ys`; returns how many
        /// it wrote.
        #[cfg(target_arch = "x86_64")]
        #[allow(clippy::too_many_arguments)]
        #[inline]
        #[target_feature(enable = $feature)]
        unsafe fn $group<const P: usize, const K: usize, const S: usize>(xs: &[f32], wk: &[f32], (lo, hi): (std::arch::x86_64::$vec, std::arch::x86_64::$vec), ys: &mut [f32], g: &Geom, cols: usize, oy: usize, ox: usize) -> usize {
            use std::arch::x86_64::*;
            let n = P.min(g.ow - ox);
            // SAFETY (every load and store below): inside the bounds the caller asserted.
            let mut acc = [unsafe { $load(wk.as_ptr().add(g.kh * K * $cb)) }; P];
            for ky in 0..g.kh {
                let w: [$vec; K] = std::array::from_fn(|kx| unsafe { $load(wk.as_ptr().add((ky * K + kx) * $cb)) });
                let row = unsafe { xs.as_ptr().add(((oy * g.sh + ky * g.dh) * cols + ox * S) * $cb) };
                for (j, a) in acc.iter_mut().enumerate() {
                    for (kx, &wv) in w.iter().enumerate() {
                        *a = $fma(wv, unsafe { $load(row.add((j * S + kx) * $cb)) }, *a);
                    }
                }
            }
            let out = unsafe { ys.as_mut_ptr().add((oy * g.ow + ox) * $cb) };
            for (j, &a) in acc.iter().enumerate().take(n) {
                // x second, so a NaN stays NaN (as `Epilogue::clamp`).
                unsafe { $store(out.add(j * $cb), $min(hi, $max(lo, a))) };
            }
            n
        }
    };
}

row_kernels!(by_rows_avx2, rows_avx2, row_group_avx2, "avx2,fma", 8, __m256, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fmadd_ps, _mm256_set1_ps, _mm256_min_ps, _mm256_max_ps);
row_kernels!(by_rows_avx512, rows_avx512, row_group_avx512, "avx512f", 16, __m512, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_fmadd_ps, _mm512_set1_ps, _mm512_min_ps, _mm512_max_ps);

/// Bounds every read and write of a block kernel: the furthest tap of the furthest pixel is
/// inside the padded scratch `xs`, `wk` holds every tap's weights and the bias, `ys` the plane.
fn assert_scratch(xs: &[f32], wk: &[f32], ys: &[f32], g: &Geom, cols: usize, lanes: usize) {
    let (rows, _) = g.padded_extents();
    assert!(xs.len() >= rows * cols * lanes && wk.len() >= (g.kh * g.kw + 1) * lanes && ys.len() >= g.oh * g.ow * lanes, "depthwise block scratch too small");
}

/// How many of the `P` output pixels from `p` on are in the plane, and each one's first tap in
/// the padded scratch; pixels past the plane's end recompute its last one rather than branch in
/// the tap loop.
#[inline(always)]
fn group_starts<const P: usize>(g: &Geom, cols: usize, p: usize) -> (usize, [usize; P]) {
    let n = P.min(g.oh * g.ow - p);
    (n, std::array::from_fn(|j| {
        let q = p + j.min(n - 1);
        (q / g.ow) * g.sh * cols + (q % g.ow) * g.sw
    }))
}
