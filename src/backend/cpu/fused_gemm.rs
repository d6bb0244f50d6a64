//! GEMM with the convolution epilogue fused: `C = clamp(A * B + bias[row], lo, hi)`, for the
//! shapes convolutions produce (A = weights, B = the input or its im2col unfolding, both
//! row-major; A is read in place, B packed). A micro-kernel keeps a tile of C in registers
//! through the whole depth (8 x 32 with AVX-512, 6 x 16 with AVX2 + FMA) and applies bias and
//! clamp before its one store; a Swish or HardSwish then runs over each finished panel of rows
//! while it is in cache.
//! So the output is written once, and the unfolding is packed straight from the image, instead
//! of the general GEMM writing C and two more passes reading and rewriting it. CPUs with neither
//! extension use the general GEMM plus those passes.

use super::dot_gemm;
use super::epilogue::Epilogue;
use super::gemm::{sgemm_into, Mat};
use std::cell::RefCell;

/// Depth per packed block: a B micro-panel (KC x NR) then stays in L1 across the rows of A.
const KC: usize = 256;

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
    /// Already in the register kernel's micro-panels ([`PackedRhs`]), from its first column.
    Packed(Panels<'a>),
}

/// A right-hand operand packed once for many products: the micro-panels `[n / NR][k][NR]` of
/// this CPU's register kernel, the last panel's columns past `n` zero. An RNN's recurrent
/// weights are multiplied once per time step by a handful of rows (the batch); packing them per
/// product would cost as much as the product.
pub struct PackedRhs {
    data: Vec<f32>,
    nr: usize,
    k: usize,
    n: usize,
}

/// Columns `[j0, n)` of a [`PackedRhs`], `j0` on a panel boundary.
#[derive(Clone, Copy)]
pub struct Panels<'a> {
    data: &'a [f32],
    nr: usize,
    k: usize,
}

impl PackedRhs {
    /// `b` (k x n) packed for this CPU's register kernel; `None` on CPUs without one, where the
    /// general GEMM packs per product anyway.
    pub fn new(b: Mat, k: usize, n: usize) -> Option<PackedRhs> {
        let nr = match widest() {
            Kernel::Avx512 => 32,
            Kernel::Avx2 => 16,
            _ => return None,
        };
        Self::with_width(b, k, n, nr)
    }

    /// `b` packed in micro-panels of `nr` columns (`None` when it is empty).
    pub(super) fn with_width(b: Mat, k: usize, n: usize, nr: usize) -> Option<PackedRhs> {
        if k == 0 || n == 0 {
            return None;
        }
        assert!((k - 1) * b.rs + (n - 1) * b.cs < b.data.len(), "packed rhs out of range");
        let mut data = vec![0f32; Self::len(n, k, nr)];
        for (panel, dst) in data.chunks_exact_mut(k * nr).enumerate() {
            let cols = nr.min(n - panel * nr);
            let (mut j0, mut p0) = (0, 0);
            if b.rs == 1 {
                // B stored transposed (R, a Linear's weights): its columns are contiguous rows,
                // packed by 8 x 8 transposes where whole blocks fit.
                for jb in (0..cols / 8 * 8).step_by(8) {
                    for pb in (0..k / 8 * 8).step_by(8) {
                        let src = std::array::from_fn(|i| b.data[(panel * nr + jb + i) * b.cs + pb..][..8].as_ptr());
                        // SAFETY: eight readable elements per source column (sliced above); the
                        // destination rows pb..pb + 8, columns jb..jb + 8 are inside the panel.
                        unsafe { super::simd::transpose8x8(src, dst[pb * nr + jb..][..7 * nr + 8].as_mut_ptr(), nr) };
                    }
                }
                (j0, p0) = (cols / 8 * 8, k / 8 * 8);
            }
            // What the transposes left: every column from j0, and the depth from p0 of the rest.
            for j in 0..cols {
                let col = panel * nr + j;
                for p in if j < j0 { p0 } else { 0 }..k {
                    dst[p * nr + j] = b.data[p * b.rs + col * b.cs];
                }
            }
        }
        Some(PackedRhs { data, nr, k, n })
    }
    /// Columns per micro-panel: splits of the columns between threads fall on its multiples.
    pub fn panel_width(&self) -> usize {
        self.nr
    }
    /// Floats that `n` columns of depth `k` take in panels of `nr`.
    pub(super) fn len(n: usize, k: usize, nr: usize) -> usize {
        n.div_ceil(nr) * k * nr
    }
    /// Micro-panel `i`: columns `[i * nr, (i + 1) * nr)` as k rows of nr.
    pub(super) fn panel(&self, i: usize) -> &[f32] {
        &self.data[i * self.k * self.nr..][..self.k * self.nr]
    }
    /// Columns from `j0` (a multiple of [`Self::panel_width`]) on.
    pub fn columns_from(&self, j0: usize) -> Rhs<'_> {
        assert!(j0.is_multiple_of(self.nr) && j0 < self.n, "packed columns from {j0} of {}", self.n);
        Rhs::Packed(Panels { data: &self.data[j0 / self.nr * self.k * self.nr..], nr: self.nr, k: self.k })
    }
}

