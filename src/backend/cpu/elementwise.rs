//! Element-wise CPU kernels: unary math, broadcasting binary ops and comparisons, Where, Clip,
//! Cast. Large same-shape work runs in parallel chunks.

use crate::error::Result;
use crate::graph::{BinaryOp, UnaryOp};
use crate::tensor::{broadcast_shapes, strides_of, DType, Data, Tensor};
use crate::bail;
use half::f16;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use super::fastmath::{erf, exp, hard_swish, sigmoid, swish, tanh};

/// Below this many elements a second thread costs more (wake-up) than it saves.
const PAR_MIN: usize = 1 << 15;

/// `f` over `v` into a new vector, in parallel chunks when large. The output is written once,
/// never zeroed first: a zeroing pass (and the page faults of a fresh allocation taken there)
/// would cost as much as the op.
fn map_par<T: Sync, U: Send + Copy + 'static>(v: &[T], f: impl Fn(&T) -> U + Sync + Send) -> Vec<U> {
    let mut out: Vec<U> = super::arena::output(v.len());
    let dst = &mut out.spare_capacity_mut()[..v.len()];
    if v.len() >= PAR_MIN {
        dst.par_chunks_mut(PAR_MIN / 4).zip(v.par_chunks(PAR_MIN / 4)).with_min_len(super::threads::min_len(1)).for_each(|(d, s)| map_into(s, d, &f));
    } else {
        map_into(v, dst, &f);
    }
    // SAFETY: `map_into` wrote every element of `dst`, which is all of `out`'s length.
    unsafe { out.set_len(v.len()) };
    out
}

