//! Both pooling paths (the 1-/2-D separable one, the N-D one axis at a time) against the
//! definition written out, over seeded random geometries: ragged sizes, strides, dilations,
//! asymmetric pads, windows wholly in the padding, every kind.

use super::pool;
use crate::graph::geometry::window_output;
use crate::graph::{AutoPad, PoolKind, Window};
use crate::test_values::Rng;
use crate::tensor::{strides_of, Tensor};

/// Every output as a loop over its window's taps.
fn reference(x: &[f32], xs: &[usize], w: &Window, pads: &[usize], kind: PoolKind, ys: &[usize]) -> Vec<f32> {
    let nd = xs.len() - 2;
    let (in_st, out_sp) = (strides_of(&xs[2..]), &ys[2..]);
    let (in_plane, out_plane): (usize, usize) = (xs[2..].iter().product(), out_sp.iter().product());
    let mut y = Vec::new();
    for p in 0..xs[0] * xs[1] {
        for o in 0..out_plane {
            let mut rem = o;
            let mut pos = vec![0usize; nd];
            for d in (0..nd).rev() {
                pos[d] = rem % out_sp[d];
                rem /= out_sp[d];
            }
            let (mut acc, mut valid, mut padded) = (if kind == PoolKind::Max { f32::NEG_INFINITY } else { 0.0 }, 0usize, 0usize);
            let taps: usize = w.kernel_shape.iter().product();
            for t in 0..taps {
                let (mut rem, mut off, mut inside, mut in_padded) = (t, 0usize, true, true);
                for d in (0..nd).rev() {
                    let k = rem % w.kernel_shape[d];
                    rem /= w.kernel_shape[d];
                    let i = (pos[d] * w.strides[d] + k * w.dilations[d]) as isize - pads[d] as isize;
                    inside &= i >= 0 && i < xs[2 + d] as isize;
                    in_padded &= i < (xs[2 + d] + pads[d + nd]) as isize;
                    off += i.max(0) as usize * in_st[d];
                }
                padded += in_padded as usize;
                if !inside {
                    continue;
                }
                let v = x[p * in_plane + off];
                valid += 1;
                acc = match kind {
                    PoolKind::Max => if v > acc || v.is_nan() { v } else { acc },
                    PoolKind::Average { .. } => acc + v,
                    PoolKind::Lp { p } => acc + v.abs().powi(p as i32),
                };
            }
            y.push(match kind {
                PoolKind::Max => acc,
                PoolKind::Average { count_include_pad } => acc / (if count_include_pad { padded } else { valid }).max(1) as f32,
                PoolKind::Lp { p } => acc.powf(1.0 / p as f32),
            });
        }
    }
    y
}

fn check_random_cases(nd: usize, cases: usize, seed: u32) {
    let mut rng = Rng::new(seed);
    let kinds = [PoolKind::Max, PoolKind::Average { count_include_pad: false }, PoolKind::Average { count_include_pad: true }, PoolKind::Lp { p: 2 }];
    for case in 0..cases {
        let kernel: Vec<usize> = (0..nd).map(|_| 1 + rng.below(4)).collect();
        let strides: Vec<usize> = (0..nd).map(|_| 1 + rng.below(3)).collect();
        let dilations: Vec<usize> = (0..nd).map(|_| 1 + rng.below(2)).collect();
        // Pads up to the window's extent minus one, so no output lies wholly in the padding
        // beyond what ONNX allows, but some windows hold only padded taps.
        let pads: Vec<usize> = (0..2 * nd).map(|i| rng.below(kernel[i % nd].min(3))).collect();
        let spatial: Vec<usize> = (0..nd).map(|d| (kernel[d] - 1) * dilations[d] + 1 + rng.below(9)).collect();
        let mut xs = vec![1 + rng.below(2), 1 + rng.below(3)];
        xs.extend(&spatial);
        let window = Window { kernel_shape: kernel.clone(), strides, pads: pads.clone(), dilations, auto_pad: AutoPad::NotSet, ceil_mode: false };
        let mut ys = xs[..2].to_vec();
        ys.extend(window_output(&window, &spatial, &kernel, false).unwrap());
        let x: Vec<f32> = (0..xs.iter().product()).map(|_| rng.uniform(-2.0, 2.0)).collect();
        let kind = kinds[case % kinds.len()];
        let got = pool(&Tensor::from_f32(&xs, x.clone()).unwrap(), kind, &window, &ys).unwrap();
        let want = reference(&x, &xs, &window, &pads, kind, &ys);
        assert_eq!(got.shape(), &ys[..]);
        for (i, (g, w)) in got.as_f32().unwrap().iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()) || g == w, "case {case} {kind:?} x {xs:?} window {window:?} at {i}: got {g}, want {w}");
        }
    }
}