impl Panels<'_> {
    /// B[p][j] (zero past the packed columns).
    pub(super) fn at(&self, p: usize, j: usize) -> f32 {
        self.data[((j / self.nr) * self.k + p) * self.nr + j % self.nr]
    }
}

/// `fill(p, j0, j1, dst)` writes B[p][j0..j1] into `dst[..j1 - j0]`.
pub type RowFill<'a> = &'a (dyn Fn(usize, usize, usize, &mut [f32]) + Sync);

/// Which register kernel the fused GEMM runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kernel {
    Avx512,
    Avx2,
    /// Dot products along the depth ([`dot_gemm`]), for products with few columns.
    Avx512Dot,
    Avx2Dot,
    /// The general GEMM and separate epilogue passes.
    Unfused,
}

/// The widest instruction set this CPU runs: AVX-512F, AVX2 + FMA, or neither.
fn widest() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Kernel::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Kernel::Avx2;
        }
    }
    Kernel::Unfused
}

/// The best kernel this CPU runs for a product of `n` columns.
fn kernel(n: usize) -> Kernel {
    match widest() {
        Kernel::Avx512 if n <= dot_gemm::MAX_COLS_AVX512 => Kernel::Avx512Dot,
        Kernel::Avx2 if n <= dot_gemm::MAX_COLS_AVX2 => Kernel::Avx2Dot,
        widest => widest,
    }
}

/// `c[i * ldc + j] = epilogue(channel0 + i)(sum_p a[i, p] * b[p, j])` for an `m x n` block.
///
/// # Safety
/// `c` must be valid for writes of `(m - 1) * ldc + n` elements (it may be uninitialised), and
/// no other thread may access the block it describes during the call.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_epilogue(m: usize, n: usize, k: usize, a: Mat, b: Rhs, c: *mut f32, ldc: usize, epi: &Epilogue, channel0: usize) {
    // Packed panels are the tiled kernels' layout, whatever the width.
    let kernel = if matches!(b, Rhs::Packed(_)) { widest() } else { kernel(n) };
    // SAFETY: forwarded from the caller.
    unsafe { gemm_epilogue_on(kernel, m, n, k, a, b, c, ldc, epi, channel0) }
}