/// `dst[i] = f(src[i])`, with AVX2 where the CPU has it: `f` is inlined into the loop, so the
/// math approximations in `fastmath` vectorise 8 wide instead of 4 (and the integer steps in
/// them at all).
fn map_into<T, U>(src: &[T], dst: &mut [MaybeUninit<U>], f: &impl Fn(&T) -> U) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { map_into_avx2(src, dst, f) };
    }
    map_into_generic(src, dst, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn map_into_avx2<T, U>(src: &[T], dst: &mut [MaybeUninit<U>], f: &impl Fn(&T) -> U) {
    map_into_generic(src, dst, f)
}

#[inline(always)]
fn map_into_generic<T, U>(src: &[T], dst: &mut [MaybeUninit<U>], f: &impl Fn(&T) -> U) {
    for (d, s) in dst.iter_mut().zip(src) {
        d.write(f(s));
    }
}

pub(super) fn erf_f64(x: f64) -> f64 {
    // W. J. Cody's rational approximations via libm-quality expansion (max rel error ~1e-15 in f64 here is
    // unnecessary; this keeps ~1e-12): erf(x) = 1 - erfc(x), erfc by continued fraction for |x| > 2.
    let ax = x.abs();
    let r = if ax < 2.0 {
        // Taylor series: erf(x) = 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1))
        let mut sum = ax;
        let mut term = ax;
        let x2 = ax * ax;
        // Converges in under 40 terms for |x| < 2; `<=` also ends it at x = 0, where every
        // term is 0.
        for n in 1..100 {
            let n = n as f64;
            term *= -x2 / n;
            let t = term / (2.0 * n + 1.0);
            sum += t;
            if t.abs() <= 1e-17 * sum.abs() {
                break;
            }
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else {
        // erfc continued fraction (Lentz), converges fast for x >= 2.
        let x2 = ax * ax;
        let mut f = ax;
        let (mut c, mut d) = (ax, 0.0);
        for k in 1..200 {
            let a = k as f64 / 2.0;
            d = ax + a * d;
            d = 1.0 / d;
            c = ax + a / c;
            let delta = c * d;
            f *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        1.0 - (-x2).exp() / (f * std::f64::consts::PI.sqrt())
    };
    if x < 0.0 { -r } else { r }
}

/// Applies a float unary op over a slice. One closure per op (not a match per element), so each
/// loop is monomorphised and vectorises where the math allows.
fn unary_f32(op: UnaryOp, v: &[f32]) -> Vec<f32> {
    macro_rules! m {
        ($x:ident => $e:expr) => { map_par(v, |&$x: &f32| $e) };
    }
    match op {
        // Comparisons, not `max`: a NaN stays NaN (as in ONNX Runtime).
        UnaryOp::Relu => m!(x => if x < 0.0 { 0.0 } else { x }),
        UnaryOp::Sigmoid => m!(x => sigmoid(x)),
        UnaryOp::Tanh => m!(x => tanh(x)),
        UnaryOp::Erf => m!(x => erf(x)),
        UnaryOp::Exp => m!(x => exp(x)),
        UnaryOp::Log => m!(x => x.ln()),
        UnaryOp::Sqrt => m!(x => x.sqrt()),
        UnaryOp::Neg => m!(x => -x),
        UnaryOp::Abs => m!(x => x.abs()),
        UnaryOp::Reciprocal => m!(x => 1.0 / x),
        UnaryOp::Floor => m!(x => x.floor()),
        UnaryOp::Ceil => m!(x => x.ceil()),
        UnaryOp::Round => m!(x => x.round_ties_even()),
        UnaryOp::Sign => m!(x => if x > 0.0 { 1.0 } else if x < 0.0 { -1.0 } else { x }),
        UnaryOp::Sin => m!(x => x.sin()),
        UnaryOp::Cos => m!(x => x.cos()),
        UnaryOp::Not | UnaryOp::IsNaN | UnaryOp::IsInf { .. } | UnaryOp::BitwiseNot => unreachable!("handled by dtype in unary()"),
        UnaryOp::Tan => m!(x => x.tan()),
        UnaryOp::Asin => m!(x => x.asin()),
        UnaryOp::Acos => m!(x => x.acos()),
        UnaryOp::Atan => m!(x => x.atan()),
        UnaryOp::Sinh => m!(x => x.sinh()),
        UnaryOp::Cosh => m!(x => x.cosh()),
        UnaryOp::Asinh => m!(x => x.asinh()),
        UnaryOp::Acosh => m!(x => x.acosh()),
        UnaryOp::Atanh => m!(x => x.atanh()),
        UnaryOp::Celu(a) => m!(x => x.max(0.0) + (a * (exp(x / a) - 1.0)).min(0.0)),
        UnaryOp::Swish(a) => m!(x => swish(x, a)),
        UnaryOp::Softplus => m!(x => if x > 20.0 { x } else { exp(x).ln_1p() }),
        UnaryOp::Softsign => m!(x => x / (1.0 + x.abs())),
        UnaryOp::HardSwish => m!(x => hard_swish(x)),
        UnaryOp::Mish => m!(x => x * (if x > 20.0 { x } else { exp(x).ln_1p() }).tanh()),
        UnaryOp::LeakyRelu(a) => m!(x => if x < 0.0 { a * x } else { x }),
        UnaryOp::Elu(a) => m!(x => if x < 0.0 { a * (exp(x) - 1.0) } else { x }),
        UnaryOp::Selu { alpha, gamma } => m!(x => gamma * if x > 0.0 { x } else { alpha * (exp(x) - 1.0) }),
        UnaryOp::HardSigmoid { alpha, beta } => m!(x => (alpha * x + beta).clamp(0.0, 1.0)),
        UnaryOp::ThresholdedRelu(a) => m!(x => if x > a { x } else { 0.0 }),
        UnaryOp::Gelu { tanh: false } => m!(x => 0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2))),
        UnaryOp::Gelu { tanh: true } => m!(x => 0.5 * x * (1.0 + (0.797_884_6 * (x + 0.044715 * x * x * x)).tanh())),
    }
}

pub fn unary(op: UnaryOp, x: &Tensor) -> Result<Tensor> {
    let data = match (op, x.data()) {
        (UnaryOp::IsNaN, d) => Data::Bool(d.to_f64_vec().iter().map(|v| v.is_nan()).collect()),
        (UnaryOp::IsInf { negative, positive }, d) => {
            Data::Bool(d.to_f64_vec().iter().map(|v| v.is_infinite() && ((*v > 0.0 && positive) || (*v < 0.0 && negative))).collect())
        }
        (UnaryOp::BitwiseNot, Data::Bool(_)) | (UnaryOp::BitwiseNot, Data::F32(_) | Data::F64(_) | Data::F16(_) | Data::BF16(_)) => {
            crate::unsupported!("BitwiseNot of {}", x.dtype())
        }
        (UnaryOp::BitwiseNot, Data::I8(v)) => Data::I8(v.iter().map(|x| !x).collect()),
        (UnaryOp::BitwiseNot, Data::U8(v)) => Data::U8(v.iter().map(|x| !x).collect()),
        (UnaryOp::BitwiseNot, Data::I16(v)) => Data::I16(v.iter().map(|x| !x).collect()),
        (UnaryOp::BitwiseNot, Data::U16(v)) => Data::U16(v.iter().map(|x| !x).collect()),
        (UnaryOp::BitwiseNot, Data::I32(v)) => Data::I32(v.iter().map(|x| !x).collect()),
        (UnaryOp::BitwiseNot, Data::U32(v)) => Data::U32(v.iter().map(|x| !x).collect()),
        (UnaryOp::BitwiseNot, Data::I64(v)) => Data::I64(v.iter().map(|x| !x).collect()),
        (UnaryOp::BitwiseNot, Data::U64(v)) => Data::U64(v.iter().map(|x| !x).collect()),
        (UnaryOp::Not, Data::Bool(v)) => Data::Bool(v.iter().map(|b| !b).collect()),
        (UnaryOp::Not, d) => bail!("Not needs bool input, got {}", d.dtype()),
        (_, Data::F32(v)) => Data::F32(unary_f32(op, v)),
        (_, Data::F16(v)) => Data::F16(unary_f32(op, &v.iter().map(|x| x.to_f32()).collect::<Vec<_>>()).into_iter().map(f16::from_f32).collect()),
        (_, Data::BF16(v)) => Data::BF16(unary_f32(op, &v.iter().map(|x| x.to_f32()).collect::<Vec<_>>()).into_iter().map(half::bf16::from_f32).collect()),
        (_, Data::F64(v)) => match v.iter().map(|&x| unary_f64(op, x)).collect::<Option<Vec<f64>>>() {
            Some(r) => Data::F64(r),
            None => Data::F64(unary_f32(op, &v.iter().map(|&x| x as f32).collect::<Vec<_>>()).into_iter().map(|x| x as f64).collect()),
        },
        (UnaryOp::Neg, Data::I64(v)) => Data::I64(v.iter().map(|x| x.wrapping_neg()).collect()),
        (UnaryOp::Neg, Data::I32(v)) => Data::I32(v.iter().map(|x| x.wrapping_neg()).collect()),
        (UnaryOp::Neg, Data::I8(v)) => Data::I8(v.iter().map(|x| x.wrapping_neg()).collect()),
        (UnaryOp::Abs, Data::I64(v)) => Data::I64(v.iter().map(|x| x.wrapping_abs()).collect()),
        (UnaryOp::Abs, Data::I32(v)) => Data::I32(v.iter().map(|x| x.wrapping_abs()).collect()),
        (UnaryOp::Abs, Data::I8(v)) => Data::I8(v.iter().map(|x| x.wrapping_abs()).collect()),
        (UnaryOp::Relu, Data::I64(v)) => Data::I64(v.iter().map(|&x| x.max(0)).collect()),
        (UnaryOp::Relu, Data::I32(v)) => Data::I32(v.iter().map(|&x| x.max(0)).collect()),
        (UnaryOp::Sign, Data::I64(v)) => Data::I64(v.iter().map(|x| x.signum()).collect()),
        (UnaryOp::Sign, Data::I32(v)) => Data::I32(v.iter().map(|x| x.signum()).collect()),
        (op, d) => crate::unsupported!("{op:?} is not implemented for {}", d.dtype()),
    };
    Tensor::new(x.shape().to_vec(), data)
}

fn unary_f64(op: UnaryOp, x: f64) -> Option<f64> {
    Some(match op {
        UnaryOp::Relu => if x < 0.0 { 0.0 } else { x },
        UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Erf => erf_f64(x),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Reciprocal => 1.0 / x,
        UnaryOp::Floor => x.floor(),
        UnaryOp::Ceil => x.ceil(),
        UnaryOp::Round => x.round_ties_even(),
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
        UnaryOp::Tan => x.tan(),
        UnaryOp::Asin => x.asin(),
        UnaryOp::Acos => x.acos(),
        UnaryOp::Atan => x.atan(),
        UnaryOp::Sinh => x.sinh(),
        UnaryOp::Cosh => x.cosh(),
        UnaryOp::Asinh => x.asinh(),
        UnaryOp::Acosh => x.acosh(),
        UnaryOp::Atanh => x.atanh(),
        _ => return None,
    })
}

/// Applies `f` over two broadcast inputs. The innermost output axis runs as a tight loop with
/// per-input steps of 0 or 1, so the common cases (same shape, scalar, bias row) vectorise.
pub fn broadcast_zip<A: Copy + Sync, B: Copy + Sync, U: Copy + Send + 'static>(
    a: &[A], ash: &[usize], b: &[B], bsh: &[usize], out: &[usize], f: impl Fn(A, B) -> U + Sync,
) -> Vec<U> {
    let n: usize = out.iter().product();
    if ash == bsh {
        // Written once, never zeroed first (see `map_par`).
        assert!(a.len() == n && b.len() == n, "same-shape operands hold the output's {n} elements");
        let mut res: Vec<U> = super::arena::output(n);
        let dst = &mut res.spare_capacity_mut()[..n];
        let fill = |(d, (a, b)): (&mut [MaybeUninit<U>], (&[A], &[B]))| d.iter_mut().zip(a).zip(b).for_each(|((v, &x), &y)| _ = v.write(f(x, y)));
        if n >= PAR_MIN {
            let chunk = PAR_MIN / 4;
            dst.par_chunks_mut(chunk).zip(a.par_chunks(chunk).zip(b.par_chunks(chunk))).with_min_len(super::threads::min_len(1)).for_each(fill);
        } else {
            fill((dst, (&a[..n], &b[..n])));
        }
        // SAFETY: the chunks above cover all `n` elements (a and b hold `n` each).
        unsafe { res.set_len(n) };
        return res;
    }
    if b.len() == 1 {
        let y = b[0];
        return map_par(a, |&x| f(x, y));
    }
    if a.len() == 1 {
        let x = a[0];
        return map_par(b, |&y| f(x, y));
    }
    // Dims are merged where neither side's broadcasting changes between them ([N, C, H, W] by
    // [N, C, 1, 1] is [N*C, H*W] by [N*C, 1]): the inner rows are then as long as they can be
    // and the per-row index arithmetic runs over few dims.
    let r = out.len();
    let pad = |s: &[usize]| -> Vec<usize> { std::iter::repeat_n(1, r - s.len()).chain(s.iter().copied()).collect() };
    let (ap, bp) = (pad(ash), pad(bsh));
    let mut dims: Vec<(usize, bool, bool)> = Vec::with_capacity(r);
    for d in (0..r).filter(|&d| out[d] != 1) {
        let kind = (ap[d] == 1, bp[d] == 1);
        match dims.last_mut() {
            Some(last) if (last.1, last.2) == kind => last.0 *= out[d],
            _ => dims.push((out[d], kind.0, kind.1)),
        }
    }
    if dims.is_empty() {
        dims.push((1, false, false));
    }
    let shape: Vec<usize> = dims.iter().map(|d| d.0).collect();
    let side = |broadcast: fn(&(usize, bool, bool)) -> bool| -> Vec<usize> {
        let sizes: Vec<usize> = dims.iter().map(|d| if broadcast(d) { 1 } else { d.0 }).collect();
        strides_of(&sizes).iter().zip(&dims).map(|(&s, d)| if broadcast(d) { 0 } else { s }).collect()
    };
    let (ea, eb) = (side(|d| d.1), side(|d| d.2));
    let r = shape.len();
    let inner = shape[r - 1];
    let (ia, ib) = (ea[r - 1], eb[r - 1]);
    // Written once, never zeroed first (see `map_par`).
    let mut res: Vec<U> = super::arena::output(n);
    let outer_shape = &shape[..r - 1];
    let os = strides_of(outer_shape);
    let fill_row = |(row, dst): (usize, &mut [MaybeUninit<U>])| {
        let (mut oa, mut ob) = (0, 0);
        for d in 0..r - 1 {
            let idx = (row / os[d]) % outer_shape[d];
            oa += idx * ea[d];
            ob += idx * eb[d];
        }
        // Contiguous and row-broadcast inner loops get their own code so they vectorise.
        match (ia, ib) {
            (1, 1) => dst.iter_mut().zip(&a[oa..oa + inner]).zip(&b[ob..ob + inner]).for_each(|((v, &x), &y)| _ = v.write(f(x, y))),
            (1, 0) => {
                let y = b[ob];
                dst.iter_mut().zip(&a[oa..oa + inner]).for_each(|(v, &x)| _ = v.write(f(x, y)));
            }
            (0, 1) => {
                let x = a[oa];
                dst.iter_mut().zip(&b[ob..ob + inner]).for_each(|(v, &y)| _ = v.write(f(x, y)));
            }
            _ => dst.iter_mut().enumerate().for_each(|(j, v)| _ = v.write(f(a[oa + j * ia], b[ob + j * ib]))),
        }
    };
    let dst = &mut res.spare_capacity_mut()[..n];
    if n >= PAR_MIN {
        dst.par_chunks_mut(inner.max(1)).enumerate().with_min_len(super::threads::min_len(PAR_MIN / 4 / inner.max(1) + 1)).for_each(fill_row);
    } else {
        dst.chunks_mut(inner.max(1)).enumerate().for_each(fill_row);
    }
    // SAFETY: the rows above cover all `n` elements (`n` is a multiple of `inner`, or 0).
    unsafe { res.set_len(n) };
    res
}

// Each arm passes its own closure so broadcast_zip is monomorphised per op and the inner
// loop inlines (and vectorises) the arithmetic instead of calling through a fn pointer.
#[allow(unused_comparisons)]
macro_rules! arith {
    ($op:expr, $a:expr, $b:expr, $ash:expr, $bsh:expr, $out:expr, $t:ty, float) => {{
        match $op {
            BinaryOp::Add => broadcast_zip($a, $ash, $b, $bsh, $out, |x: $t, y: $t| x + y),
            BinaryOp::Sub => broadcast_zip($a, $ash, $b, $bsh, $out, |x: $t, y: $t| x - y),
            BinaryOp::Mul => broadcast_zip($a, $ash, $b, $bsh, $out, |x: $t, y: $t| x * y),
            BinaryOp::Div => broadcast_zip($a, $ash, $b, $bsh, $out, |x: $t, y: $t| x / y),
            BinaryOp::Pow => broadcast_zip($a, $ash, $b, $bsh, $out, |x: $t, y: $t| x.powf(y)),
            BinaryOp::Max => broadcast_zip($a, $ash, $b, $bsh, $out, |x: $t, y: $t| if x.is_nan() || y.is_nan() { <$t>::NAN } else { x.max(y) }),
            BinaryOp::Min => broadcast_zip($a, $ash, $b, $bsh, $out, |x: $t, y: $t| if x.is_nan() || y.is_nan() { <$t>::NAN } else { x.min(y) }),
            BinaryOp::Mod { fmod: true } => broadcast_zip($a, $ash, $b, $bsh, $out, |x: $t, y: $t| x % y),
            // Python-style: the result takes the divisor's sign.
            BinaryOp::Mod { fmod: false } => broadcast_zip($a, $ash, $b, $bsh, $out, |x: $t, y: $t| {
                let r = x % y;
                if r != 0.0 && ((r < 0.0) != (y < 0.0)) { r + y } else { r }
            }),
            _ => unreachable!(),
        }
    }};
    ($op:expr, $a:expr, $b:expr, $ash:expr, $bsh:expr, $out:expr, $t:ty, int) => {{
        let f: fn($t, $t) -> $t = match $op {
            BinaryOp::Add => |x, y| x.wrapping_add(y),
            BinaryOp::Sub => |x, y| x.wrapping_sub(y),
            BinaryOp::Mul => |x, y| x.wrapping_mul(y),
            BinaryOp::Div => |x, y| if y == 0 { 0 } else { x.wrapping_div(y) },
            BinaryOp::Pow => |x, y| if y < 0 { 0 } else { x.wrapping_pow(y as u32) },
            BinaryOp::Max => |x, y| x.max(y),
            BinaryOp::Min => |x, y| x.min(y),
            BinaryOp::Mod { fmod: true } => |x, y| if y == 0 { 0 } else { x.wrapping_rem(y) },
            BinaryOp::BitShift { left: true } => |x, y| if y < 0 { 0 } else { x.checked_shl(y as u32).unwrap_or(0) },
            // Shifting by the width or more (or by a negative amount) fills with the sign.
            BinaryOp::BitShift { left: false } => |x, y| if y < 0 { if x < 0 { !0 } else { 0 } } else { x.checked_shr(y as u32).unwrap_or(if x < 0 { !0 } else { 0 }) },
            BinaryOp::BitwiseAnd => |x, y| x & y,
            BinaryOp::BitwiseOr => |x, y| x | y,
            BinaryOp::BitwiseXor => |x, y| x ^ y,
            BinaryOp::Mod { fmod: false } => |x, y| if y == 0 { 0 } else { let r = x.wrapping_rem(y); if r != 0 && ((r < 0) != (y < 0)) { r.wrapping_add(y) } else { r } },
            _ => unreachable!(),
        };
        broadcast_zip($a, $ash, $b, $bsh, $out, f)
    }};
}

macro_rules! compare {
    ($op:expr, $a:expr, $b:expr, $ash:expr, $bsh:expr, $out:expr, $t:ty) => {{
        let f: fn($t, $t) -> bool = match $op {
            BinaryOp::Equal => |x, y| x == y,
            BinaryOp::Less => |x, y| x < y,
            BinaryOp::LessOrEqual => |x, y| x <= y,
            BinaryOp::Greater => |x, y| x > y,
            BinaryOp::GreaterOrEqual => |x, y| x >= y,
            _ => unreachable!(),
        };
        Data::Bool(broadcast_zip($a, $ash, $b, $bsh, $out, f))
    }};
}

/// `x ^ y` for a constant scalar y of 1, 2 or 3 (the cube in GPT-2's tanh GELU, squares
/// in norms) as multiplies, vectorised: `powf` is a call per element.
fn small_power(op: BinaryOp, a: &Tensor, b: &Tensor, out: &[usize]) -> Result<Option<Tensor>> {
    let (BinaryOp::Pow, Data::F32(x), Data::F32(y)) = (op, a.data(), b.data()) else { return Ok(None) };
    if y.len() != 1 || out.iter().product::<usize>() != x.len() {
        return Ok(None);
    }
    let v = match y[0] {
        1.0 => x.clone(),
        2.0 => map_par(x, |&v| v * v),
        3.0 => map_par(x, |&v| v * v * v),
        _ => return Ok(None),
    };
    Tensor::new(out.to_vec(), Data::F32(v)).map(Some)
}

#[allow(unused_comparisons)]
pub fn binary(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let Some(out) = broadcast_shapes(a.shape(), b.shape()) else { bail!("shapes {:?} and {:?} do not broadcast", a.shape(), b.shape()) };
    let (ash, bsh) = (a.shape(), b.shape());
    if op == BinaryOp::Pow && a.dtype() != b.dtype() {
        let bf = Tensor::new(b.shape().to_vec(), Data::F64(b.to_f64_vec()))?;
        let af = Tensor::new(a.shape().to_vec(), Data::F64(a.to_f64_vec()))?;
        return cast(&binary(op, &af, &bf)?, a.dtype());
    }
    if let Some(t) = small_power(op, a, b, &out)? {
        return Ok(t);
    }
    let bitwise = matches!(op, BinaryOp::BitShift { .. } | BinaryOp::BitwiseAnd | BinaryOp::BitwiseOr | BinaryOp::BitwiseXor);
    // Integer division by zero has no answer (ONNX leaves it undefined): refused, never 0.
    if matches!(op, BinaryOp::Div | BinaryOp::Mod { .. }) && !b.dtype().is_float() && b.dtype() != DType::Bool && b.to_i64_vec().is_ok_and(|v| v.contains(&0)) {
        bail!("integer {} by zero ({} divisor)", if op == BinaryOp::Div { "division" } else { "modulo" }, b.dtype());
    }
    if bitwise && (a.dtype().is_float() || a.dtype() == DType::Bool) {
        crate::unsupported!("{op:?} of {}", a.dtype());
    }
    let data = if op.is_comparison() {
        match (a.data(), b.data()) {
            (Data::F32(x), Data::F32(y)) => compare!(op, x, y, ash, bsh, &out, f32),
            (Data::F64(x), Data::F64(y)) => compare!(op, x, y, ash, bsh, &out, f64),
            (Data::F16(x), Data::F16(y)) => compare!(op, x, y, ash, bsh, &out, f16),
            (Data::BF16(x), Data::BF16(y)) => compare!(op, x, y, ash, bsh, &out, half::bf16),
            (Data::I64(x), Data::I64(y)) => compare!(op, x, y, ash, bsh, &out, i64),
            (Data::I32(x), Data::I32(y)) => compare!(op, x, y, ash, bsh, &out, i32),
            (Data::I8(x), Data::I8(y)) => compare!(op, x, y, ash, bsh, &out, i8),
            (Data::U8(x), Data::U8(y)) => compare!(op, x, y, ash, bsh, &out, u8),
            (Data::I16(x), Data::I16(y)) => compare!(op, x, y, ash, bsh, &out, i16),
            (Data::U16(x), Data::U16(y)) => compare!(op, x, y, ash, bsh, &out, u16),
            (Data::U32(x), Data::U32(y)) => compare!(op, x, y, ash, bsh, &out, u32),
            (Data::U64(x), Data::U64(y)) => compare!(op, x, y, ash, bsh, &out, u64),
            (Data::Bool(x), Data::Bool(y)) => compare!(op, x, y, ash, bsh, &out, bool),
            (x, y) => crate::unsupported!("{op:?} of {} and {}", x.dtype(), y.dtype()),
        }
    } else if op.is_logical() {
        let (Data::Bool(x), Data::Bool(y)) = (a.data(), b.data()) else { bail!("{op:?} needs bool inputs") };
        let f: fn(bool, bool) -> bool = match op {
            BinaryOp::And => |p, q| p && q,
            BinaryOp::Or => |p, q| p || q,
            _ => |p, q| p ^ q,
        };
        Data::Bool(broadcast_zip(x, ash, y, bsh, &out, f))
    } else {
        match (a.data(), b.data()) {
            (Data::F32(x), Data::F32(y)) => Data::F32(arith!(op, x, y, ash, bsh, &out, f32, float)),
            (Data::F64(x), Data::F64(y)) => Data::F64(arith!(op, x, y, ash, bsh, &out, f64, float)),
            (Data::F16(x), Data::F16(y)) => {
                let (x, y): (Vec<f32>, Vec<f32>) = (x.iter().map(|v| v.to_f32()).collect(), y.iter().map(|v| v.to_f32()).collect());
                Data::F16(arith!(op, &x, &y, ash, bsh, &out, f32, float).into_iter().map(f16::from_f32).collect())
            }
            (Data::BF16(x), Data::BF16(y)) => {
                let (x, y): (Vec<f32>, Vec<f32>) = (x.iter().map(|v| v.to_f32()).collect(), y.iter().map(|v| v.to_f32()).collect());
                Data::BF16(arith!(op, &x, &y, ash, bsh, &out, f32, float).into_iter().map(half::bf16::from_f32).collect())
            }
            (Data::I64(x), Data::I64(y)) => Data::I64(arith!(op, x, y, ash, bsh, &out, i64, int)),
            (Data::I32(x), Data::I32(y)) => Data::I32(arith!(op, x, y, ash, bsh, &out, i32, int)),
            (Data::I8(x), Data::I8(y)) => Data::I8(arith!(op, x, y, ash, bsh, &out, i8, int)),
            (Data::U8(x), Data::U8(y)) => Data::U8(arith!(op, x, y, ash, bsh, &out, u8, int)),
            (Data::I16(x), Data::I16(y)) => Data::I16(arith!(op, x, y, ash, bsh, &out, i16, int)),
            (Data::U16(x), Data::U16(y)) => Data::U16(arith!(op, x, y, ash, bsh, &out, u16, int)),
            (Data::U32(x), Data::U32(y)) => Data::U32(arith!(op, x, y, ash, bsh, &out, u32, int)),
            (Data::U64(x), Data::U64(y)) => Data::U64(arith!(op, x, y, ash, bsh, &out, u64, int)),
            (x, y) => crate::unsupported!("{op:?} of {} and {}", x.dtype(), y.dtype()),
        }
    };
    Tensor::new(out, data)
}

/// Where(cond, x, y) with three-way broadcasting.
pub fn where_(c: &Tensor, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let Data::Bool(cv) = c.data() else { bail!("Where condition must be bool, got {}", c.dtype()) };
    let Some(s1) = broadcast_shapes(c.shape(), x.shape()) else { bail!("Where shapes do not broadcast") };
    let Some(out) = broadcast_shapes(&s1, y.shape()) else { bail!("Where shapes do not broadcast") };
    // Index map of x's elements over (cond, x): then a second zip picks against y.
    let idx: Vec<u32> = (0..x.numel() as u32).collect();
    let picked = broadcast_zip(cv, c.shape(), &idx, x.shape(), &s1, |c, i| if c { i as i64 } else { -1 });
    let yidx: Vec<u32> = (0..y.numel() as u32).collect();
    let sel = broadcast_zip(&picked, &s1, &yidx, y.shape(), &out, |p, j| if p >= 0 { p } else { -(j as i64) - 2 });
    let data = match (x.data(), y.data()) {
        (a, b) if a.dtype() != b.dtype() => bail!("Where branches differ in dtype: {} vs {}", a.dtype(), b.dtype()),
        (a, b) => gather_two(a, b, &sel),
    };
    Tensor::new(out, data)
}

fn gather_two(a: &Data, b: &Data, sel: &[i64]) -> Data {
    macro_rules! pick {
        ($x:expr, $y:expr) => {
            {
                let mut out = super::arena::output(sel.len());
                out.extend(sel.iter().map(|&s| if s >= 0 { $x[s as usize] } else { $y[(-s - 2) as usize] }));
                out
            }
        };
    }
    match (a, b) {
        (Data::F32(x), Data::F32(y)) => Data::F32(pick!(x, y)),
        (Data::F16(x), Data::F16(y)) => Data::F16(pick!(x, y)),
        (Data::BF16(x), Data::BF16(y)) => Data::BF16(pick!(x, y)),
        (Data::F64(x), Data::F64(y)) => Data::F64(pick!(x, y)),
        (Data::I64(x), Data::I64(y)) => Data::I64(pick!(x, y)),
        (Data::I32(x), Data::I32(y)) => Data::I32(pick!(x, y)),
        (Data::I8(x), Data::I8(y)) => Data::I8(pick!(x, y)),
        (Data::U8(x), Data::U8(y)) => Data::U8(pick!(x, y)),
        (Data::I16(x), Data::I16(y)) => Data::I16(pick!(x, y)),
        (Data::U16(x), Data::U16(y)) => Data::U16(pick!(x, y)),
        (Data::U32(x), Data::U32(y)) => Data::U32(pick!(x, y)),
        (Data::U64(x), Data::U64(y)) => Data::U64(pick!(x, y)),
        (Data::Bool(x), Data::Bool(y)) => Data::Bool(pick!(x, y)),
        _ => unreachable!(),
    }
}

pub fn clip(x: &Tensor, min: Option<f64>, max: Option<f64>) -> Result<Tensor> {
    let data = match x.data() {
        Data::F32(v) => {
            let (lo, hi) = (min.map(|m| m as f32).unwrap_or(f32::NEG_INFINITY), max.map(|m| m as f32).unwrap_or(f32::INFINITY));
            Data::F32(map_par(v, |&x| if x.is_nan() { x } else { x.max(lo).min(hi) }))
        }
        d => {
            let v = d.to_f64_vec();
            let (lo, hi) = (min.unwrap_or(f64::NEG_INFINITY), max.unwrap_or(f64::INFINITY));
            return cast(&Tensor::new(x.shape().to_vec(), Data::F64(v.iter().map(|x| x.max(lo).min(hi)).collect()))?, d.dtype());
        }
    };
    Tensor::new(x.shape().to_vec(), data)
}

/// Cast between any two supported dtypes (float -> int truncates toward zero, as ONNX does).
pub fn cast(x: &Tensor, to: DType) -> Result<Tensor> {
    if x.dtype() == to {
        return Ok(x.clone());
    }
    let data = match (x.data(), to) {
        (Data::F32(v), DType::F16) => Data::F16(v.iter().map(|&x| f16::from_f32(x)).collect()),
        (Data::F16(v), DType::F32) => Data::F32(v.iter().map(|x| x.to_f32()).collect()),
        (Data::I64(v), DType::F32) => Data::F32(v.iter().map(|&x| x as f32).collect()),
        (Data::I64(v), DType::I32) => Data::I32(v.iter().map(|&x| x as i32).collect()),
        (Data::I32(v), DType::I64) => Data::I64(v.iter().map(|&x| x as i64).collect()),
        (Data::Bool(v), DType::F32) => Data::F32(v.iter().map(|&x| x as u8 as f32).collect()),
        (Data::I64(v), DType::Bool) => Data::Bool(v.iter().map(|&x| x != 0).collect()),
        (d, to) => {
            let v = d.to_f64_vec();
            match to {
                DType::F32 => Data::F32(v.iter().map(|&x| x as f32).collect()),
                DType::F16 => Data::F16(v.iter().map(|&x| f16::from_f64(x)).collect()),
                DType::BF16 => Data::BF16(v.iter().map(|&x| half::bf16::from_f64(x)).collect()),
                DType::F64 => Data::F64(v),
                DType::I64 => Data::I64(v.iter().map(|&x| x as i64).collect()),
                DType::I32 => Data::I32(v.iter().map(|&x| x as i64 as i32).collect()),
                DType::I8 => Data::I8(v.iter().map(|&x| x as i64 as i8).collect()),
                DType::U8 => Data::U8(v.iter().map(|&x| x as i64 as u8).collect()),
                DType::I16 => Data::I16(v.iter().map(|&x| x as i64 as i16).collect()),
                DType::U16 => Data::U16(v.iter().map(|&x| x as i64 as u16).collect()),
                DType::U32 => Data::U32(v.iter().map(|&x| x as i64 as u32).collect()),
                DType::U64 => Data::U64(v.iter().map(|&x| if x >= 9.2e18 { x as u64 } else { x as i64 as u64 }).collect()),
                DType::Bool => Data::Bool(v.iter().map(|&x| x != 0.0).collect()),
            }
        }
    };
    Tensor::new(x.shape().to_vec(), data)
}

/// PRelu: `x < 0 ? slope * x : x`, slope broadcast against x.
pub fn prelu(x: &Tensor, slope: &Tensor) -> Result<Tensor> {
    let Some(out) = broadcast_shapes(x.shape(), slope.shape()) else { bail!("slope {:?} does not broadcast to {:?}", slope.shape(), x.shape()) };
    let data = match (x.data(), slope.data()) {
        (Data::F32(a), Data::F32(b)) => Data::F32(broadcast_zip(a, x.shape(), b, slope.shape(), &out, |v, s| if v < 0.0 { s * v } else { v })),
        _ => {
            let (a, b) = (x.to_f64_vec(), slope.to_f64_vec());
            let r = broadcast_zip(&a, x.shape(), &b, slope.shape(), &out, |v, s| if v < 0.0 { s * v } else { v });
            return cast(&Tensor::new(out, Data::F64(r))?, x.dtype());
        }
    };
    Tensor::new(out, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Broadcasting against the definition (every output index mapped to each side's index), on
    /// seeded random shapes: ranks 0-5, sides of different rank, 1s anywhere, sizes past the
    /// parallel threshold.
    #[test]
    fn broadcasting_matches_the_definition() {
        let mut rng = crate::test_values::Rng::new(4);
        let mut next = move |n: u32| rng.below(n as usize) as u32;
        for case in 0..300 {
            let rank = next(6) as usize;
            let out: Vec<usize> = (0..rank).map(|_| [1, 2, 3, 5, 8, 33][next(6) as usize]).collect();
            let side = |next: &mut dyn FnMut(u32) -> u32| -> Vec<usize> {
                let drop = next(rank as u32 + 1) as usize;
                out[drop..].iter().map(|&d| if next(3) == 0 { 1 } else { d }).collect()
            };
            let (ash, bsh) = (side(&mut next), side(&mut next));
            let Some(got_shape) = broadcast_shapes(&ash, &bsh) else { continue };
            let a: Vec<f32> = (0..ash.iter().product::<usize>()).map(|i| i as f32).collect();
            let b: Vec<f32> = (0..bsh.iter().product::<usize>()).map(|i| (i * 1000) as f32).collect();
            let got = broadcast_zip(&a, &ash, &b, &bsh, &got_shape, |x, y| x + y);
            let r = got_shape.len();
            let index = |sh: &[usize], o: &[usize]| -> usize {
                let off = r - sh.len();
                sh.iter().enumerate().fold(0, |acc, (d, &n)| acc * n + if n == 1 { 0 } else { o[off + d] })
            };
            for (i, &g) in got.iter().enumerate() {
                let mut o = vec![0usize; r];
                let mut rem = i;
                for d in (0..r).rev() {
                    o[d] = rem % got_shape[d];
                    rem /= got_shape[d];
                }
                let want = a[index(&ash, &o)] + b[index(&bsh, &o)];
                assert_eq!(g, want, "case {case}: {ash:?} + {bsh:?} -> {got_shape:?} at {o:?}");
            }
        }
        // Past the parallel threshold: a feature map scaled per channel.
        let (ash, bsh) = ([2usize, 64, 30, 30], [2usize, 64, 1, 1]);
        let a: Vec<f32> = (0..ash.iter().product::<usize>()).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..128).map(|i| i as f32).collect();
        let got = broadcast_zip(&a, &ash, &b, &bsh, &ash, |x, y| x * y);
        assert!(got.iter().enumerate().all(|(i, &g)| g == a[i] * b[i / 900]));
    }
}
