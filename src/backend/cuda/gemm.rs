//! The plan's Matmul launches as cuBLAS calls. A Matmul is row-major, C[b] (m x n) = alpha *
//! A[b] (m x k) * B[b] (k x n), each operand with a row and a column stride; cuBLAS is
//! column-major, so the call computes C^T = B^T * A^T, where a row-major matrix is read as its
//! transpose for free. Bias, beta and the activation run after it in the `bias_act_f32` kernel.

use cudarc::cublas::sys::cublasOperation_t as Op;

/// One strided-batched GEMM in cuBLAS's terms (column-major; `first` and `second` are the
/// plan's B and A buffers).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemmSpec {
    pub op_first: Op,
    pub op_second: Op,
    pub m: i32,
    pub n: i32,
    pub k: i32,
    pub ld_first: i32,
    pub ld_second: i32,
    pub ldc: i32,
    pub stride_first: i64,
    pub stride_second: i64,
    pub stride_c: i64,
    /// Where C[0] starts in its buffer, in elements.
    pub c_offset: usize,
    pub batch: i32,
    pub alpha: f32,
}

/// How a row-major operand with strides (`rs`, `cs`) and `rows` x `cols` is passed so that
/// cuBLAS sees its transpose: `(op, ld)`, or `None` if neither stride is unit (a general view).
fn transposed_view(rows: u32, cols: u32, rs: u32, cs: u32) -> Option<(Op, i32)> {
    // cs == 1: element (r, c) at c + r*rs is the column-major (cols x rows) transpose itself.
    if cs == 1 && (rs >= cols || rows == 1) {
        return Some((Op::CUBLAS_OP_N, rs.max(cols).max(1) as i32));
    }
    // rs == 1: element (r, c) at r + c*cs is the column-major matrix; cuBLAS transposes it.
    if rs == 1 && (cs >= rows || cols == 1) {
        return Some((Op::CUBLAS_OP_T, cs.max(rows).max(1) as i32));
    }
    None
}

/// The cuBLAS form of a Matmul launch (parameters as in shaders/cuda/nn.cu's `matmul_f32`,
/// `batch` from its grid), or `None` where the kernel must run it (non-unit strides on both
/// axes, empty or oversized dims).
pub fn gemm_spec(p: &[u32], batch: u32) -> Option<GemmSpec> {
    let (m, n, k) = (p[0], p[1], p[2]);
    let limit = i32::MAX as u64;
    if m == 0 || n == 0 || k == 0 || batch == 0 || [m, n, k, batch].iter().any(|&d| d as u64 > limit) || (m as u64) * (n as u64) > limit {
        return None;
    }
    let (op_first, ld_first) = transposed_view(k, n, p[7], p[8])?;
    let (op_second, ld_second) = transposed_view(m, k, p[4], p[5])?;
    Some(GemmSpec {
        op_first,
        op_second,
        m: n as i32,
        n: m as i32,
        k: k as i32,
        ld_first,
        ld_second,
        ldc: n as i32,
        stride_first: p[6] as i64,
        stride_second: p[3] as i64,
        stride_c: p[18] as i64,
        c_offset: p[17] as usize,
        batch: batch as i32,
        alpha: f32::from_bits(p[12]),
    })
}

/// Parameters of `bias_act_f32` for a Matmul launch, or `None` if it has neither bias nor
/// activation: [total, n, m*n, has_bias, bias_rs, bias_cs, beta, act, lo, hi, c_base, c_batch].
pub fn epilogue_params(p: &[u32], batch: u32) -> Option<Vec<u32>> {
    let (m, n) = (p[0], p[1]);
    if p[9] == 0 && p[14] == 0 {
        return None;
    }
    Some(vec![batch * m * n, n, m * n, p[9], p[10], p[11], p[13], p[14], p[15], p[16], p[17], p[18]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Column-major GEMM as cuBLAS defines it, on a spec, for checking the mapping.
    fn reference_cublas(s: &GemmSpec, first: &[f32], second: &[f32], c: &mut [f32]) {
        for z in 0..s.batch as usize {
            for j in 0..s.n as usize {
                for i in 0..s.m as usize {
                    let mut acc = 0.0f32;
                    for q in 0..s.k as usize {
                        let x = match s.op_first {
                            Op::CUBLAS_OP_N => first[z * s.stride_first as usize + i + q * s.ld_first as usize],
                            _ => first[z * s.stride_first as usize + q + i * s.ld_first as usize],
                        };
                        let y = match s.op_second {
                            Op::CUBLAS_OP_N => second[z * s.stride_second as usize + q + j * s.ld_second as usize],
                            _ => second[z * s.stride_second as usize + j + q * s.ld_second as usize],
                        };
                        acc += x * y;
                    }
                    c[z * s.stride_c as usize + i + j * s.ldc as usize] = s.alpha * acc;
                }
            }
        }
    }

    #[test]
    fn every_unit_stride_layout_maps_to_the_row_major_product() {
        let (m, n, k, batch) = (3u32, 5u32, 4u32, 2u32);
        let a: Vec<f32> = (0..(m * k * batch)).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..(k * n * batch)).map(|i| (i as f32 * 0.71).cos()).collect();
        // Layouts: A plain or transposed, B plain, transposed or batch-broadcast.
        for (a_rs, a_cs) in [(k, 1), (1, m)] {
            for (b_rs, b_cs, b_batch) in [(n, 1, k * n), (1, k, k * n), (n, 1, 0)] {
                let p = [m, n, k, m * k, a_rs, a_cs, b_batch, b_rs, b_cs, 0, 0, 0, 2f32.to_bits(), 0, 0, 0, 0, 0, m * n];
                let s = gemm_spec(&p, batch).expect("unit strides map to cuBLAS");
                let mut c = vec![0.0; (m * n * batch) as usize];
                reference_cublas(&s, &b, &a, &mut c);
                for z in 0..batch {
                    for i in 0..m {
                        for j in 0..n {
                            let want: f32 = (0..k).map(|q| a[(z * m * k + i * a_rs + q * a_cs) as usize] * b[(z * b_batch + q * b_rs + j * b_cs) as usize]).sum::<f32>() * 2.0;
                            let got = c[(z * m * n + i * n + j) as usize];
                            assert!((got - want).abs() < 1e-5, "A ({a_rs},{a_cs}) B ({b_rs},{b_cs},{b_batch}) at {z},{i},{j}: {got} vs {want}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn general_views_and_empty_products_stay_on_the_kernel() {
        let p = [3, 5, 4, 0, 8, 2, 0, 5, 1, 0, 0, 0, 1f32.to_bits(), 0, 0, 0, 0, 0, 15];
        assert_eq!(gemm_spec(&p, 1), None);
        let empty = [3, 0, 4, 0, 4, 1, 0, 5, 1, 0, 0, 0, 1f32.to_bits(), 0, 0, 0, 0, 0, 0];
        assert_eq!(gemm_spec(&empty, 1), None);
        assert_eq!(epilogue_params(&empty, 1), None);
    }
}