/// [`gemm_epilogue`] with the kernel explicit (it must run on this CPU), so tests can check each
/// against the others.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_epilogue_on(kernel: Kernel, m: usize, n: usize, k: usize, a: Mat, b: Rhs, c: *mut f32, ldc: usize, epi: &Epilogue, channel0: usize) {
    if m == 0 || n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if kernel != Kernel::Unfused && k > 0 && a.cs == 1 {
        assert!((m - 1) * a.rs + (k - 1) * a.cs < a.data.len(), "gemm lhs out of range");
        match b {
            Rhs::Matrix(b) => assert!((k - 1) * b.rs + (n - 1) * b.cs < b.data.len(), "gemm rhs out of range"),
            Rhs::Packed(p) => assert!(p.k == k && n.div_ceil(p.nr) * k * p.nr <= p.data.len() && match kernel {
                // The tiled kernels read its panels as their own; the others element by element.
                Kernel::Avx512 => p.nr == 32,
                Kernel::Avx2 => p.nr == 16,
                _ => true,
            }, "packed rhs does not fit the product"),
            Rhs::Rows(_) => {}
        }
        let job = Job { m, n, k, a, b, c, ldc, epi, channel0 };
        // Packing happens on this thread and calls no rayon code, so the borrow cannot be
        // re-entered.
        return PACK.with_borrow_mut(|(bpack, row)| {
            // SAFETY: `kernel` runs on this CPU (the caller's word, or `kernel()`); the caller
            // vouches for `c`.
            unsafe {
                match kernel {
                    Kernel::Avx512 => blocked_avx512(&job, bpack, row),
                    Kernel::Avx512Dot => dot_gemm::blocked_avx512(&job, bpack, row),
                    Kernel::Avx2Dot => dot_gemm::blocked_avx2(&job, bpack, row),
                    _ => blocked_avx2(&job, bpack, row),
                }
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
        Rhs::Packed(p) => {
            made = (0..k * n).map(|i| p.at(i / n, i % n)).collect();
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

/// One fused product, as [`gemm_epilogue`] takes it.
pub(super) struct Job<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: Mat<'a>,
    pub b: Rhs<'a>,
    pub c: *mut f32,
    pub ldc: usize,
    pub epi: &'a Epilogue<'a>,
    pub channel0: usize,
}

/// Packs rows `[p0, p0 + kc)` and columns `[j0, j0 + nc)` of `b` into micro-panels of NR
/// columns: `[nc / NR][kc][NR]`, columns past the end zero. `row` is scratch for made rows.
#[inline(always)]
fn pack_b<const NR: usize>(b: Rhs, p0: usize, kc: usize, j0: usize, nc: usize, out: &mut Vec<f32>, row: &mut Vec<f32>) {
    let panels = nc.div_ceil(NR);
    if out.len() < panels * kc * NR {
        out.resize(panels * kc * NR, 0.0);
    }
    // Row by row, so each row of B is read as one contiguous run (the hardware prefetcher
    // follows it) rather than one cache line from each of `kc` rows in turn. A row is read in
    // place when it is contiguous in memory, else made or gathered into `row` first.
    row.resize(nc, 0.0);
    for p in 0..kc {
        let src: &[f32] = match b {
            Rhs::Matrix(b) if b.cs == 1 => &b.data[(p0 + p) * b.rs + j0..][..nc],
            Rhs::Matrix(b) => {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = b.data[(p0 + p) * b.rs + (j0 + j) * b.cs];
                }
                row
            }
            Rhs::Rows(fill) => {
                fill(p0 + p, j0, j0 + nc, row);
                row
            }
            Rhs::Packed(b) => {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = b.at(p0 + p, j0 + j);
                }
                row
            }
        };
        let (whole, tail) = src.split_at(nc / NR * NR);
        for (panel, s) in whole.chunks_exact(NR).enumerate() {
            // A fixed-size copy inlines to two vector moves instead of a memcpy call.
            let d: &mut [f32; NR] = (&mut out[(panel * kc + p) * NR..][..NR]).try_into().unwrap();
            d.copy_from_slice(s);
        }
        if !tail.is_empty() {
            let d = &mut out[((panels - 1) * kc + p) * NR..][..NR];
            d[..tail.len()].copy_from_slice(tail);
            d[tail.len()..].fill(0.0);
        }
    }
}

/// The AVX-512 kernel: 8 x 32 tiles, B blocks of 256 x 1024 (1 MiB, for the larger L2 of the
/// CPUs that have it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn blocked_avx512(job: &Job, bpack: &mut Vec<f32>, row: &mut Vec<f32>) {
    // SAFETY: the micro-kernel needs AVX-512F, which this function is compiled for.
    blocked::<8, 32, 1024>(job, bpack, row, |kc, a, b, ldb, c, t| unsafe {
        if ldb == 32 {
            micro_kernel_avx512::<true>(kc, a, b, ldb, c, t)
        } else {
            micro_kernel_avx512::<false>(kc, a, b, ldb, c, t)
        }
    })
}

/// The AVX2 kernel: tiles of up to 6 x 16 (12 of the 16 vector registers accumulate), B blocks
/// of 256 x 256 (256 KiB, inside a 512 KiB L2).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn blocked_avx2(job: &Job, bpack: &mut Vec<f32>, row: &mut Vec<f32>) {
    macro_rules! with_rows {
        ($($mr:literal)*) => {
            match avx2_tile_rows(job.m) {
                // SAFETY: the micro-kernel needs AVX2 and FMA, which this function is compiled for.
                $($mr => blocked::<$mr, 16, 256>(job, bpack, row, |kc, a, b, ldb, c, t| unsafe {
                    if ldb == 16 {
                        micro_kernel_avx2::<$mr, true>(kc, a, b, ldb, c, t)
                    } else {
                        micro_kernel_avx2::<$mr, false>(kc, a, b, ldb, c, t)
                    }
                }),)*
                _ => unreachable!("tile rows are 1 to 6"),
            }
        };
    }
    with_rows!(1 2 3 4 5 6)
}

