//! Matrix products: the single-precision GEMM entry point (the `gemm` crate, multi-threaded on
//! rayon) and the Gemm / MatMul operators built on it.

use crate::error::Result;
use crate::graph::infer::matmul_shape;
use crate::graph::Activation;
use crate::tensor::{broadcast_shapes, strides_of, Tensor};
use crate::bail;
use rayon::prelude::*;

/// A strided matrix view: element (i, j) is at `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    pub fn row_major(data: &'a [f32], cols: usize) -> Mat<'a> {
        Mat { data, rs: cols, cs: 1 }
    }
    pub fn transposed(self) -> Mat<'a> {
        Mat { data: self.data, rs: self.cs, cs: self.rs }
    }
}

/// A destination shared by tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
pub(super) struct SharedOut(pub *mut f32);
// SAFETY: users only let tasks write disjoint parts (column or row blocks) through it.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer (a method, so closures capture the whole `Send` wrapper, not its field).
    pub fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// `c (m x n, row-major) = (accumulate ? c : 0) + scale * a (m x k) * b (k x n)`, on all
/// threads when the product is big enough to pay for them.
pub fn sgemm(m: usize, n: usize, k: usize, a: Mat, b: Mat, c: &mut [f32], accumulate: bool, scale: f32) {
    assert!(c.len() >= m * n, "sgemm output too small");
    let threads = super::threads::width();
    if m < 16 && n >= 64 * threads && m * n * k >= 1 << 19 && threads > 1 {
        // A thin product (a classifier at batch 1) is bound by reading B, and one core does not
        // saturate memory: each thread streams its own columns of B.
        let cols = n.div_ceil(threads);
        let out = SharedOut(c.as_mut_ptr());
        (0..threads).into_par_iter().for_each(|t| {
            let (n0, n1) = (t * cols, ((t + 1) * cols).min(n));
            if n0 < n1 {
                let bt = Mat { data: &b.data[n0 * b.cs..], ..b };
                // SAFETY: columns n0..n1 of every row of `c` belong to this task alone.
                unsafe { sgemm_into(m, n1 - n0, k, a, bt, out.ptr().add(n0), n, accumulate, scale, false) };
            }
        });
        return;
    }
    // Below ~4M MACs a second thread costs more in wake-up than it saves.
    let par = m * n * k >= 1 << 22;
    // SAFETY: `c` is exclusively borrowed with room for m*n row-major elements.
    unsafe { sgemm_into(m, n, k, a, b, c.as_mut_ptr(), n, accumulate, scale, par) }
}

/// [`sgemm`] into a raw destination with row stride `ldc`, so that parallel tasks can each write
/// a disjoint block of columns of one output.
///
/// Without `accumulate` the destination is only written, so it may be uninitialised.
///
/// # Safety
/// `c` must be valid for writes of `(m - 1) * ldc + n` elements, and no other thread may access
/// the `m x n` block it describes during the call.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_into(m: usize, n: usize, k: usize, a: Mat, b: Mat, c: *mut f32, ldc: usize, accumulate: bool, scale: f32, par: bool) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                // SAFETY: row i of the block is inside the region the caller vouches for (which
                // may be uninitialised, hence no slice).
                unsafe { std::ptr::write_bytes(c.add(i * ldc), 0, n) };
            }
        }
        return;
    }
    // Bounds the raw-pointer call below: the furthest element each view touches is in range.
    assert!((m - 1) * a.rs + (k - 1) * a.cs < a.data.len(), "sgemm lhs out of range");
    assert!((k - 1) * b.rs + (n - 1) * b.cs < b.data.len(), "sgemm rhs out of range");
    let threads = super::threads::width();
    let par = if par && threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: the asserts above keep every index the input views describe inside their slices;
    // the caller vouches for the destination.
    unsafe {
        gemm::gemm(
            m, n, k,
            c, 1, ldc as isize,
            accumulate,
            a.data.as_ptr(), a.cs as isize, a.rs as isize,
            b.data.as_ptr(), b.cs as isize, b.rs as isize,
            1.0, scale,
            false, false, false,
            par,
        );
    }
}

