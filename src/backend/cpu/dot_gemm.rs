//! The fused GEMM for products with few columns: a late convolution's small plane at batch 1
//! (a few pixels, up to 3x3 or 3x4) against hundreds of output channels and thousands of taps,
//! or a fully connected layer written as a 1x1 convolution. Tiled as
//! [`fused_gemm`](super::fused_gemm) tiles it, with the columns along the vector lanes, most
//! lanes of every tile would compute padding (9 columns of a 32-wide tile); as dot products
//! along the depth, every lane works. B goes in transposed (a column per row, small: columns x
//! depth), A is read in place, and each result is one horizontal sum.

use super::fused_gemm::{Job, Rhs};

/// The most columns for which this form beats the tiled one: with AVX-512 (32-column tiles)
/// 12 (16 measured slower), with AVX2 (16-column tiles) 4 (9 measured slower).
pub const MAX_COLS_AVX512: usize = 12;
pub const MAX_COLS_AVX2: usize = 4;
/// Depth per block, so that a tile's rows of A and columns of B stay in L1 across the columns.
const KD: usize = 512;

/// Packs B transposed, `bt[j * k + p] = B[p][j]`; `row` is scratch for made rows.
fn pack_transposed(job: &Job, bt: &mut Vec<f32>, row: &mut Vec<f32>) {
    let Job { n, k, b, .. } = *job;
    bt.resize(n * k, 0.0);
    match b {
        Rhs::Matrix(b) => {
            for p in 0..k {
                for j in 0..n {
                    bt[j * k + p] = b.data[p * b.rs + j * b.cs];
                }
            }
        }
        Rhs::Packed(b) => {
            for p in 0..k {
                for j in 0..n {
                    bt[j * k + p] = b.at(p, j);
                }
            }
        }
        Rhs::Rows(fill) => {
            row.resize(n, 0.0);
            for p in 0..k {
                fill(p, 0, n, row);
                for (j, &v) in row.iter().enumerate() {
                    bt[j * k + p] = v;
                }
            }
        }
    }
}

/// The product as dot products, `micro(depth, columns, a_rows, prefetch_rows, b_columns, sums)`
/// making one block of MR rows by up to NP columns, then the epilogue on each finished row of C.
///
/// # Safety
/// As [`gemm_epilogue`](super::fused_gemm::gemm_epilogue) for `job.c`.
#[inline(always)]
pub(super) unsafe fn blocked<const MR: usize, const NP: usize>(job: &Job, bt: &mut Vec<f32>, row: &mut Vec<f32>, micro: impl Fn(usize, usize, &[*const f32; MR], Option<&[*const f32; MR]>, &[*const f32; 4], &mut [[f32; 4]; MR])) {
    let Job { m, n, k, a, c, ldc, epi, channel0, .. } = *job;
    pack_transposed(job, bt, row);
    // Each panel's dot products, summed over the depth blocks.
    let mut sums = vec![0f32; MR * n];
    // Column tiles of at most NP, balanced (9 columns go as 3 + 3 + 3, not 4 + 4 + 1).
    let tiles = n.div_ceil(NP);
    let width = n.div_ceil(tiles);
    for panel in 0..m.div_ceil(MR) {
        let rows = MR.min(m - panel * MR);
        sums.fill(0.0);
        for p0 in (0..k).step_by(KD) {
            let kd = KD.min(k - p0);
            // Rows past `m` repeat the last row (computed, never stored).
            let arows: [*const f32; MR] = std::array::from_fn(|r| a.data[(panel * MR + r.min(rows - 1)) * a.rs + p0..].as_ptr());
            // The next panel's rows of A (the last panel's own), prefetched by the micro-kernel
            // while this one computes: each line of A feeds only a few FMAs, faster than the
            // hardware prefetchers ramp up on weights that come from memory.
            let next: [*const f32; MR] = std::array::from_fn(|r| a.data[((panel + 1) * MR + r).min(m - 1) * a.rs + p0..].as_ptr());
            for j0 in (0..n).step_by(width) {
                let cols = width.min(n - j0);
                let bcols: [*const f32; 4] = std::array::from_fn(|q| bt[(j0 + q.min(cols - 1)) * k + p0..].as_ptr());
                let mut part = [[0f32; 4]; MR];
                // The first column tile prefetches; later ones find A in cache.
                micro(kd, cols, &arows, if j0 == 0 { Some(&next) } else { None }, &bcols, &mut part);
                for (sum, part) in sums.chunks_mut(n).zip(&part) {
                    for q in 0..cols {
                        sum[j0 + q] += part[q];
                    }
                }
            }
        }
        for (r, sum) in sums.chunks(n).enumerate().take(rows) {
            let ch = panel * MR + r;
            // SAFETY: row `ch` < m of the caller's block, columns [0, n).
            let out = unsafe { std::slice::from_raw_parts_mut(c.add(ch * ldc), n) };
            let bias = epi.bias(channel0 + ch);
            for (o, &s) in out.iter_mut().zip(sum) {
                *o = epi.clamp(s + bias);
            }
            epi.finish(out);
        }
    }
}