/// Rows per AVX2 tile for a product of `m` rows. Each depth step of a tile issues two FMAs per
/// row, two a cycle, but one accumulator takes an FMA only every 4 cycles (its latency), so a
/// tile of r rows costs max(r, 4) cycles per step. The tiling of `m` with the fewest cycles,
/// shorter on ties (fewer padding rows to load). It stays at 6 rows (the fewest loads of B per
/// FMA) unless another height saves a tenth. A batch of 8 (an RNN step) then runs as two 4-row
/// tiles, not a 6-row tile and a 2-row one that computes 4 rows of padding.
fn avx2_tile_rows(m: usize) -> usize {
    let cycles = |r: usize| m.div_ceil(r) * r.max(4);
    let best = (1..=5).min_by_key(|&r| cycles(r)).unwrap_or(6);
    if cycles(best) * 10 < cycles(6) * 9 { best } else { 6 }
}

/// The blocking shared by the kernels: B in packed blocks of KC x NC, A read in place in
/// panels of MR rows, each MR x NR tile of C by `micro`, then the part of the epilogue a clamp
/// cannot express over the panel's finished rows.
#[inline(always)]
fn blocked<const MR: usize, const NR: usize, const NC: usize>(job: &Job, bpack: &mut Vec<f32>, row: &mut Vec<f32>, micro: impl Fn(usize, &[*const f32; MR], *const f32, usize, *mut f32, &Tile)) {
    let Job { m, n, k, a, b, c, ldc, epi, channel0 } = *job;
    let bias: Vec<f32> = (0..m.div_ceil(MR) * MR).map(|i| if i < m { epi.bias(channel0 + i) } else { 0.0 }).collect();
    if let Some(b) = streams_in_place(job, NR) {
        return streamed::<MR, NR>(job, b, &bias, bpack, row, &micro);
    }
    // A shallow product packs wider blocks, the same KC x NC floats in all: B's rows are then
    // read in longer runs (a 1x1 convolution over 32 channels reads 8 KiB of each row per block,
    // not 1 KiB), and there are fewer blocks to set up.
    let block_cols = (KC * NC / k.clamp(1, KC)).next_multiple_of(NR);
    for j0 in (0..n).step_by(block_cols) {
        let nc = block_cols.min(n - j0);
        for p0 in (0..k).step_by(KC) {
            let kc = KC.min(k - p0);
            // Micro-panel jp of this block at depth p0: packed here, or where a PackedRhs has it.
            let packed = match b {
                Rhs::Packed(p) => p.data[(j0 / NR * k + p0) * NR..].as_ptr(),
                _ => {
                    pack_b::<NR>(b, p0, kc, j0, nc, bpack, row);
                    bpack.as_ptr()
                }
            };
            let panel_stride = if matches!(b, Rhs::Packed(_)) { k * NR } else { kc * NR };
            let (first, last) = (p0 == 0, p0 + kc == k);
            for panel in 0..m.div_ceil(MR) {
                let rows = MR.min(m - panel * MR);
                let arows = a_rows::<MR>(a, panel, rows, p0);
                for jp in 0..nc.div_ceil(NR) {
                    let cols = NR.min(nc - jp * NR);
                    // SAFETY: inside the packed block (checked against its length up front).
                    let bp = unsafe { packed.add(jp * panel_stride) };
                    // SAFETY: the tile (rows x cols at this offset) is inside the caller's block;
                    // the A rows hold k - p0 >= kc elements and the packed panel kc * NR.
                    let ct = unsafe { c.add(panel * MR * ldc + j0 + jp * NR) };
                    let tile = Tile { rows, cols, ldc, accumulate: !first, epilogue: last.then_some((&bias[panel * MR..panel * MR + MR], epi.lo, epi.hi)) };
                    micro(kc, &arows, bp, NR, ct, &tile);
                }
                if last {
                    finish_rows(job, panel * MR, rows, j0, nc);
                }
            }
        }
    }
}