/// ONNX Gemm: `Y = alpha * A' * B' + beta * C`, then an optional fused activation.
pub fn gemm_op(a: &Tensor, b: &Tensor, c: Option<&Tensor>, alpha: f32, beta: f32, ta: bool, tb: bool, act: Option<Activation>) -> Result<Tensor> {
    let (av, bv) = (a.as_f32()?, b.as_f32()?);
    let (m, k) = if ta { (a.shape()[1], a.shape()[0]) } else { (a.shape()[0], a.shape()[1]) };
    let n = if tb { b.shape()[0] } else { b.shape()[1] };
    let mut am = Mat::row_major(av, a.shape()[1]);
    if ta {
        am = am.transposed();
    }
    let mut bm = Mat::row_major(bv, b.shape()[1]);
    if tb {
        bm = bm.transposed();
    }
    if let Some(y) = few_rows_by_weights(av, bv, c, (m, n, k), (alpha, beta, ta, tb), act)? {
        return Tensor::from_f32(&[m, n], y);
    }
    let mut y = super::arena::output_zeroed(m * n);
    let accumulate = match c {
        Some(c) if beta != 0.0 => {
            let cv = c.as_f32()?;
            let cs = c.shape();
            let (rs, cs_) = match cs.len() {
                0 => (0, 0),
                1 => (0, 1),
                _ => (if cs[0] == 1 { 0 } else { cs[1] }, if cs[1] == 1 { 0 } else { 1 }),
            };
            let cs_ = if cs.len() == 1 && cs[0] == 1 { 0 } else { cs_ };
            for i in 0..m {
                for j in 0..n {
                    y[i * n + j] = beta * cv[i * rs + j * cs_];
                }
            }
            true
        }
        _ => false,
    };
    sgemm(m, n, k, am, bm, &mut y, accumulate, alpha);
    if let Some(act) = act {
        y.iter_mut().for_each(|v| *v = act.apply(*v));
    }
    Tensor::from_f32(&[m, n], y)
}

/// The most rows (a classifier's batch) [`few_rows_by_weights`] takes.
const FEW_ROWS: usize = 16;

/// A classifier head, `Y = X * W' + bias` with W as `[out, in]` (PyTorch's Linear) and a batch of
/// up to [`FEW_ROWS`] rows, as the convolution GEMM computes it: `Y' = W * X'`, W read in place
/// as the row operand and the batch as the few columns, which the dot-product kernel serves
/// without padding, the bias and activation fused; then Y' transposed (small). The general GEMM
/// packs W, the large operand, for a handful of rows. `None` where the form does not apply.
fn few_rows_by_weights(x: &[f32], w: &[f32], c: Option<&Tensor>, (m, n, k): (usize, usize, usize), (alpha, beta, ta, tb): (f32, f32, bool, bool), act: Option<Activation>) -> Result<Option<Vec<f32>>> {
    let bias = match c {
        None => None,
        Some(_) if beta == 0.0 => None,
        Some(c) if beta == 1.0 && c.shape().last() == Some(&n) && c.shape().iter().product::<usize>() == n => Some(c.as_f32()?),
        Some(_) => return Ok(None),
    };
    if ta || !tb || alpha != 1.0 || m == 0 || m > FEW_ROWS || n == 0 || k == 0 {
        return Ok(None);
    }
    let epi = super::epilogue::Epilogue::new(bias, act);
    let mut yt = vec![0f32; n * m];
    let out = SharedOut(yt.as_mut_ptr());
    // Output features split across threads when there is enough work to share.
    let tasks = if n * m * k >= 1 << 20 { super::threads::width().min(n.div_ceil(64)) } else { 1 };
    let rows = n.div_ceil(tasks).div_ceil(8) * 8;
    let block = |t: usize| {
        let (r0, r1) = (t * rows, ((t + 1) * rows).min(n));
        if r0 < r1 {
            let a = Mat::row_major(&w[r0 * k..r1 * k], k);
            let b = super::fused_gemm::Rhs::Matrix(Mat { data: x, rs: 1, cs: k });
            // SAFETY: rows [r0, r1) of the n x m scratch belong to this task alone.
            unsafe { super::fused_gemm::gemm_epilogue(r1 - r0, m, k, a, b, out.ptr().add(r0 * m), m, &epi, r0) };
        }
    };
    if tasks == 1 {
        block(0);
    } else {
        (0..tasks).into_par_iter().for_each(block);
    }
    let mut y = super::arena::output_zeroed(m * n);
    for (j, col) in yt.chunks(m).enumerate() {
        for (i, &v) in col.iter().enumerate() {
            y[i * n + j] = v;
        }
    }
    Ok(Some(y))
}

