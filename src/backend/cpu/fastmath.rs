//! Vectorisable f32 approximations of transcendental functions. The libm versions are calls,
//! one element at a time; these are plain multiplies, adds and bit operations, so loops over
//! them vectorise. Each states its error bound, checked against f64 in the tests below.

/// erf in f32 as a ratio of polynomials in x (Eigen's `generic_fast_erf_float`; max abs error
/// 4.2e-7 on [-6, 6]): only multiplies, adds and one divide, so loops over it vectorise, unlike
/// forms that call `exp`. Beyond |x| = 4 erf is +-1 in f32.
#[inline]
pub fn erf(x: f32) -> f32 {
    #[allow(clippy::excessive_precision)]
    const ALPHA: [f32; 7] = [-2.726_142_3e-10, 2.770_681_4e-8, -2.101_024e-6, -5.692_506_4e-5, -7.349_906_3e-4, -2.954_600e-3, -1.609_603_3e-2];
    #[allow(clippy::excessive_precision)]
    const BETA: [f32; 5] = [-1.456_607_2e-5, -2.133_740_6e-4, -1.682_827e-3, -7.373_329e-3, -1.426_474e-2];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    // Plain multiply-adds: `mul_add` is a libm call on targets without FMA.
    let p = ALPHA[1..].iter().fold(ALPHA[0], |acc, &c| acc * x2 + c) * x;
    let q = BETA[1..].iter().fold(BETA[0], |acc, &c| acc * x2 + c);
    p / q
}

// Cephes' `expf`: e^x = 2^n e^r with n = round(x log2 e) and |r| <= ln 2 / 2, e^r by polynomial.
const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split in two so that n * LN2_HI is exact.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const P: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5.000_000_1e-1];
// Rounding by adding and subtracting 1.5 * 2^23: `round` is a libm call without SSE4.1.
const ROUND: f32 = 12_582_912.0;

/// e^x (Cephes' `expf` polynomial after reducing x by multiples of ln 2; max relative error
/// 3e-7 where the result is a normal f32). Overflows to +inf above 88.72, and is 0 below -104.
#[inline]
pub fn exp(x: f32) -> f32 {
    let xc = x.clamp(-103.9, 88.73);
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    // n as an integer straight from t's mantissa bits: an `as i32` conversion is saturating and
    // NaN-checked, which keeps the loop scalar.
    let ni = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = P[1..].iter().fold(P[0], |acc, &c| acc * r + c);
    let y = p * r * r + r + 1.0;
    // 2^n in two halves, so that n down to -150 (subnormal results) stays representable; the
    // clamp on x keeps each half's exponent in the normal range.
    let half = ni >> 1;
    let scale = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    let out = y * scale(half) * scale(ni - half);
    if x.is_nan() {
        x
    } else if x < -104.0 {
        // Below half the smallest subnormal.
        0.0
    } else {
        out
    }
}

/// tanh in f32 as a ratio of odd and even polynomials (Eigen's `ptanh_float`; max abs error a
/// few ulp on [-9, 9]): multiplies, adds and one divide, so loops over it vectorise. Beyond
/// |x| = 7.9 tanh is +-1 in f32; below 4e-4 it is x.
#[inline]
pub fn tanh(x: f32) -> f32 {
    #[allow(clippy::excessive_precision)]
    const ALPHA: [f32; 7] = [-2.760_768_5e-16, 2.000_187_9e-13, -8.604_671_5e-11, 5.122_297e-8, 1.485_722_4e-5, 6.372_619_3e-4, 4.893_524_6e-3];
    #[allow(clippy::excessive_precision)]
    const BETA: [f32; 4] = [1.198_258_4e-6, 1.185_347e-4, 2.268_434_6e-3, 4.893_525e-3];
    let xc = x.clamp(-7.905_311, 7.905_311);
    let x2 = xc * xc;
    let p = ALPHA[1..].iter().fold(ALPHA[0], |acc, &c| acc * x2 + c) * xc;
    let q = BETA[1..].iter().fold(BETA[0], |acc, &c| acc * x2 + c);
    // The clamp passes a NaN through (it stays NaN).
    if x.abs() < 4e-4 { x } else { p / q }
}