/// Tile row pointers into A for panel `panel` from depth `p0`, read in place, one row stream
/// per tile row; rows past the panel's `rows` repeat its last row (computed, never stored).
#[inline(always)]
fn a_rows<const MR: usize>(a: Mat, panel: usize, rows: usize, p0: usize) -> [*const f32; MR] {
    std::array::from_fn(|r| a.data[(panel * MR + r.min(rows - 1)) * a.rs + p0..].as_ptr())
}

/// The part of the epilogue a clamp cannot express, over rows `[r0, r0 + rows)` of columns
/// `[j0, j0 + nc)` while they are in cache, in runs of a block's columns: a call per tile row
/// of NR would cost more than its math.
#[inline(always)]
fn finish_rows(job: &Job, r0: usize, rows: usize, j0: usize, nc: usize) {
    for r in r0..r0 + rows {
        // SAFETY: row r of the caller's block over columns [j0, j0 + nc), just stored.
        job.epi.finish(unsafe { std::slice::from_raw_parts_mut(job.c.add(r * job.ldc + j0), nc) });
    }
}

/// B when the product reads it in place: a row-major matrix in memory (a pointwise
/// convolution's input) one depth block deep, with at most twice as many rows of C as of B.
/// Packing would copy all of B once more, which for a shallow product costs as much as the
/// arithmetic. Where C has many more rows than B (an expansion), the stores dominate, packing
/// costs little beside them, and packed panels load faster than k strided rows.
fn streams_in_place<'a>(job: &Job<'a>, nr: usize) -> Option<Mat<'a>> {
    match job.b {
        Rhs::Matrix(b) if b.cs == 1 && job.k <= KC && job.m <= 2 * job.k && job.n >= nr => Some(b),
        _ => None,
    }
}

/// Floats of B per column block of [`streamed`]: the block stays in L2 while every panel of A
/// passes over it.
const STREAMED_BLOCK: usize = 32 * 1024;

