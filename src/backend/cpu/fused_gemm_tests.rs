//! The fused GEMM's kernels against plain loops.

use super::*;
use crate::graph::Activation;

/// The kernels this CPU runs, the unfused fallback first (an AVX-512 CPU runs AVX2 too).
fn kernels() -> Vec<Kernel> {
    match widest() {
        Kernel::Avx512 => vec![Kernel::Unfused, Kernel::Avx2, Kernel::Avx2Dot, Kernel::Avx512, Kernel::Avx512Dot],
        Kernel::Avx2 => vec![Kernel::Unfused, Kernel::Avx2, Kernel::Avx2Dot],
        _ => vec![Kernel::Unfused],
    }
}

/// Every kernel against a plain triple loop, on shapes that leave partial tiles in every
/// dimension and cross the depth and column block sizes, with a clamp and with a Swish.
#[test]
fn every_kernel_matches_the_reference() {
    let kernels = kernels();
    eprintln!("kernels on this CPU: {kernels:?}");
    // With few columns and a deep product too (the dot-product kernels' shapes): ragged row
    // panels, column tiles of 1 to 4, depth blocks and a partial last vector; and shallow ones
    // wider than their (widened) column blocks.
    let shapes = [(1, 1, 1), (2, 40, 17), (3, 33, 300), (8, 32, 16), (16, 70, 9), (13, 49, 7), (24, 1100, 300), (70, 33, 520), (5, 17, 3), (7, 300, 9), (13, 9, 1100), (70, 1, 520), (6, 5, 37), (9, 12, 4), (11, 7, 1029), (13, 2000, 37), (7, 9500, 7)];
    let mut seed = 1u32;
    let mut rnd = move || {
        seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
        (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
    };
    let acts = [Activation::Clip { min: -0.5, max: 0.75 }, Activation::Swish(1.3)];
    for (&(m, n, k), act) in shapes.iter().flat_map(|s| acts.iter().map(move |&a| (s, a))) {
        let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
        let bias: Vec<f32> = (0..m + 3).map(|_| rnd()).collect();
        let epi = Epilogue::new(Some(&bias), Some(act));
        let ldc = n + 5;
        let mut want = vec![0f32; m * ldc];
        for i in 0..m {
            for j in 0..n {
                let dot = (0..k).map(|p| a[i * k + p] as f64 * b[p * n + j] as f64).sum::<f64>() + bias[i + 3] as f64;
                want[i * ldc + j] = match act {
                    Activation::Swish(alpha) => dot / (1.0 + (-alpha as f64 * dot).exp()),
                    _ => dot.clamp(-0.5, 0.75),
                } as f32;
            }
        }
        let rows = |p: usize, j0: usize, j1: usize, dst: &mut [f32]| dst[..j1 - j0].copy_from_slice(&b[p * n + j0..p * n + j1]);
        // B as given, made row by row, and stored transposed (a Gemm's weights: columns
        // strided, gathered when packed).
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        // And packed ahead (from its transposed copy, as an RNN's weights are stored), for
        // the tiled kernel it was packed for and the forms that read it element-wise.
        let packed = PackedRhs::new(Mat { data: &bt, rs: 1, cs: k }, k, n);
        // And as the columns of a wider matrix (a thread's share of a convolution's plane,
        // read in place with rows longer than the product).
        let wide: Vec<f32> = (0..k * (n + 3)).map(|i| if i % (n + 3) < n { b[i / (n + 3) * n + i % (n + 3)] } else { f32::NAN }).collect();
        let mut forms = vec![Rhs::Matrix(Mat::row_major(&b, n)), Rhs::Rows(&rows), Rhs::Matrix(Mat { data: &bt, rs: 1, cs: k }), Rhs::Matrix(Mat { data: &wide, rs: n + 3, cs: 1 })];
        forms.extend(packed.as_ref().map(|p| p.columns_from(0)));
        let runs = |kern: Kernel, rhs: &Rhs| !matches!(rhs, Rhs::Packed(_)) || kern != Kernel::Avx2 || widest() == Kernel::Avx2;
        for (kernel, rhs) in kernels.iter().flat_map(|&kern| forms.iter().filter(move |rhs| runs(kern, rhs)).map(move |&rhs| (kern, rhs))) {
            let mut got = vec![f32::NAN; m * ldc];
            // SAFETY: `got` holds m rows of ldc >= n elements; each kernel runs on this CPU.
            unsafe { gemm_epilogue_on(kernel, m, n, k, Mat::row_major(&a, k), rhs, got.as_mut_ptr(), ldc, &epi, 3) };
            for i in 0..m {
                for j in 0..ldc {
                    let (g, w) = (got[i * ldc + j], want[i * ldc + j]);
                    if j < n {
                        assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{kernel:?} {m}x{n}x{k} at ({i},{j}): {g} vs {w}");
                    } else {
                        assert!(g.is_nan(), "{kernel:?} {m}x{n}x{k} wrote past its block at ({i},{j})");
                    }
                }
            }
        }
    }
}

/// A packed operand's columns from a panel boundary on give the same values as the whole
/// product's (threads split the columns so), and both match a plain loop.
#[test]
fn packed_columns_from_a_panel_boundary() {
    let (m, n, k) = (5, 70, 19);
    let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 * 0.25 - 1.0).collect();
    let Some(packed) = PackedRhs::new(Mat::row_major(&b, n), k, n) else {
        eprintln!("skipped: this CPU has no register kernel to pack for");
        return;
    };
    let epi = Epilogue::new(None, None);
    let j0 = packed.panel_width();
    let (mut whole, mut split) = (vec![0f32; m * n], vec![f32::NAN; m * n]);
    // SAFETY: both outputs hold m rows of n; the second call writes columns [j0, n) only.
    unsafe {
        gemm_epilogue(m, n, k, Mat::row_major(&a, k), packed.columns_from(0), whole.as_mut_ptr(), n, &epi, 0);
        gemm_epilogue(m, j0, k, Mat::row_major(&a, k), packed.columns_from(0), split.as_mut_ptr(), n, &epi, 0);
        gemm_epilogue(m, n - j0, k, Mat::row_major(&a, k), packed.columns_from(j0), split.as_mut_ptr().add(j0), n, &epi, 0);
    }
    for i in 0..m {
        for j in 0..n {
            let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            assert!((whole[i * n + j] - want).abs() <= 1e-4 * (1.0 + want.abs()), "({i},{j}): {} vs {want}", whole[i * n + j]);
            assert_eq!(whole[i * n + j].to_bits(), split[i * n + j].to_bits(), "({i},{j}) differs when split at {j0}");
        }
    }
}