#[test]
fn one_and_two_d_pooling_match_the_definition() {
    check_random_cases(1, 60, 11);
    check_random_cases(2, 120, 12);
}

#[test]
fn three_d_pooling_matches_the_definition() {
    check_random_cases(3, 120, 13);
}

#[test]
fn a_nan_in_a_3d_max_window_stays() {
    let window = Window { kernel_shape: vec![2, 2, 2], strides: vec![1, 1, 1], pads: vec![], dilations: vec![1, 1, 1], auto_pad: AutoPad::NotSet, ceil_mode: false };
    let mut x = vec![0.5f32; 27];
    x[13] = f32::NAN;
    let y = pool(&Tensor::from_f32(&[1, 1, 3, 3, 3], x).unwrap(), PoolKind::Max, &window, &[1, 1, 2, 2, 2]).unwrap();
    // The centre element lies in every 2x2x2 window.
    assert!(y.as_f32().unwrap().iter().all(|v| v.is_nan()));
}

/// The 3-wide, stride-2 windows of CNN stems on rows wide enough for the vectorised blocks
/// (8 outputs and up, the last block overlapping), 1 to 5 window rows, pads, ceil mode, and
/// for max pooling NaNs scattered so that some windows hold one: max must equal the definition
/// bit for bit (a NaN wherever a window holds one), average within rounding.
#[test]
fn wide_three_by_two_stride_windows_match_the_definition() {
    let mut rng = Rng::new(21);
    for case in 0..160 {
        let kh = 1 + rng.below(5);
        let (pl, pr, pt, pb) = (rng.below(2), rng.below(2), rng.below(kh.min(3)), rng.below(kh.min(3)));
        let (h, w) = (kh + rng.below(6), 16 + rng.below(48));
        let max = case % 3 != 2;
        let ceil = max && rng.below(2) == 1;
        let window = Window { kernel_shape: vec![kh, 3], strides: vec![1 + rng.below(2), 2], pads: vec![pt, pl, pb, pr], dilations: vec![1, 1], auto_pad: AutoPad::NotSet, ceil_mode: ceil };
        let xs = vec![1, 1 + rng.below(3), h, w];
        let mut ys = xs[..2].to_vec();
        ys.extend(window_output(&window, &[h, w], &[kh, 3], ceil).unwrap());
        let mut x: Vec<f32> = (0..xs.iter().product()).map(|_| rng.uniform(-2.0, 2.0)).collect();
        if max && case % 2 == 0 {
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(x.len());
                x[at] = f32::NAN;
            }
        }
        let kind = if max { PoolKind::Max } else { PoolKind::Average { count_include_pad: case % 2 == 0 } };
        let got = pool(&Tensor::from_f32(&xs, x.clone()).unwrap(), kind, &window, &ys).unwrap();
        let want = reference(&x, &xs, &window, &[pt, pl, pb, pr], kind, &ys);
        for (i, (g, w)) in got.as_f32().unwrap().iter().zip(&want).enumerate() {
            let same = if max { g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()) } else { (g - w).abs() <= 1e-5 * (1.0 + w.abs()) };
            assert!(same, "case {case} {kind:?} x {xs:?} window {window:?} at {i}: got {g}, want {w}");
        }
    }
}