/// [`blocked`] for B read in place ([`streams_in_place`]): blocks of columns small enough to
/// stay in L2, each panel of A over the block's tiles. Columns past the last whole tile are
/// packed (a tile loads NR columns of each row).
#[inline(always)]
fn streamed<const MR: usize, const NR: usize>(job: &Job, b: Mat, bias: &[f32], bpack: &mut Vec<f32>, row: &mut Vec<f32>, micro: &impl Fn(usize, &[*const f32; MR], *const f32, usize, *mut f32, &Tile)) {
    let Job { m, n, k, a, c, ldc, epi, .. } = *job;
    let block_cols = (STREAMED_BLOCK / k.max(1)).clamp(4 * NR, 1024) / NR * NR;
    let whole = n / NR * NR;
    let ahead = (128 / k.max(1)).clamp(2, 8);
    for j0 in (0..n).step_by(block_cols) {
        let nc = block_cols.min(n - j0);
        let tiles_end = (j0 + nc).min(whole);
        if tiles_end < j0 + nc {
            pack_b::<NR>(Rhs::Matrix(b), 0, k, tiles_end, j0 + nc - tiles_end, bpack, row);
        }
        for panel in 0..m.div_ceil(MR) {
            let rows = MR.min(m - panel * MR);
            let arows = a_rows::<MR>(a, panel, rows, 0);
            for jp in (j0..j0 + nc).step_by(NR) {
                let (bp, ldb) = if jp < tiles_end { (b.data[jp..].as_ptr(), b.rs) } else { (bpack.as_ptr(), NR) };
                // The first panel brings the block in from memory. B's k rows are k streams,
                // more than the hardware prefetcher follows: fetch a tile ahead, far enough
                // that the tiles between cover the latency (a shallow tile computes in ~100
                // cycles).
                #[cfg(target_arch = "x86_64")]
                if panel == 0 && jp + (ahead + 1) * NR <= tiles_end {
                    for p in 0..k {
                        for line in (0..NR).step_by(16) {
                            // SAFETY: a prefetch has no effect on memory; the address is inside B.
                            unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(b.data.as_ptr().add(p * b.rs + jp + ahead * NR + line).cast()) };
                        }
                    }
                }
                // SAFETY: the tile (rows x cols at this offset) is inside the caller's block; a
                // whole tile's k rows of NR columns lie inside B (checked up front), the tail's
                // inside the packed panel.
                let ct = unsafe { c.add(panel * MR * ldc + jp) };
                let tile = Tile { rows, cols: NR.min(n - jp), ldc, accumulate: false, epilogue: Some((&bias[panel * MR..panel * MR + MR], epi.lo, epi.hi)) };
                micro(k, &arows, bp, ldb, ct, &tile);
            }
            finish_rows(job, panel * MR, rows, j0, nc);
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
unsafe fn micro_kernel_avx512<const PACKED: bool>(kc: usize, a: &[*const f32; 8], b: *const f32, ldb: usize, c: *mut f32, t: &Tile) {
    use std::arch::x86_64::*;
    const NR: usize = 32;
    // A packed panel's stride as a constant, so its loop has no stride to carry.
    let ldb = if PACKED { NR } else { ldb };
    let mut acc = [[_mm512_setzero_ps(); 2]; 8];
    if t.cols <= 16 {
        // The last tile of a row with at most half a tile left (72 columns are two tiles of 32
        // and one of 8): the second vector's columns are padding, so it is not computed.
        for p in 0..kc {
            // SAFETY: each A row has kc elements from its pointer; B holds kc rows of NR at ldb.
            let b0 = unsafe { _mm512_loadu_ps(b.add(p * ldb)) };
            for (r, acc_r) in acc.iter_mut().enumerate() {
                // SAFETY: as above.
                acc_r[0] = _mm512_fmadd_ps(_mm512_set1_ps(unsafe { *a[r].add(p) }), b0, acc_r[0]);
            }
        }
    } else {
        for p in 0..kc {
            // SAFETY: as above.
            let (b0, b1) = unsafe { (_mm512_loadu_ps(b.add(p * ldb)), _mm512_loadu_ps(b.add(p * ldb + 16))) };
            for (r, acc_r) in acc.iter_mut().enumerate() {
                // SAFETY: as above.
                let av = _mm512_set1_ps(unsafe { *a[r].add(p) });
                acc_r[0] = _mm512_fmadd_ps(av, b0, acc_r[0]);
                acc_r[1] = _mm512_fmadd_ps(av, b1, acc_r[1]);
            }
        }
    }
    if t.rows == 8 && t.cols == NR {
        // A whole tile in straight-line code, so the accumulators stay in registers (as in the
        // AVX2 kernel).
        for (r, acc_r) in acc.iter().enumerate() {
            for (v, &x) in acc_r.iter().enumerate() {
                // SAFETY: the whole 8 x 32 tile is inside the caller's block.
                unsafe { finish_avx512(x, c.add(r * t.ldc + 16 * v), !0, r, t) };
            }
        }
        return;
    }
    for (r, acc_r) in acc.iter().enumerate().take(t.rows) {
        for (v, &x) in acc_r.iter().enumerate() {
            let valid = t.cols.saturating_sub(16 * v).min(16);
            if valid == 0 {
                continue;
            }
            // SAFETY: row r < rows and the masked lanes are columns < cols of the tile.
            unsafe { finish_avx512(x, c.add(r * t.ldc + 16 * v), ((1u32 << valid) - 1) as __mmask16, r, t) };
        }
    }
}

/// Stores one accumulator vector of tile row `r` into the lanes of `mask` at `cp`: plus what is
/// there when the tile accumulates, then bias and clamp on the last depth block.
///
/// # Safety
/// The lanes of `mask` at `cp` must be valid for reads and writes.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn finish_avx512(x: std::arch::x86_64::__m512, cp: *mut f32, mask: std::arch::x86_64::__mmask16, r: usize, t: &Tile) {
    use std::arch::x86_64::*;
    let mut x = x;
    // SAFETY: as the caller vouches.
    unsafe {
        if t.accumulate {
            x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask, cp));
        }
        if let Some((bias, lo, hi)) = t.epilogue {
            x = _mm512_add_ps(x, _mm512_set1_ps(bias[r]));
            // MAXPS/MINPS return their second operand when either is NaN: x goes second, so a
            // NaN stays NaN (as in ONNX Runtime).
            x = _mm512_min_ps(_mm512_set1_ps(hi), _mm512_max_ps(_mm512_set1_ps(lo), x));
        }
        _mm512_mask_storeu_ps(cp, mask, x);
    }
}

