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

/// `x = x * sigmoid(alpha * x)` (Swish; SiLU at alpha 1) over a slice, with AVX2 and FMA where
/// the CPU has them: the exponential is a polynomial, so eight lanes at once.
#[inline]
pub fn swish(x: &mut [f32], alpha: f32) {
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

/// `x = x * clamp(x / 6 + 1/2, 0, 1)` (HardSwish) over a slice; a NaN stays NaN.
#[inline]
pub fn hard_swish(x: &mut [f32]) {
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
