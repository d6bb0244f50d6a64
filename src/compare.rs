//! Numeric comparison against reference outputs, shared by tests, `run --check` and conformance.

use crate::tensor::Tensor;

/// Element-wise tolerance: `|a - b| <= abs + rel * |b|`. Integers and bools compare exactly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub abs: f64,
    pub rel: f64,
}

impl Tolerance {
    /// The ONNX backend test runner's tolerance (rtol 1e-3, atol 1e-7).
    pub const ONNX: Tolerance = Tolerance { abs: 1e-7, rel: 1e-3 };
    pub const EXACT: Tolerance = Tolerance { abs: 0.0, rel: 0.0 };

    /// The tolerance to judge a `dtype` output by: exact for integers and bools, and never
    /// tighter than one unit in the last place for bfloat16 (2^-7; a bound below the type's
    /// own resolution would fail any implementation that rounds at a different step).
    pub fn for_dtype(self, dtype: crate::tensor::DType) -> Tolerance {
        use crate::tensor::DType;
        match dtype {
            DType::BF16 => Tolerance { abs: self.abs, rel: self.rel.max(1.0 / 128.0) },
            d if d.is_float() => self,
            _ => Tolerance::EXACT,
        }
    }
}

/// Whole-tensor error figures of an output against its reference.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// ‖out − ref‖₂ / ‖ref‖₂ (or ‖out‖₂ when the reference is all zeros).
    pub rel_l2: f64,
    pub max_abs: f64,
    /// max |ref|, the scale `max_abs` is judged against.
    pub max_ref: f64,
    /// Elements outside the element-wise tolerance.
    pub mismatches: usize,
    pub shape_ok: bool,
    pub dtype_ok: bool,
}

impl Report {
    /// The model-level acceptance check: relative L2 within `rel_l2` and max abs error within
    /// `max_frac` of max |ref|. Scale-free, so an all-zero output fails against a non-zero reference.
    pub fn model_ok(&self, rel_l2: f64, max_frac: f64) -> bool {
        self.shape_ok && self.dtype_ok && self.rel_l2 <= rel_l2 && self.max_abs <= max_frac * self.max_ref
    }
    /// The element-wise check.
    pub fn elementwise_ok(&self) -> bool {
        self.shape_ok && self.dtype_ok && self.mismatches == 0
    }
}

/// Compares `out` with `reference`; NaNs match NaNs, infinities must match exactly.
pub fn compare(out: &Tensor, reference: &Tensor, tol: Tolerance) -> Report {
    let shape_ok = out.shape() == reference.shape();
    let dtype_ok = out.dtype() == reference.dtype();
    let tol = tol.for_dtype(reference.dtype());
    if !shape_ok || out.numel() != reference.numel() {
        return Report { rel_l2: f64::INFINITY, max_abs: f64::INFINITY, max_ref: 0.0, mismatches: reference.numel(), shape_ok: false, dtype_ok };
    }
    let (a, b) = (out.to_f64_vec(), reference.to_f64_vec());
    let (mut diff2, mut ref2, mut max_abs, mut max_ref, mut mismatches) = (0.0, 0.0, 0.0f64, 0.0f64, 0);
    for (&x, &y) in a.iter().zip(&b) {
        let same_special = (x.is_nan() && y.is_nan()) || (x.is_infinite() && x == y);
        let d = if same_special { 0.0 } else { (x - y).abs() };
        if !same_special && !(d <= tol.abs + tol.rel * y.abs()) {
            mismatches += 1;
        }
        let d = if d.is_nan() { f64::INFINITY } else { d };
        if y.is_finite() {
            ref2 += y * y;
            max_ref = max_ref.max(y.abs());
        }
        diff2 += if d.is_finite() { d * d } else if same_special { 0.0 } else { f64::INFINITY };
        max_abs = max_abs.max(d);
    }
    let rel_l2 = if ref2 > 0.0 { (diff2 / ref2).sqrt() } else { diff2.sqrt() };
    Report { rel_l2, max_abs, max_ref, mismatches, shape_ok, dtype_ok }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_output_fails_model_check() {
        let r = Tensor::from_f32(&[3], vec![1.0, -2.0, 0.5]).unwrap();
        let z = Tensor::from_f32(&[3], vec![0.0; 3]).unwrap();
        assert!(!compare(&z, &r, Tolerance::ONNX).model_ok(1e-4, 1e-3));
        assert!(compare(&r, &r, Tolerance::ONNX).model_ok(1e-4, 1e-3));
    }

    #[test]
    fn integers_compare_exactly() {
        let a = Tensor::from_i64(&[2], vec![1, 2]).unwrap();
        let b = Tensor::from_i64(&[2], vec![1, 3]).unwrap();
        assert_eq!(compare(&a, &b, Tolerance { abs: 10.0, rel: 1.0 }).mismatches, 1);
    }
}
