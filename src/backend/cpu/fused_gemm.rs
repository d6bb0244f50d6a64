//! GEMM with the convolution epilogue fused: `C = clamp(A * B + bias[row], lo, hi)`, for the
//! shapes convolutions produce (A = weights, B = the input or its im2col unfolding, both
//! row-major; A is read in place, B packed). An AVX-512 micro-kernel keeps an 8 x 32 tile of C in registers through the whole
//! depth and applies bias and activation before its one store, so the output is written once
//! instead of written by the GEMM and then read and rewritten by a separate epilogue pass.
//! CPUs without AVX-512 use the general GEMM plus that pass.

use super::conv::Epilogue;
use super::gemm::{sgemm_into, Mat};
use std::cell::RefCell;

/// Rows of C per micro-tile (one broadcast of A each per depth step).
const MR: usize = 8;
/// Columns of C per micro-tile: two 16-lane vectors.
const NR: usize = 32;
/// Depth per packed block: a B micro-panel (KC x NR) then stays in L1 across the rows of A.
const KC: usize = 256;
/// Columns per packed block of B.
const NC: usize = 1024;

thread_local! {
    /// Per-thread packing buffers for B (and one row of it), kept between calls.
    static PACK: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// The right-hand operand: a matrix in memory, or rows made on demand. A convolution's
/// unfolding (im2col) is the second kind: packing B straight from the input image saves
/// writing the whole unfolded matrix out and reading it back.
#[derive(Clone, Copy)]
pub enum Rhs<'a> {
    Matrix(Mat<'a>),
    Rows(RowFill<'a>),
}

/// `fill(p, j0, j1, dst)` writes B[p][j0..j1] into `dst[..j1 - j0]`.
pub type RowFill<'a> = &'a (dyn Fn(usize, usize, usize, &mut [f32]) + Sync);

/// Whether the fused kernel runs on this CPU.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `c[i * ldc + j] = epilogue(channel0 + i)(sum_p a[i, p] * b[p, j])` for an `m x n` block.
///
/// # Safety
/// `c` must be valid for writes of `(m - 1) * ldc + n` elements (it may be uninitialised), and
/// no other thread may access the block it describes during the call.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_epilogue(m: usize, n: usize, k: usize, a: Mat, b: Rhs, c: *mut f32, ldc: usize, epi: &Epilogue, channel0: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { gemm_epilogue_on(available(), m, n, k, a, b, c, ldc, epi, channel0) }
}

/// [`gemm_epilogue`] with the choice of kernel explicit (`fused` needs AVX-512F), so tests can
/// check both against each other.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_epilogue_on(fused: bool, m: usize, n: usize, k: usize, a: Mat, b: Rhs, c: *mut f32, ldc: usize, epi: &Epilogue, channel0: usize) {
    if m == 0 || n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if fused && k > 0 && a.cs == 1 {
        assert!((m - 1) * a.rs + (k - 1) * a.cs < a.data.len(), "gemm lhs out of range");
        if let Rhs::Matrix(b) = b {
            assert!((k - 1) * b.rs + (n - 1) * b.cs < b.data.len(), "gemm rhs out of range");
        }
        let bias: Vec<f32> = (0..m.div_ceil(MR) * MR).map(|i| if i < m { epi.bias(channel0 + i) } else { 0.0 }).collect();
        // Packing happens on this thread and calls no rayon code, so the borrow cannot be
        // re-entered.
        return PACK.with_borrow_mut(|(bpack, row)| {
            // SAFETY: the CPU has AVX-512F (checked above); the caller vouches for `c`.
            unsafe { blocked(m, n, k, a, b, c, ldc, &bias, epi.lo, epi.hi, bpack, row) };
            for i in 0..m {
                // SAFETY: row i of the block, just written by `blocked`.
                epi.finish(unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), n) });
            }
        });
    }
    let made;
    let b = match b {
        Rhs::Matrix(b) => b,
        Rhs::Rows(fill) => {
            made = {
                let mut v = vec![0f32; k * n];
                for (p, row) in v.chunks_mut(n.max(1)).enumerate() {
                    fill(p, 0, n, row);
                }
                v
            };
            Mat::row_major(&made, n)
        }
    };
    // SAFETY: forwarded from the caller.
    unsafe { sgemm_into(m, n, k, a, b, c, ldc, false, 1.0, false) };
    for i in 0..m {
        // SAFETY: row i of the block, just written by the GEMM.
        let row = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), n) };
        epi.apply(row, channel0 + i);
    }
}