/// The AVX2 + FMA micro-kernel: an MR x 16 tile of C in 2 MR registers (MR <= 6).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro_kernel_avx2<const MR: usize, const PACKED: bool>(kc: usize, a: &[*const f32; MR], b: *const f32, ldb: usize, c: *mut f32, t: &Tile) {
    use std::arch::x86_64::*;
    const NR: usize = 16;
    // A packed panel's stride as a constant (see `micro_kernel_avx512`).
    let ldb = if PACKED { NR } else { ldb };
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    if t.cols <= 8 {
        // At most half a tile left (see `micro_kernel_avx512`): 72 columns are four tiles of 16
        // and one of 8.
        for p in 0..kc {
            // SAFETY: each A row has kc elements from its pointer; B holds kc rows of NR at ldb.
            let b0 = unsafe { _mm256_loadu_ps(b.add(p * ldb)) };
            for (r, acc_r) in acc.iter_mut().enumerate() {
                // SAFETY: as above.
                acc_r[0] = _mm256_fmadd_ps(_mm256_set1_ps(unsafe { *a[r].add(p) }), b0, acc_r[0]);
            }
        }
    } else {
        for p in 0..kc {
            // SAFETY: as above.
            let (b0, b1) = unsafe { (_mm256_loadu_ps(b.add(p * ldb)), _mm256_loadu_ps(b.add(p * ldb + 8))) };
            for (r, acc_r) in acc.iter_mut().enumerate() {
                // SAFETY: as above.
                let av = _mm256_set1_ps(unsafe { *a[r].add(p) });
                acc_r[0] = _mm256_fmadd_ps(av, b0, acc_r[0]);
                acc_r[1] = _mm256_fmadd_ps(av, b1, acc_r[1]);
            }
        }
    }
    if t.rows == MR && t.cols == NR {
        // A whole tile in straight-line code, so the accumulators stay in registers: with a
        // shallow depth (a 1x1 convolution over few channels) the store costs as much as the FMAs.
        for (r, acc_r) in acc.iter().enumerate() {
            for (v, &x) in acc_r.iter().enumerate() {
                // SAFETY: the whole MR x 16 tile is inside the caller's block.
                unsafe {
                    let cp = c.add(r * t.ldc + 8 * v);
                    _mm256_storeu_ps(cp, finish_avx2(x, cp, r, t));
                }
            }
        }
        return;
    }
    for (r, acc_r) in acc.iter().enumerate().take(t.rows) {
        for (v, &x) in acc_r.iter().enumerate() {
            let valid = t.cols.saturating_sub(8 * v).min(8);
            if valid == 0 {
                continue;
            }
            // SAFETY: row r < rows and columns [8 v, 8 v + valid) are inside the tile; a partial
            // vector goes through `part`, so nothing past the tile is read or written.
            unsafe {
                let cp = c.add(r * t.ldc + 8 * v);
                let mut part = [0f32; 8];
                let dst = if valid == 8 { cp } else { part.as_mut_ptr() };
                if t.accumulate && valid < 8 {
                    std::ptr::copy_nonoverlapping(cp, dst, valid);
                }
                _mm256_storeu_ps(dst, finish_avx2(x, dst, r, t));
                if valid < 8 {
                    std::ptr::copy_nonoverlapping(dst, cp, valid);
                }
            }
        }
    }
}

/// One accumulator vector of tile row `r` as it is stored: plus what `prev` holds when the tile
/// accumulates, then bias and clamp on the last depth block.
///
/// # Safety
/// With `t.accumulate`, `prev` must be valid for reads of 8 elements.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn finish_avx2(x: std::arch::x86_64::__m256, prev: *const f32, r: usize, t: &Tile) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let mut x = x;
    if t.accumulate {
        // SAFETY: as the caller vouches.
        x = _mm256_add_ps(x, unsafe { _mm256_loadu_ps(prev) });
    }
    if let Some((bias, lo, hi)) = t.epilogue {
        x = _mm256_add_ps(x, _mm256_set1_ps(bias[r]));
        // x second, so a NaN stays NaN (see `finish_avx512`).
        x = _mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), x));
    }
    x
}

#[cfg(test)]
#[path = "fused_gemm_tests.rs"]
mod tests;