/// Numpy matmul with batch broadcasting, f32.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out_shape = matmul_shape(a.shape(), b.shape())?;
    let (av, bv) = (a.as_f32()?, b.as_f32()?);
    let a2: Vec<usize> = if a.rank() == 1 { vec![1, a.shape()[0]] } else { a.shape().to_vec() };
    let b2: Vec<usize> = if b.rank() == 1 { vec![b.shape()[0], 1] } else { b.shape().to_vec() };
    let (m, k, n) = (a2[a2.len() - 2], a2[a2.len() - 1], b2[b2.len() - 1]);
    let (abatch, bbatch) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
    let mut y = super::arena::output_zeroed(out_shape.iter().product());
    if bbatch.iter().product::<usize>() == 1 {
        // The whole (broadcast) batch of A against one B: a single tall GEMM.
        let rows = av.len() / k.max(1);
        if rows * n == y.len() {
            sgemm(rows, n, k, Mat::row_major(av, k), Mat::row_major(bv, n), &mut y, false, 1.0);
            return Tensor::from_f32(&out_shape, y);
        }
    }
    let Some(batch) = broadcast_shapes(abatch, bbatch) else { bail!("MatMul batch dims {abatch:?} and {bbatch:?} do not broadcast") };
    let nb: usize = batch.iter().product();
    let (sa, sb) = (strides_of(abatch), strides_of(bbatch));
    let bs = strides_of(&batch);
    let product = |bi: usize, yb: &mut [f32]| {
        let (mut ia, mut ib) = (0, 0);
        for d in 0..batch.len() {
            let idx = (bi / bs[d]) % batch[d];
            let da = d as isize - (batch.len() - abatch.len()) as isize;
            if da >= 0 && abatch[da as usize] != 1 {
                ia += idx * sa[da as usize];
            }
            let db = d as isize - (batch.len() - bbatch.len()) as isize;
            if db >= 0 && bbatch[db as usize] != 1 {
                ib += idx * sb[db as usize];
            }
        }
        let am = Mat::row_major(&av[ia * m * k..(ia + 1) * m * k], k);
        let bm = Mat::row_major(&bv[ib * k * n..(ib + 1) * k * n], n);
        sgemm(m, n, k, am, bm, yb, false, 1.0);
    };
    if m * n == 0 {
    } else if nb > 1 && m * n * k < 1 << 20 {
        // Many small products (attention heads): one per task; sgemm would not split them.
        y.par_chunks_mut(m * n).with_min_len(super::threads::min_len(((1 << 16) / (m * n * k).max(1)).max(1))).enumerate().for_each(|(bi, yb)| product(bi, yb));
    } else {
        y.chunks_mut(m * n).enumerate().for_each(|(bi, yb)| product(bi, yb));
    }
    Tensor::from_f32(&out_shape, y)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classifier head with few rows (the weights-as-rows form) against the definition, with
    /// a bias, a fused activation, ragged sizes and one large enough to split across threads;
    /// and the shapes the form leaves to the general GEMM.
    #[test]
    fn few_rows_match_reference() {
        let values = |len: usize, seed: u32| crate::test_values::values(len, seed, -0.5, 0.5);
        for (m, n, k, act) in [(1, 1, 1, None), (1, 1000, 37, None), (5, 13, 300, Some(Activation::Relu)), (8, 1000, 160, Some(Activation::HardSwish)), (16, 70, 520, None)] {
            let (x, w, b) = (values(m * k, 1), values(n * k, 2), values(n, 3));
            let xt = Tensor::from_f32(&[m, k], x.clone()).unwrap();
            let wt = Tensor::from_f32(&[n, k], w.clone()).unwrap();
            let bt = Tensor::from_f32(&[1, n], b.clone()).unwrap();
            assert!(few_rows_by_weights(&x, &w, Some(&bt), (m, n, k), (1.0, 1.0, false, true), act).unwrap().is_some());
            let got = gemm_op(&xt, &wt, Some(&bt), 1.0, 1.0, false, true, act).unwrap();
            for (idx, &g) in got.as_f32().unwrap().iter().enumerate() {
                let (i, j) = (idx / n, idx % n);
                let dot = (0..k).map(|p| x[i * k + p] as f64 * w[j * k + p] as f64).sum::<f64>() as f32 + b[j];
                let want = act.map_or(dot, |a| a.apply(dot));
                assert!((g - want).abs() <= 1e-5 * (1.0 + want.abs()), "{m}x{n}x{k} at ({i},{j}): {g} vs {want}");
            }
        }
        let (x, w) = (values(40, 1), values(40, 2));
        let c = Tensor::from_f32(&[4, 1], values(4, 3)).unwrap();
        for (c, params) in [(None, (2.0, 1.0, false, true)), (None, (1.0, 1.0, false, false)), (Some(&c), (1.0, 1.0, false, true)), (None, (1.0, 1.0, true, true))] {
            assert!(few_rows_by_weights(&x, &w, c, (4, 10, 4), params, None).unwrap().is_none());
        }
    }
}
