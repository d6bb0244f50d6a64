//! Hot inner loops compiled twice: for the baseline target and with AVX2+FMA, picked at run
//! time. The default x86-64 target has only SSE2, so without this the auto-vectoriser leaves
//! most of the machine idle; binaries stay portable to CPUs without AVX2.

/// `dst[i] += w * src[i * stride]`.
#[inline]
pub fn axpy(dst: &mut [f32], src: &[f32], stride: usize, w: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { axpy_avx2(dst, src, stride, w) };
    }
    axpy_generic(dst, src, stride, w)
}

#[inline(always)]
fn axpy_generic(dst: &mut [f32], src: &[f32], stride: usize, w: f32) {
    if stride == 1 {
        let n = dst.len();
        for (d, s) in dst.iter_mut().zip(&src[..n]) {
            *d = w.mul_add(*s, *d);
        }
    } else {
        for (d, s) in dst.iter_mut().zip(src.iter().step_by(stride)) {
            *d = w.mul_add(*s, *d);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn axpy_avx2(dst: &mut [f32], src: &[f32], stride: usize, w: f32) {
    axpy_generic(dst, src, stride, w)
}

/// `x = act(x + b)` over a slice (bias plus fused activation).
#[inline]
pub fn bias_act(x: &mut [f32], b: f32, lo: f32, hi: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: as above.
        return unsafe { bias_act_avx2(x, b, lo, hi) };
    }
    bias_act_generic(x, b, lo, hi)
}

#[inline(always)]
fn bias_act_generic(x: &mut [f32], b: f32, lo: f32, hi: f32) {
    // Comparisons, not `max`/`min`: a NaN stays NaN (as in ONNX Runtime).
    for v in x.iter_mut() {
        let y = *v + b;
        let y = if y < lo { lo } else { y };
        *v = if y > hi { hi } else { y };
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn bias_act_avx2(x: &mut [f32], b: f32, lo: f32, hi: f32) {
    bias_act_generic(x, b, lo, hi)
}

/// `x = x * sigmoid(alpha * x)` (Swish; SiLU at alpha 1) over a slice, with AVX-512, or AVX2 and
/// FMA, where the CPU has them: the exponential is a polynomial, so 16 or 8 lanes at once.
#[inline]
pub fn swish(x: &mut [f32], alpha: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: as above.
        return unsafe { swish_avx512(x, alpha) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: as above.
        return unsafe { swish_avx2(x, alpha) };
    }
    swish_generic(x, alpha)
}

#[inline(always)]
fn swish_generic(x: &mut [f32], alpha: f32) {
    for v in x.iter_mut() {
        *v = super::fastmath::swish(*v, alpha);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn swish_avx2(x: &mut [f32], alpha: f32) {
    swish_generic(x, alpha)
}

/// 16 lanes: the exp polynomial and the divide were a fifth of efficientnet_b0's time in 8.
/// Fused multiply-adds and a correctly rounded divide at either width, so the bits are the same.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn swish_avx512(x: &mut [f32], alpha: f32) {
    swish_generic(x, alpha)
}

/// `x = x * clamp(x / 6 + 1/2, 0, 1)` (HardSwish) over a slice; a NaN stays NaN.
#[inline]
pub fn hard_swish(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: as above.
        return unsafe { hard_swish_avx512(x) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: as above.
        return unsafe { hard_swish_avx2(x) };
    }
    hard_swish_generic(x)
}

#[inline(always)]
fn hard_swish_generic(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = super::fastmath::hard_swish(*v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn hard_swish_avx2(x: &mut [f32]) {
    hard_swish_generic(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn hard_swish_avx512(x: &mut [f32]) {
    hard_swish_generic(x)
}

/// Starts of 8-element runs covering `0..len` (len >= 8): every 8, then one overlapping the
/// previous run so that it ends at `len` (rewriting a few elements with the same values beats
/// a scalar tail).
pub(crate) fn starts_of_eight(len: usize) -> impl Iterator<Item = usize> {
    (0..len / 8).map(|i| i * 8).chain((!len.is_multiple_of(8)).then_some(len - 8))
}

/// `dst[c * dst_stride + r] = src[r * src_stride + c]` for `r < rows`, `c < cols`: rows of
/// values (a pixel's channels) turned into columns (a channel's pixels), in 8 x 8 transposes
/// (the last ones overlapping) when both sides have 8, one element at a time otherwise.
///
/// # Safety
/// `dst` must be valid for writes at every such place (it may be uninitialised) and not overlap
/// `src`.
#[inline(always)]
pub unsafe fn transpose_into(src: &[f32], src_stride: usize, rows: usize, cols: usize, dst: *mut f32, dst_stride: usize) {
    if rows >= 8 && cols >= 8 {
        for r in starts_of_eight(rows) {
            for c in starts_of_eight(cols) {
                let rows8 = std::array::from_fn(|i| src[(r + i) * src_stride + c..][..8].as_ptr());
                // SAFETY: eight values of each of the eight rows (sliced above); the caller
                // vouches for the places in `dst`.
                unsafe { transpose8x8(rows8, dst.add(c * dst_stride + r), dst_stride) };
            }
        }
        return;
    }
    for c in 0..cols {
        for r in 0..rows {
            // SAFETY: as the caller vouches.
            unsafe { *dst.add(c * dst_stride + r) = src[r * src_stride + c] };
        }
    }
}

/// `dst[j * stride + i] = src[i][j]` for i, j < 8: an 8 x 8 transpose between row pointers and a
/// strided destination, in 24 shuffles with AVX (64 scalar moves without).
///
/// # Safety
/// Each `src[i]` must be valid for reads of 8 elements and `dst` for writes of `7 * stride + 8`
/// (it may be uninitialised); the two may not overlap.
///
/// Always inlined: called out of line, its eight pointers went through the stack, and the
/// load of each pair stalled on the two stores it spans (60% of its samples in `perf`, which
/// made mnasnet0_5's depthwise layers 50% slower in a build whose inlining fell that way).
#[inline(always)]
pub unsafe fn transpose8x8(src: [*const f32; 8], dst: *mut f32, stride: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX; the caller vouches for the pointers.
        return unsafe { transpose8x8_avx(src, dst, stride) };
    }
    for (i, s) in src.iter().enumerate() {
        for j in 0..8 {
            // SAFETY: as the caller vouches.
            unsafe { *dst.add(j * stride + i) = *s.add(j) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose8x8_avx(src: [*const f32; 8], dst: *mut f32, stride: usize) {
    use std::arch::x86_64::*;
    // SAFETY: the caller vouches for 8 readable elements per source row.
    let r: [__m256; 8] = std::array::from_fn(|i| unsafe { _mm256_loadu_ps(src[i]) });
    // Pairs of rows interleaved, then quadruples, then the 128-bit halves swapped into place.
    let t: [__m256; 8] = [
        _mm256_unpacklo_ps(r[0], r[1]), _mm256_unpackhi_ps(r[0], r[1]),
        _mm256_unpacklo_ps(r[2], r[3]), _mm256_unpackhi_ps(r[2], r[3]),
        _mm256_unpacklo_ps(r[4], r[5]), _mm256_unpackhi_ps(r[4], r[5]),
        _mm256_unpacklo_ps(r[6], r[7]), _mm256_unpackhi_ps(r[6], r[7]),
    ];
    let q: [__m256; 8] = [
        _mm256_shuffle_ps::<0x44>(t[0], t[2]), _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
        _mm256_shuffle_ps::<0x44>(t[1], t[3]), _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
        _mm256_shuffle_ps::<0x44>(t[4], t[6]), _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
        _mm256_shuffle_ps::<0x44>(t[5], t[7]), _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
    ];
    let out: [__m256; 8] = [
        _mm256_permute2f128_ps::<0x20>(q[0], q[4]), _mm256_permute2f128_ps::<0x20>(q[1], q[5]),
        _mm256_permute2f128_ps::<0x20>(q[2], q[6]), _mm256_permute2f128_ps::<0x20>(q[3], q[7]),
        _mm256_permute2f128_ps::<0x31>(q[0], q[4]), _mm256_permute2f128_ps::<0x31>(q[1], q[5]),
        _mm256_permute2f128_ps::<0x31>(q[2], q[6]), _mm256_permute2f128_ps::<0x31>(q[3], q[7]),
    ];
    for (j, v) in out.iter().enumerate() {
        // SAFETY: the caller vouches for the destination rows.
        unsafe { _mm256_storeu_ps(dst.add(j * stride), *v) };
    }
}