/// Packs rows `[p0, p0 + kc)` and columns `[j0, j0 + nc)` of `b` into micro-panels of NR
/// columns: `[nc / NR][kc][NR]`, columns past the end zero. `row` is scratch for made rows.
fn pack_b(b: Rhs, p0: usize, kc: usize, j0: usize, nc: usize, out: &mut Vec<f32>, row: &mut Vec<f32>) {
    let panels = nc.div_ceil(NR);
    if out.len() < panels * kc * NR {
        out.resize(panels * kc * NR, 0.0);
    }
    let b = match b {
        Rhs::Matrix(b) => b,
        Rhs::Rows(fill) => {
            row.resize(panels * NR, 0.0);
            for p in 0..kc {
                fill(p0 + p, j0, j0 + nc, &mut row[..nc]);
                row[nc..].fill(0.0);
                for (panel, src) in row.chunks_exact(NR).enumerate() {
                    let d: &mut [f32; NR] = (&mut out[(panel * kc + p) * NR..(panel * kc + p + 1) * NR]).try_into().unwrap();
                    d.copy_from_slice(src);
                }
            }
            return;
        }
    };
    for panel in 0..panels {
        let cols = NR.min(nc - panel * NR);
        let dst = &mut out[panel * kc * NR..(panel + 1) * kc * NR];
        for p in 0..kc {
            let d = &mut dst[p * NR..(p + 1) * NR];
            let start = (p0 + p) * b.rs + (j0 + panel * NR) * b.cs;
            if b.cs == 1 && cols == NR {
                // A fixed-size copy inlines to two vector moves instead of a memcpy call.
                let d: &mut [f32; NR] = d.try_into().unwrap();
                d.copy_from_slice(&b.data[start..start + NR]);
                continue;
            }
            if b.cs == 1 {
                d[..cols].copy_from_slice(&b.data[start..start + cols]);
            } else {
                for (j, v) in d[..cols].iter_mut().enumerate() {
                    *v = b.data[start + j * b.cs];
                }
            }
            d[cols..].fill(0.0);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn blocked(m: usize, n: usize, k: usize, a: Mat, b: Rhs, c: *mut f32, ldc: usize, bias: &[f32], lo: f32, hi: f32, bpack: &mut Vec<f32>, row: &mut Vec<f32>) {
    for j0 in (0..n).step_by(NC) {
        let nc = NC.min(n - j0);
        for p0 in (0..k).step_by(KC) {
            let kc = KC.min(k - p0);
            pack_b(b, p0, kc, j0, nc, bpack, row);
            let (first, last) = (p0 == 0, p0 + kc == k);
            for panel in 0..m.div_ceil(MR) {
                let rows = MR.min(m - panel * MR);
                // A is read in place, one row stream per tile row; rows past `m` repeat the
                // last row (computed, never stored).
                let arows: [*const f32; MR] = std::array::from_fn(|r| a.data[(panel * MR + r.min(rows - 1)) * a.rs + p0..].as_ptr());
                for jp in 0..nc.div_ceil(NR) {
                    let cols = NR.min(nc - jp * NR);
                    let bp = bpack[jp * kc * NR..].as_ptr();
                    // SAFETY: the tile (rows x cols at this offset) is inside the caller's block;
                    // the A rows hold k - p0 >= kc elements and the packed panel kc * NR.
                    unsafe {
                        let ct = c.add(panel * MR * ldc + j0 + jp * NR);
                        let tile = Tile { rows, cols, ldc, accumulate: !first, epilogue: last.then_some((&bias[panel * MR..panel * MR + MR], lo, hi)) };
                        micro_kernel(kc, &arows, bp, ct, &tile);
                    }
                }
            }
        }
    }
}

/// Where and how one micro-kernel stores its MR x NR tile.
struct Tile<'a> {
    rows: usize,
    cols: usize,
    ldc: usize,
    /// Add to what is in C (a later depth block) rather than overwrite it.
    accumulate: bool,
    /// Bias for the tile's rows and the clamp, on the last depth block.
    epilogue: Option<(&'a [f32], f32, f32)>,
}

#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn micro_kernel(kc: usize, a: &[*const f32; MR], b: *const f32, c: *mut f32, t: &Tile) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for p in 0..kc {
        // SAFETY: each A row has kc elements from its pointer; packed B holds kc rows of NR.
        let (b0, b1) = unsafe { (_mm512_loadu_ps(b.add(p * NR)), _mm512_loadu_ps(b.add(p * NR + 16))) };
        for (r, acc_r) in acc.iter_mut().enumerate() {
            // SAFETY: as above.
            let av = _mm512_set1_ps(unsafe { *a[r].add(p) });
            acc_r[0] = _mm512_fmadd_ps(av, b0, acc_r[0]);
            acc_r[1] = _mm512_fmadd_ps(av, b1, acc_r[1]);
        }
    }
    let mask = |v: usize| -> __mmask16 {
        let valid = t.cols.saturating_sub(16 * v).min(16);
        ((1u32 << valid) - 1) as __mmask16
    };
    for (r, acc_r) in acc.iter().enumerate().take(t.rows) {
        for (v, &x) in acc_r.iter().enumerate() {
            let mk = mask(v);
            if mk == 0 {
                continue;
            }
            // SAFETY: row r < rows and the masked lanes are columns < cols of the tile.
            unsafe {
                let cp = c.add(r * t.ldc + 16 * v);
                let mut x = x;
                if t.accumulate {
                    x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mk, cp));
                }
                if let Some((bias, lo, hi)) = t.epilogue {
                    x = _mm512_add_ps(x, _mm512_set1_ps(bias[r]));
                    // MAXPS/MINPS return their second operand when either is NaN: x goes
                    // second, so a NaN stays NaN (as in ONNX Runtime).
                    x = _mm512_min_ps(_mm512_set1_ps(hi), _mm512_max_ps(_mm512_set1_ps(lo), x));
                }
                _mm512_mask_storeu_ps(cp, mk, x);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Activation;

    /// Both kernels against a plain triple loop, on shapes that leave partial tiles in every
    /// dimension and cross the depth and column block sizes.
    #[test]
    fn fused_and_fallback_match_reference() {
        let shapes = [(1, 1, 1), (8, 32, 16), (13, 49, 7), (24, 1100, 300), (70, 33, 520), (5, 17, 3)];
        let mut seed = 1u32;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        for &(m, n, k) in &shapes {
            let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
            let bias: Vec<f32> = (0..m + 3).map(|_| rnd()).collect();
            let epi = Epilogue::new(Some(&bias), Some(Activation::Clip { min: -0.5, max: 0.75 }));
            let ldc = n + 5;
            let mut want = vec![0f32; m * ldc];
            for i in 0..m {
                for j in 0..n {
                    let dot: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                    want[i * ldc + j] = (dot + bias[i + 3]).clamp(-0.5, 0.75);
                }
            }
            let rows = |p: usize, j0: usize, j1: usize, dst: &mut [f32]| dst[..j1 - j0].copy_from_slice(&b[p * n + j0..p * n + j1]);
            for (fused, made) in [(false, false), (false, true), (available(), false), (available(), true)] {
                let rhs = if made { Rhs::Rows(&rows) } else { Rhs::Matrix(Mat::row_major(&b, n)) };
                let mut got = vec![f32::NAN; m * ldc];
                // SAFETY: `got` holds m rows of ldc >= n elements.
                unsafe { gemm_epilogue_on(fused, m, n, k, Mat::row_major(&a, k), rhs, got.as_mut_ptr(), ldc, &epi, 3) };
                for i in 0..m {
                    for j in 0..ldc {
                        let (g, w) = (got[i * ldc + j], want[i * ldc + j]);
                        if j < n {
                            assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "fused={fused} {m}x{n}x{k} at ({i},{j}): {g} vs {w}");
                        } else {
                            assert!(g.is_nan(), "fused={fused} {m}x{n}x{k} wrote past its block at ({i},{j})");
                        }
                    }
                }
            }
        }
    }
}
