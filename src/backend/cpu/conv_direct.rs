//! 2-D convolution (one group) with the output channels along the vector lanes and the taps read
//! straight from the input image, NCHW f32: no unfolding.
//!
//! The GEMM path (`conv.rs`) unfolds the input into im2col rows and packs them, nine copies of
//! the input for a 3x3 convolution (a quarter of its time on resnet18's layers), and its tiles
//! run along the pixels, so a late layer's plane of 9 or 36 pixels leaves lanes idle. Here a
//! tile is up to `MR` output pixels (any of them, across rows and images) by `NR` output
//! channels (two vectors); each tap is one load of the channels' packed weights and one
//! broadcast per pixel from the zero-padded input, as ONNX Runtime's NCHWc kernels compute,
//! without converting the network's layout. The tile's results go to the NCHW output through a
//! small transpose in scratch.

use super::conv::Geom;
use super::epilogue::Epilogue;
use super::fused_gemm::PackedRhs;
use super::gemm::{Mat, SharedOut};
use super::prepared::Prepared;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU8, Ordering};

/// Output pixels per job: a job's input rows stay in cache across the weight panels it runs.
const CHUNK: usize = 96;
/// The fewest taps per output for which this path beats the GEMM one. Its overhead is a
/// transpose per output element, the GEMM path's an unfolded copy per tap and pixel: over few
/// taps the transpose weighs more. squeezenet1_1 at batch 8, one thread: its 3-channel stem (27
/// taps) took 5.9 ms here and 2.7 ms on the GEMM path, its 16-channel 3x3 expansions (144)
/// 2.9 and 2.6 ms, the 32-channel ones (288) the same on both, the 64-channel ones (576) 1.7
/// here and 2.0 there.
const MIN_DEPTH: usize = 256;
/// Taps per depth block: 256 rows of 32 weights are 32 KiB, inside L1.
const DEPTH_BLOCK: usize = 256;

/// One depth block of one tile, as the register kernels take it.
struct Step<'a> {
    /// Offsets of the block's taps from a pixel's first.
    taps: &'a [u32],
    /// The block's rows of packed weights.
    weights: &'a [f32],
    /// Add to the sums of earlier blocks.
    accumulate: bool,
    /// Bias for the tile's channels and the clamp, on the last block.
    epilogue: Option<(&'a [f32], f32, f32)>,
    /// At most half the panel's channels are real: the second vector is not computed.
    half: bool,
}

/// Which path a one-group 2-D convolution takes: by shape, or the GEMM one forced.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ConvPath {
    ByShape = 0,
    Gemm = 1,
}

static FORCED: AtomicU8 = AtomicU8::new(ConvPath::ByShape as u8);

/// Forces the path process-wide (tests and benches; the default is by shape).
#[doc(hidden)]
pub fn force_conv_path(path: ConvPath) {
    FORCED.store(path as u8, Ordering::Relaxed);
}

static FORCED_AVX2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Runs the AVX2 kernel even where AVX-512 is there (tests, so that both run on one CPU).
#[cfg(test)]
pub(super) fn force_avx2(on: bool) {
    FORCED_AVX2.store(on, Ordering::Relaxed);
}

/// The register kernel this CPU runs, as (pixels per tile at most, channels per tile).
fn kernel() -> Option<(usize, usize)> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") && !FORCED_AVX2.load(Ordering::Relaxed) {
            return Some((8, 32));
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Some((6, 16));
        }
    }
    None
}

/// Whether this path takes the convolution: 2-D, one group, not a pointwise one (those read
/// their input in place as a matrix already), at least `MIN_DEPTH` taps deep, on a CPU with a
/// register kernel.
pub fn applies(g: &Geom) -> bool {
    let shape = g.group == 1 && g.d == 1 && g.kd == 1 && !g.pointwise && g.c * g.kh * g.kw >= MIN_DEPTH && kernel().is_some();
    match FORCED.load(Ordering::Relaxed) {
        1 => false,
        _ => shape,
    }
}

/// A convolution's weights as [`conv`] reads them, kept as a node's prepared state.
struct PackedWeights(PackedRhs);