/// e^x for the logistic functions, which saturate long before e^x leaves the normal range: x is
/// clamped to [-87, 88], so one power of two scales the result and no special case is needed
/// (a NaN stays NaN through the arithmetic). [`exp`]'s polynomial, as fused multiply-adds: every
/// caller runs in an AVX2 + FMA loop where the CPU has them, and `mul_add` rounds the same on
/// hardware and in libm, so the op and the fused epilogues agree to the bit.
#[inline(always)]
fn logistic_exp(x: f32) -> f32 {
    let xc = x.clamp(-87.0, 88.0);
    let t = xc.mul_add(LOG2E, ROUND);
    let n = t - ROUND;
    let ni = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, xc));
    let p = P[1..].iter().fold(P[0], |acc, &c| acc.mul_add(r, c));
    let y = (p * r).mul_add(r, r) + 1.0;
    y * f32::from_bits(((ni + 127) as u32) << 23)
}

/// The logistic function 1 / (1 + e^-x).
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + logistic_exp(-x))
}

/// Swish, `x * sigmoid(alpha * x)` (SiLU at alpha 1), one formula for the op and for the
/// convolution epilogue that fuses it.
#[inline(always)]
pub fn swish(x: f32, alpha: f32) -> f32 {
    x / (1.0 + logistic_exp(-alpha * x))
}

/// HardSwish, `x * clamp(x / 6 + 1/2, 0, 1)`, for the op and the fused epilogue alike. Written
/// as comparisons rather than `clamp` so it vectorises; a NaN fails both and stays NaN.
#[inline(always)]
pub fn hard_swish(x: f32) -> f32 {
    let g = x * (1.0 / 6.0) + 0.5;
    let g = if g < 0.0 { 0.0 } else { g };
    x * if g > 1.0 { 1.0 } else { g }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_erf_is_within_its_bound() {
        let worst = (-60_000..=60_000)
            .map(|i| i as f64 / 10_000.0)
            .map(|x| (erf(x as f32) as f64 - super::super::elementwise::erf_f64(x)).abs())
            .fold(0.0, f64::max);
        assert!(worst < 6e-7, "max abs error {worst:e}");
        assert!(erf(f32::NAN).is_nan());
    }

    #[test]
    fn fast_tanh_is_within_its_bound() {
        let mut worst = 0f64;
        for i in -100_000..=100_000 {
            let x = i as f32 / 10_000.0;
            let want = (x as f64).tanh();
            // Relative where tanh is small, absolute near +-1.
            let err = (tanh(x) as f64 - want).abs() / want.abs().clamp(1e-30, 1.0);
            worst = worst.max(err);
        }
        assert!(worst < 1e-6, "max error {worst:e}");
        assert_eq!(tanh(0.0), 0.0);
        assert_eq!(tanh(1e-30), 1e-30);
        assert_eq!(tanh(50.0), 1.0);
        assert_eq!(tanh(-50.0), -1.0);
        assert!(tanh(f32::NAN).is_nan());
    }

    #[test]
    fn fast_exp_is_within_its_bound() {
        let mut worst = 0f64;
        for i in -870_000..=887_000 {
            let x = i as f32 / 10_000.0;
            let want = (x as f64).exp();
            let rel = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 3e-7, "max relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-200.0), 0.0);
        assert!(exp(100.0).is_infinite());
        assert!(exp(f32::NAN).is_nan());
        // Subnormal results are within one step of the subnormal grid.
        for x in [-90.0f32, -95.0, -100.0, -103.0] {
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            assert!((got - want).abs() <= f32::from_bits(1) as f64, "exp({x}) = {got:e}, want {want:e}");
        }
    }

    #[test]
    fn logistic_functions_are_within_their_bound() {
        let (mut worst_sigmoid, mut worst_swish) = (0f64, 0f64);
        for i in -400_000..=400_000 {
            let x = i as f32 / 10_000.0;
            let s = 1.0 / (1.0 + (-x as f64).exp());
            worst_sigmoid = worst_sigmoid.max(((sigmoid(x) as f64 - s) / s).abs());
            // The argument rounded to f32 as the kernel rounds it: its rounding is not the exp's error.
            let want = x as f64 / (1.0 + ((-1.7f32 * x) as f64).exp());
            worst_swish = worst_swish.max((swish(x, 1.7) as f64 - want).abs() / (1e-30 + want.abs()));
        }
        assert!(worst_sigmoid < 5e-7 && worst_swish < 5e-7, "max relative error: sigmoid {worst_sigmoid:e}, swish {worst_swish:e}");
        assert!(sigmoid(f32::NAN).is_nan() && swish(f32::NAN, 1.0).is_nan());
        assert_eq!((sigmoid(f32::INFINITY), swish(f32::INFINITY, 1.0)), (1.0, f32::INFINITY));
        assert!(sigmoid(-200.0) < 1e-37 && sigmoid(-200.0) >= 0.0);
    }
}