/// Dispatches a block of `cols` columns to the micro-kernel compiled for that width.
macro_rules! by_width {
    ($kernel:ident, $cols:expr, $($arg:expr),*) => {
        match $cols {
            1 => $kernel::<MR, 1>($($arg),*),
            2 => $kernel::<MR, 2>($($arg),*),
            3 => $kernel::<MR, 3>($($arg),*),
            _ => $kernel::<MR, NP>($($arg),*),
        }
    };
}

/// AVX-512: 4 rows x up to 4 columns, 16 accumulators of 16 lanes (6 rows spilled registers and ran no faster).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn blocked_avx512(job: &Job, bt: &mut Vec<f32>, row: &mut Vec<f32>) {
    const MR: usize = 4;
    const NP: usize = 4;
    // SAFETY: the micro-kernels need AVX-512F, which this function is compiled for; the caller
    // vouches for the job.
    unsafe { blocked::<MR, NP>(job, bt, row, |kd, cols, a, next, b, out| by_width!(dot_avx512, cols, kd, a, next, b, out)) }
}

/// AVX2 + FMA: 4 rows x up to 3 columns, 12 accumulators of 8 lanes (of 16 registers).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn blocked_avx2(job: &Job, bt: &mut Vec<f32>, row: &mut Vec<f32>) {
    const MR: usize = 4;
    const NP: usize = 3;
    // SAFETY: as for the AVX-512 form, with AVX2 and FMA.
    unsafe { blocked::<MR, NP>(job, bt, row, |kd, cols, a, next, b, out| by_width!(dot_avx2, cols, kd, a, next, b, out)) }
}

/// `out[r][q] = sum_p a[r][p] * b[q][p]` over `kd`, for `NP` columns.
///
/// # Safety
/// Each pointer must be valid for reads of `kd` elements.
#[cfg(target_arch = "x86_64")]
// Out of line, so the caller's running sums do not take the accumulators' registers.
#[inline(never)]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512<const MR: usize, const NP: usize>(kd: usize, a: &[*const f32; MR], next: Option<&[*const f32; MR]>, b: &[*const f32; 4], out: &mut [[f32; 4]; MR]) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); NP]; MR];
    let mut p = 0;
    while p < kd {
        // All lanes but on the last partial step (masked lanes read nothing): a masked load
        // costs what a plain one does.
        let mask = if kd - p >= 16 { !0 } else { ((1u32 << (kd - p)) - 1) as __mmask16 };
        // SAFETY: lanes [p, min(p + 16, kd)) of each row, inside the depth the caller vouches for.
        let bv: [__m512; NP] = std::array::from_fn(|q| unsafe { _mm512_maskz_loadu_ps(mask, b[q].add(p)) });
        if let Some(next) = next {
            prefetch_rows(next, p);
        }
        for r in 0..MR {
            // SAFETY: as above.
            let av = unsafe { _mm512_maskz_loadu_ps(mask, a[r].add(p)) };
            for q in 0..NP {
                acc[r][q] = _mm512_fmadd_ps(av, bv[q], acc[r][q]);
            }
        }
        p += 16;
    }
    for (o, acc_r) in out.iter_mut().zip(&acc) {
        for (oq, &x) in o.iter_mut().zip(acc_r) {
            *oq = _mm512_reduce_add_ps(x);
        }
    }
}

/// The AVX2 form of [`dot_avx512`], over 8 lanes.
///
/// # Safety
/// As for [`dot_avx512`].
#[cfg(target_arch = "x86_64")]
#[inline(never)]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2<const MR: usize, const NP: usize>(kd: usize, a: &[*const f32; MR], next: Option<&[*const f32; MR]>, b: &[*const f32; 4], out: &mut [[f32; 4]; MR]) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); NP]; MR];
    // The lanes of the last step when the depth is not a whole number of vectors.
    let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((kd % 8) as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    let mut p = 0;
    while p < kd {
        let whole = kd - p >= 8;
        // SAFETY: lanes [p, min(p + 8, kd)) of each row, inside the depth the caller vouches
        // for; masked lanes read nothing.
        let load = |ptr: *const f32| unsafe { if whole { _mm256_loadu_ps(ptr.add(p)) } else { _mm256_maskload_ps(ptr.add(p), mask) } };
        let bv: [__m256; NP] = std::array::from_fn(|q| load(b[q]));
        if let (Some(next), 0) = (next, p % 16) {
            prefetch_rows(next, p);
        }
        for r in 0..MR {
            let av = load(a[r]);
            for q in 0..NP {
                acc[r][q] = _mm256_fmadd_ps(av, bv[q], acc[r][q]);
            }
        }
        p += 8;
    }
    for (o, acc_r) in out.iter_mut().zip(&acc) {
        for (oq, &x) in o.iter_mut().zip(acc_r) {
            let half = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps::<1>(x));
            let half = _mm_add_ps(half, _mm_movehl_ps(half, half));
            *oq = _mm_cvtss_f32(_mm_add_ss(half, _mm_movehdup_ps(half)));
        }
    }
}

/// Prefetches the cache line at element `p` of each row (a hint: it never faults).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_rows<const MR: usize>(rows: &[*const f32; MR], p: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    for row in rows {
        // SAFETY: a prefetch is only a hint, and `wrapping_add` computes without dereferencing.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(p).cast()) };
    }
}
