//! Direct grouped convolution for narrow groups: depthwise (one input channel per group, any
//! channel multiplier) and groups of up to [`MAX_GROUP_WIDTH`] input channels (RegNet,
//! ResNeXt), NCHW f32, with the bias and fused activation applied in registers. A narrow
//! group's GEMM is too small to pay for packing; here each tap is one vector FMA.
//!
//! Each input plane is copied once into a zero-padded scratch, split by column phase
//! (`column % stride_w`), so that every tap of every output row reads a contiguous run and the
//! inner loop is plain vector FMAs: a strided read costs a gather, and accumulating each tap
//! into memory costs a store-to-load chain per element, which dominated the earlier kernel.

use super::conv::{min_tasks, strided_copy, Geom};
use super::epilogue::Epilogue;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Output columns per register block with AVX2 (AVX-512 blocks are twice as wide); scratch rows
/// are padded to a multiple of the block.
const LANES: usize = 8;
/// Output blocks computed together, each with its own accumulators.
const GROUP: usize = 4;

/// Scratch layout for one plane: `phases` planes of `rows x width`, where phase `p` holds padded
/// columns `p, p + sw, p + 2 sw, ...`.
#[derive(Clone, Copy)]
struct Scratch {
    /// Output columns per block.
    lanes: usize,
    rows: usize,
    width: usize,
    phases: usize,
}

impl Scratch {
    fn for_geom(g: &Geom, lanes: usize) -> Scratch {
        let rows = (g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1;
        let blocks = g.ow.div_ceil(lanes) * lanes;
        // The widest tap offset within a phase, plus a full block past the last output.
        let width = blocks + (g.kw - 1) * g.dw / g.sw + 1;
        Scratch { lanes, rows, width, phases: g.sw }
    }
    fn len(&self) -> usize {
        self.rows * self.width * self.phases
    }
}

/// The widest group (input channels per group) the direct kernel takes; wider groups have
/// enough depth for the GEMM path.
pub const MAX_GROUP_WIDTH: usize = 16;

/// One image: `xi` is [C, H, W], `yi` is [M, OH, OW]. Each task takes one group: its input
/// planes go into the scratch once, then every output channel of the group reads them.
pub fn grouped_image(xi: &[f32], wv: &[f32], epi: &Epilogue, yi: &mut [MaybeUninit<f32>], g: &Geom) {
    let plane = g.oh * g.ow;
    if plane == 0 {
        return;
    }
    let (cg, mg) = (g.c / g.group, g.m / g.group);
    let kplane = g.kh * g.kw;
    // Planes at least 14 wide fill most of a 16-lane block.
    let lanes = if avx512() && g.ow >= 14 { 2 * LANES } else { LANES };
    let sc = Scratch::for_geom(g, lanes);
    // Where each tap's run starts relative to an output block, in scratch coordinates: input
    // channel, then kernel row and column.
    let (phase_len, channel_len) = (sc.rows * sc.width, sc.len());
    let offsets: Vec<usize> = (0..cg * kplane)
        .map(|t| {
            let (ic, ky, kx) = (t / kplane, (t % kplane) / g.kw, t % g.kw);
            let off = kx * g.dw;
            ic * channel_len + (off % g.sw) * phase_len + ky * g.dh * sc.width + off / g.sw
        })
        .collect();
    yi.par_chunks_mut(mg * plane).enumerate().with_min_len(super::threads::min_len(min_tasks(mg * plane * cg * kplane))).for_each_init(
        || vec![0f32; cg * channel_len],
        |scratch, (grp, outs)| {
            for (ic, s) in scratch.chunks_mut(channel_len).enumerate() {
                let ch = grp * cg + ic;
                fill_scratch(&xi[ch * g.h * g.w..(ch + 1) * g.h * g.w], s, sc, g);
            }
            for (j, out) in outs.chunks_mut(plane).enumerate() {
                let oc = grp * mg + j;
                let wk = &wv[oc * cg * kplane..(oc + 1) * cg * kplane];
                plane_kernel(scratch, sc, &offsets, wk, epi.bias(oc), epi, out, g);
                // SAFETY: plane_kernel wrote every element of the plane.
                epi.finish(unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) });
            }
        },
    );
}

#[inline(always)]
/// Copies one input plane into the phase-split, zero-padded scratch, zeroing only the border.
fn fill_scratch(src: &[f32], scratch: &mut [f32], sc: Scratch, g: &Geom) {
    for (p, phase) in scratch.chunks_mut(sc.rows * sc.width).enumerate() {
        // Scratch columns of this phase whose padded column `col * sw + p` is inside the image.
        let lo = g.pl.saturating_sub(p).div_ceil(g.sw).min(sc.width);
        let hi = (g.pl + g.w).saturating_sub(p).div_ceil(g.sw).clamp(lo, sc.width);
        for (py, row) in phase.chunks_mut(sc.width).enumerate() {
            let y = py.wrapping_sub(g.pt);
            if py < g.pt || y >= g.h {
                row.fill(0.0);
                continue;
            }
            row[..lo].fill(0.0);
            row[hi..].fill(0.0);
            let srow = &src[y * g.w..(y + 1) * g.w];
            let first = lo * g.sw + p - g.pl;
            if g.sw == 1 {
                row[lo..hi].copy_from_slice(&srow[first..first + hi - lo]);
            } else {
                strided_copy(&mut row[lo..hi], &srow[first..], g.sw);
            }
        }
    }
}

fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[allow(clippy::too_many_arguments)]
fn plane_kernel(scratch: &[f32], sc: Scratch, offsets: &[usize], wk: &[f32], bias: f32, epi: &Epilogue, out: &mut [MaybeUninit<f32>], g: &Geom) {
    #[cfg(target_arch = "x86_64")]
    if sc.lanes == 2 * LANES {
        // SAFETY: 16-lane blocks are only chosen when the CPU has AVX-512F.
        return unsafe { plane_kernel_avx512(scratch, sc, offsets, wk, bias, epi, out, g) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { plane_kernel_avx2(scratch, sc, offsets, wk, bias, epi, out, g) };
    }
    plane_kernel_generic::<LANES>(scratch, sc, offsets, wk, bias, epi, out, g)
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn plane_kernel_avx2(scratch: &[f32], sc: Scratch, offsets: &[usize], wk: &[f32], bias: f32, epi: &Epilogue, out: &mut [MaybeUninit<f32>], g: &Geom) {
    plane_kernel_generic::<LANES>(scratch, sc, offsets, wk, bias, epi, out, g)
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn plane_kernel_avx512(scratch: &[f32], sc: Scratch, offsets: &[usize], wk: &[f32], bias: f32, epi: &Epilogue, out: &mut [MaybeUninit<f32>], g: &Geom) {
    plane_kernel_generic::<{ 2 * LANES }>(scratch, sc, offsets, wk, bias, epi, out, g)
}

/// One output plane in blocks of `L` columns (`L` = `sc.lanes`), from the filled scratch of its
/// group's input planes.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn plane_kernel_generic<const L: usize>(scratch: &[f32], sc: Scratch, offsets: &[usize], wk: &[f32], bias: f32, epi: &Epilogue, out: &mut [MaybeUninit<f32>], g: &Geom) {
    debug_assert_eq!(sc.lanes, L);
    let blocks_per_row = g.ow.div_ceil(L);
    let blocks = g.oh * blocks_per_row;
    let last_base = (g.oh - 1) * g.sh * sc.width + (blocks_per_row - 1) * L;
    let reach = offsets.iter().max().copied().unwrap_or(0) + L;
    // Bounds every read below: the furthest block plus the furthest tap stays in scratch.
    assert!(last_base + reach <= scratch.len() && offsets.len() == wk.len(), "depthwise scratch too small");
    // Output blocks in row-major order, GROUP at a time: independent accumulators hide the FMA
    // latency that a single chain of taps would wait on.
    let (mut oy, mut bx) = (0, 0);
    let mut b = 0;
    while b < blocks {
        let k = GROUP.min(blocks - b);
        let mut pos = [(0usize, 0usize); GROUP];
        for p in pos.iter_mut().take(k) {
            *p = (oy * g.sh * sc.width + bx * L, oy * g.ow + bx * L);
            bx += 1;
            if bx == blocks_per_row {
                (oy, bx) = (oy + 1, 0);
            }
        }
        // Past the end: recompute the first block rather than branch in the tap loop.
        for j in k..GROUP {
            pos[j] = pos[0];
        }
        let mut acc = [[bias; L]; GROUP];
        for (&off, &w) in offsets.iter().zip(wk) {
            for (a, &(base, _)) in acc.iter_mut().zip(&pos) {
                // SAFETY: base <= last_base and off + L <= reach, asserted in range above.
                let s = unsafe { &*scratch.as_ptr().add(base + off).cast::<[f32; L]>() };
                for i in 0..L {
                    a[i] = w.mul_add(s[i], a[i]);
                }
            }
        }
        for (a, &(_, at)) in acc.iter().zip(&pos).take(k) {
            let v: [f32; L] = std::array::from_fn(|i| epi.clamp(a[i]));
            let n = L.min(g.ow - at % g.ow);
            if n == L {
                // A fixed-size store: one vector move rather than a loop of scalar ones.
                let o: &mut [MaybeUninit<f32>; L] = (&mut out[at..at + L]).try_into().unwrap();
                *o = v.map(MaybeUninit::new);
            } else {
                for (o, &x) in out[at..at + n].iter_mut().zip(&v) {
                    o.write(x);
                }
            }
        }
        b += k;
    }
}