/// The input as the taps read it: zero-padded so that every tap of every output pixel lands
/// inside, or the input itself when it needs no padding.
struct Padded<'a> {
    data: &'a [f32],
    row: usize,
    channel: usize,
    image: usize,
}

thread_local! {
    /// The padded input's buffer, kept between calls: a fresh one faults its pages in every
    /// call. Taken, not borrowed, for the call (a nested call on this thread makes its own).
    static PADDED: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

fn padded<'a>(x: &'a [f32], images: usize, g: &Geom, buf: &'a mut Vec<f32>) -> Padded<'a> {
    let (rows, cols) = g.padded_extents();
    if g.pt == 0 && g.pl == 0 && rows <= g.h && cols <= g.w {
        return Padded { data: x, row: g.w, channel: g.h * g.w, image: g.c * g.h * g.w };
    }
    let (channel, image) = (rows * cols, g.c * rows * cols);
    buf.clear();
    buf.resize(images * image, 0.0);
    let copy = g.w.min(cols.saturating_sub(g.pl));
    buf.par_chunks_mut(channel).zip(x.par_chunks(g.h * g.w)).with_min_len(super::threads::min_len(16)).for_each(|(dst, src)| {
        for (r, drow) in dst.chunks_exact_mut(cols).enumerate().skip(g.pt) {
            let Some(srow) = src.chunks_exact(g.w).nth(r - g.pt) else { break };
            drow[g.pl..g.pl + copy].copy_from_slice(&srow[..copy]);
        }
    });
    Padded { data: buf, row: cols, channel, image }
}

/// Stores pixels `[j0, j1)` of a job's `sums` (a row of `nr` channels per pixel, the first
/// `channels` real) as channels `ch0..` of the NCHW output `y` of `m` channels, image by image.
///
/// # Safety
/// The pixels' and channels' places in `y` must be valid for writes and the caller's alone.
#[allow(clippy::too_many_arguments)]
unsafe fn store(sums: &[f32], nr: usize, channels: usize, (j0, j1): (usize, usize), plane: usize, m: usize, ch0: usize, y: *mut f32) {
    let mut j = j0;
    while j < j1 {
        let (img, pix) = (j / plane, j % plane);
        let len = (plane - pix).min(j1 - j);
        // SAFETY: the caller vouches for this image's channels from ch0 over these pixels.
        unsafe { super::simd::transpose_into(&sums[(j - j0) * nr..], nr, len, channels, y.add((img * m + ch0) * plane + pix), plane) };
        j += len;
    }
}

/// `y` (all images, NCHW) of the convolution of `x` (all `images`) with `wv` [M, C, KH, KW].
/// `prepared`, when given, keeps the packed weights for later calls (the executable's, for
/// constant weights).
pub fn conv(x: &[f32], images: usize, wv: &[f32], epi: &Epilogue, y: &mut [MaybeUninit<f32>], g: &Geom, prepared: Option<&Prepared>) {
    let Some((mr, nr)) = kernel() else { unreachable!("conv_direct::applies checks for a kernel") };
    let plane = g.oh * g.ow;
    let pixels = images * plane;
    let k = g.c * g.kh * g.kw;
    if pixels == 0 || g.m == 0 {
        return;
    }
    let mut buf = PADDED.take();
    let input = padded(x, images, g, &mut buf);
    assert!(input.image <= u32::MAX as usize, "convolution input image of {} floats", input.image);
    // Tap p = (c, ky, kx) of every pixel is this far from the pixel's first tap.
    let taps: Vec<u32> = (0..k).map(|p| (p / (g.kh * g.kw) * input.channel + (p / g.kw % g.kh) * g.dh * input.row + p % g.kw * g.dw) as u32).collect();
    // The last pixel's last tap, the farthest any tile reads (the kernels read unchecked).
    let reach = (images - 1) * input.image + (g.oh - 1) * g.sh * input.row + (g.ow - 1) * g.sw + taps[k - 1] as usize;
    assert!(reach < input.data.len(), "direct convolution reads {reach} of {} input floats", input.data.len());
    // W^T (k x M) in the kernel's panels of NR channels.
    let pack = || PackedWeights(PackedRhs::with_width(Mat { data: wv, rs: 1, cs: k }, k, g.m, nr).expect("a convolution with output has weights"));
    let made;
    let weights = match prepared {
        Some(p) => &p.get_or_init(|| (pack(), PackedRhs::len(g.m, k, nr) * 4)).0,
        None => {
            made = pack().0;
            &made
        }
    };
    // Weights prepared for another kernel (a test forcing one) are packed again.
    let made_again;
    let weights = if weights.panel_width() == nr {
        weights
    } else {
        made_again = pack().0;
        &made_again
    };
    let panels = g.m.div_ceil(nr);
    let bias: Vec<f32> = (0..panels * nr).map(|i| if i < g.m { epi.bias(i) } else { 0.0 }).collect();
    let chunks = pixels.div_ceil(CHUNK);
    let jobs = chunks * panels;
    let tasks = if g.m * k * pixels >= 1 << 20 { super::threads::width().min(jobs) } else { 1 };
    let out = SharedOut(y.as_mut_ptr().cast::<f32>());
    let data = input.data;
    let task = |t: usize| {
        // Each tile's sums, rows of NR channels, kept between depth blocks.
        let mut sums = vec![0f32; CHUNK * nr];
        let (mut firsts, mut firsts_of) = (Vec::with_capacity(CHUNK), None);
        // Jobs chunk by chunk, each chunk's panels in turn: a task's input rows stay in cache.
        for job in jobs * t / tasks..jobs * (t + 1) / tasks {
            let (chunk, panel) = (job / panels, job % panels);
            let (j0, j1) = (chunk * CHUNK, ((chunk + 1) * CHUNK).min(pixels));
            if firsts_of != Some(chunk) {
                // Where each pixel's first tap is, by increments: a division per pixel costs
                // more than a shallow tile's taps.
                firsts.clear();
                let (mut img, pix) = (j0 / plane, j0 % plane);
                let (mut oy, mut ox) = (pix / g.ow, pix % g.ow);
                for _ in j0..j1 {
                    firsts.push(img * input.image + oy * g.sh * input.row + ox * g.sw);
                    ox += 1;
                    if ox == g.ow {
                        (ox, oy) = (0, oy + 1);
                        if oy == g.oh {
                            (oy, img) = (0, img + 1);
                        }
                    }
                }
                firsts_of = Some(chunk);
            }
            let channels = nr.min(g.m - panel * nr);
            let w = weights.panel(panel);
            let b = &bias[panel * nr..][..nr];
            // Tiles of balanced heights: 9 pixels go as 5 + 4, not 8 + 1.
            let count = (j1 - j0).div_ceil(mr);
            let bounds = |i: usize| (j0 + (j1 - j0) * i / count, j0 + (j1 - j0) * (i + 1) / count);
            // Depth blocks whose weights stay in L1 while every tile of the chunk passes over
            // them: a late layer's 9 pixels are two tiles, and 4608 taps of 32 weights more
            // than L2 holds at once.
            for d0 in (0..k).step_by(DEPTH_BLOCK) {
                let d1 = (d0 + DEPTH_BLOCK).min(k);
                let last = d1 == k;
                for i in 0..count {
                    let (p0, p1) = bounds(i);
                    let step = Step { taps: &taps[d0..d1], weights: &w[d0 * nr..d1 * nr], accumulate: d0 > 0, epilogue: last.then_some((b, epi.lo, epi.hi)), half: channels <= nr / 2 };
                    // SAFETY: every pixel's taps lie inside its padded image (its extents are the
                    // taps' reach); the weights hold the block's rows of nr; `sums` holds CHUNK
                    // rows of nr.
                    unsafe { run_tile(&firsts[p0 - j0..p1 - j0], data, &step, sums[(p0 - j0) * nr..].as_mut_ptr()) };
                }
            }
            // Padding channels hold zeros, which the activation keeps finite.
            epi.finish(&mut sums[..(j1 - j0) * nr]);
            // SAFETY: these pixels x channels of `y` are this job's alone.
            unsafe { store(&sums, nr, channels, (j0, j1), plane, g.m, panel * nr, out.ptr()) };
        }
    };
    if tasks == 1 {
        task(0);
    } else {
        (0..tasks).into_par_iter().for_each(task);
    }
    PADDED.set(buf);
}

/// One depth block of one tile of pixels whose first taps are at `firsts` in `data`, into
/// `sums` as rows of NR channels.
///
/// # Safety
/// Every tap of the pixels must lie inside `data`, the step's weights must hold its taps' rows
/// of NR, and `sums` at least `rows` rows of NR.
unsafe fn run_tile(firsts: &[usize], data: &[f32], step: &Step, sums: *mut f32) {
    macro_rules! dispatch {
        ($kernel:ident, $($mr:literal)*) => {
            match firsts.len() {
                $($mr => {
                    let px: [*const f32; $mr] = std::array::from_fn(|r| data[firsts[r]..].as_ptr());
                    // SAFETY: forwarded from the caller; the kernel's instruction set is this CPU's
                    // (`kernel()` chose the panel width the step's weights have).
                    unsafe { $kernel::<$mr>(&px, step, sums) }
                })*
                _ => unreachable!("tiles are 1 to 8 pixels"),
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    if step.weights.len() == step.taps.len() * 32 {
        dispatch!(tile_avx512, 1 2 3 4 5 6 7 8)
    } else {
        dispatch!(tile_avx2, 1 2 3 4 5 6)
    }
}

macro_rules! tile_kernel {
    ($(#[$attr:meta])* $name:ident, $feature:literal, $lanes:literal, $zero:ident, $load:ident, $set1:ident, $fmadd:ident, $add:ident, $max:ident, $min:ident, $store:ident) => {
        $(#[$attr])*
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $name<const MR: usize>(px: &[*const f32; MR], step: &Step, sums: *mut f32) {
            use std::arch::x86_64::*;
            const NR: usize = 2 * $lanes;
            let w = step.weights.as_ptr();
            let mut acc = [[$zero(); 2]; MR];
            // SAFETY (all loads and stores): the caller vouches for every tap of every pixel,
            // for the step's rows of NR weights and for MR rows of NR sums.
            if step.accumulate {
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    for (v, a) in acc_r.iter_mut().enumerate() {
                        *a = unsafe { $load(sums.add(r * NR + $lanes * v)) };
                    }
                }
            }
            if step.half {
                for (p, &t) in step.taps.iter().enumerate() {
                    let w0 = unsafe { $load(w.add(p * NR)) };
                    for r in 0..MR {
                        acc[r][0] = $fmadd($set1(unsafe { *px[r].add(t as usize) }), w0, acc[r][0]);
                    }
                }
            } else {
                for (p, &t) in step.taps.iter().enumerate() {
                    let (w0, w1) = unsafe { ($load(w.add(p * NR)), $load(w.add(p * NR + $lanes))) };
                    for r in 0..MR {
                        let a = $set1(unsafe { *px[r].add(t as usize) });
                        acc[r][0] = $fmadd(a, w0, acc[r][0]);
                        acc[r][1] = $fmadd(a, w1, acc[r][1]);
                    }
                }
            }
            for (r, acc_r) in acc.iter().enumerate() {
                for (v, &x) in acc_r.iter().enumerate() {
                    let mut x = x;
                    if let Some((bias, lo, hi)) = step.epilogue {
                        x = $add(x, unsafe { $load(bias.as_ptr().add($lanes * v)) });
                        // MAXPS/MINPS return their second operand when either is NaN: x goes
                        // second, so a NaN stays NaN.
                        x = $min($set1(hi), $max($set1(lo), x));
                    }
                    unsafe { $store(sums.add(r * NR + $lanes * v), x) };
                }
            }
        }
    };
}

tile_kernel!(
    /// AVX-512: MR pixels by 32 channels in 2 MR registers.
    tile_avx512, "avx512f", 16, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_max_ps, _mm512_min_ps, _mm512_storeu_ps
);
tile_kernel!(
    /// AVX2 + FMA: MR pixels by 16 channels in 2 MR registers (MR <= 6 of the 16).
    tile_avx2, "avx2,fma", 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_max_ps, _mm256_min_ps, _mm256_storeu_ps
);
