//! Every convolution path (depthwise per plane at 8 and 16 lanes and channel-blocked, pointwise and implicit-im2col GEMM,
//! column- and channel-split tasks, per-image batches, groups, 1-D) against a direct loop.

use super::{conv, Geom};
use crate::graph::geometry::ConvAxes;
use crate::graph::geometry::{lift3, window_output};
use crate::graph::{Activation, AutoPad, Window};
use crate::tensor::Tensor;

#[derive(Clone)]
struct Case {
    n: usize,
    c: usize,
    m: usize,
    spatial: Vec<usize>,
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    /// Begins then ends.
    pads: Vec<usize>,
    group: usize,
    bias: bool,
    act: Option<Activation>,
}

fn values(len: usize, seed: u32) -> Vec<f32> {
    crate::test_values::values(len, seed, -0.5, 0.5)
}

/// Direct convolution over (D, H, W) geometry (2-D as D = 1, 1-D as D = H = 1), the
/// definition written out.
fn reference(case: &Case, x: &[f32], w: &[f32], b: Option<&[f32]>, out: &[usize]) -> Vec<f32> {
    let nd = case.spatial.len();
    let three = |v: &[usize], fill: usize| lift3(v, nd, fill);
    let (size, k, s, d, o, p) = (three(&case.spatial, 1), three(&case.kernel, 1), three(&case.strides, 1), three(&case.dilations, 1), three(out, 1), three(&case.pads[..nd], 0));
    let (cg, mg) = (case.c / case.group, case.m / case.group);
    let (vol, ovol, kvol) = (size.iter().product::<usize>(), o.iter().product::<usize>(), k.iter().product::<usize>());
    let mut y = vec![0f32; case.n * case.m * ovol];
    for img in 0..case.n {
        for oc in 0..case.m {
            let grp = oc / mg;
            for op in 0..ovol {
                let opos = [op / (o[1] * o[2]), (op / o[2]) % o[1], op % o[2]];
                let mut acc = b.map_or(0.0, |b| b[oc]);
                for ic in 0..cg {
                    for t in 0..kvol {
                        let tap = [t / (k[1] * k[2]), (t / k[2]) % k[1], t % k[2]];
                        let at: [isize; 3] = std::array::from_fn(|a| (opos[a] * s[a] + tap[a] * d[a]) as isize - p[a] as isize);
                        if (0..3).any(|a| at[a] < 0 || at[a] >= size[a] as isize) {
                            continue;
                        }
                        let xi = (img * case.c + grp * cg + ic) * vol + (at[0] as usize * size[1] + at[1] as usize) * size[2] + at[2] as usize;
                        acc += x[xi] * w[(oc * cg + ic) * kvol + t];
                    }
                }
                y[(img * case.m + oc) * ovol + op] = case.act.map_or(acc, |a| a.apply(acc));
            }
        }
    }
    y
}

fn window(case: &Case) -> Window {
    Window {
        kernel_shape: vec![],
        strides: case.strides.clone(),
        pads: case.pads.clone(),
        dilations: case.dilations.clone(),
        auto_pad: AutoPad::NotSet,
        ceil_mode: false,
    }
}

/// The geometry `conv` derives for the case, to check which kernel takes it.
fn conv_geom(case: &Case) -> Geom {
    let window = window(case);
    let out = window_output(&window, &case.spatial, &case.kernel, false).unwrap();
    let axes = ConvAxes::new(&window, &case.spatial, &case.kernel, &out).unwrap().unwrap();
    Geom::new(case.c, case.m, &axes, case.group)
}

fn check(case: &Case) {
    let window = window(case);
    let spatial_out = window_output(&window, &case.spatial, &case.kernel, false).unwrap();
    let mut xs = vec![case.n, case.c];
    xs.extend(&case.spatial);
    let mut ws = vec![case.m, case.c / case.group];
    ws.extend(&case.kernel);
    let mut out_shape = vec![case.n, case.m];
    out_shape.extend(&spatial_out);
    let xv = values(xs.iter().product(), 1);
    let wv = values(ws.iter().product(), 2);
    let bv = values(case.m, 3);
    let x = Tensor::from_f32(&xs, xv.clone()).unwrap();
    let w = Tensor::from_f32(&ws, wv.clone()).unwrap();
    let b = Tensor::from_f32(&[case.m], bv.clone()).unwrap();
    let got = conv(&x, &w, case.bias.then_some(&b), &window, case.group, case.act, &out_shape).unwrap();
    let want = reference(case, &xv, &wv, case.bias.then_some(&bv[..]), &spatial_out);
    assert_eq!(got.shape(), &out_shape[..]);
    let scale = want.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.as_f32().unwrap().iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-5 * scale + 1e-5 * w.abs(), "{xs:?} * {ws:?} group {} at {i}: got {g}, want {w}", case.group);
    }
}

#[allow(clippy::too_many_arguments)]
fn case2(n: usize, c: usize, m: usize, hw: [usize; 2], k: [usize; 2], s: [usize; 2], d: [usize; 2], pads: [usize; 4], group: usize) -> Case {
    Case { n, c, m, spatial: hw.to_vec(), kernel: k.to_vec(), strides: s.to_vec(), dilations: d.to_vec(), pads: pads.to_vec(), group, bias: true, act: None }
}

#[test]
fn depthwise_matches_reference() {
    let relu6 = Some(Activation::Clip { min: 0.0, max: 6.0 });
    // 16-lane planes (output width >= 14) and 8-lane ones; strides 1-3, dilation, asymmetric
    // pads, channel multiplier 2, batch. The per-plane kernel takes the wide stride-1 ones and
    // the multiplier; the channel-blocked one the others.
    let wide = [case2(1, 3, 3, [9, 50], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 3), case2(2, 2, 2, [6, 70], [5, 5], [1, 1], [2, 1], [4, 2, 0, 1], 2)];
    for case in &wide {
        assert!(!super::depthwise_blocked::applies(&conv_geom(case)), "{:?} should take the per-plane kernel", case.spatial);
    }
    for mut case in wide.into_iter().chain([
        case2(1, 5, 5, [9, 20], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 5),
        case2(2, 4, 4, [11, 33], [3, 3], [2, 2], [1, 1], [1, 1, 1, 1], 4),
        case2(1, 3, 6, [8, 7], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 3),
        case2(1, 3, 3, [13, 17], [5, 5], [1, 2], [2, 1], [2, 3, 1, 0], 3),
        case2(1, 2, 2, [10, 40], [3, 2], [3, 3], [1, 2], [0, 1, 2, 1], 2),
    ]) {
        case.act = relu6;
        check(&case);
        case.act = Some(Activation::Swish(1.0));
        check(&case);
        case.bias = false;
        case.act = None;
        check(&case);
    }
}

#[test]
fn channel_blocked_depthwise_matches_reference() {
    // Depthwise convolutions the channel-blocked kernel takes, across rows and by rows: narrow
    // planes (3 to 17 wide, so 8-pixel transposes with and without tails), strides 1-2 at any
    // width, 13 channels (a full block of 8 and a ragged one of 5), dilation, asymmetric pads,
    // 5x5, a batch.
    let cases = [
        case2(1, 13, 13, [3, 3], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 13),
        case2(2, 16, 16, [7, 9], [5, 5], [1, 1], [1, 1], [2, 2, 2, 2], 16),
        case2(1, 8, 8, [17, 17], [3, 3], [2, 2], [1, 1], [1, 1, 1, 1], 8),
        case2(1, 13, 13, [12, 20], [3, 3], [1, 1], [2, 2], [2, 1, 0, 3], 13),
        case2(1, 9, 9, [60, 60], [3, 3], [2, 2], [1, 1], [0, 0, 1, 1], 9),
        case2(1, 5, 5, [6, 21], [5, 3], [2, 1], [1, 1], [2, 1, 2, 1], 5),
        // A batch with a ragged block: tasks over images and blocks, weights packed once.
        case2(3, 21, 21, [6, 6], [5, 5], [1, 1], [1, 1], [2, 2, 2, 2], 21),
        case2(2, 11, 11, [5, 3], [3, 3], [2, 1], [1, 1], [1, 0, 1, 2], 11),
        // Planes of fewer than 8 pixels (no whole transpose), a full block.
        case2(2, 8, 8, [2, 3], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 8),
        // Row kernels: 7 columns at strides 1 and 2, rows of 29 (a last group of 5 in a group
        // of 8), 12 (8 + 4) and 3 (one group of 4 with a pixel to spare) pixels, 5 columns
        // at stride 2, a ragged block.
        case2(1, 8, 8, [10, 29], [7, 7], [1, 1], [1, 1], [3, 3, 3, 3], 8),
        case2(2, 13, 13, [9, 24], [7, 7], [2, 2], [1, 1], [3, 3, 3, 3], 13),
        case2(1, 16, 16, [12, 23], [5, 5], [1, 2], [1, 1], [2, 2, 2, 2], 16),
        case2(1, 9, 9, [4, 3], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 9),
    ];
    // In blocks of 8 and of 16 lanes (AVX-512's width; elsewhere two AVX2 vectors), whichever
    // this CPU would pick; 21 channels are a full block and a ragged one either way.
    for lanes in [8, 16] {
        super::depthwise_blocked::force_depthwise_lanes(lanes);
        for case in &cases {
            let mut case = case.clone();
            let g = conv_geom(&case);
            assert!(super::depthwise_blocked::applies(&g), "case {:?} {:?} should take the blocked kernel", case.spatial, case.strides);
            let rows = case.dilations[1] == 1 && [3, 5, 7].contains(&case.kernel[1]) && case.strides[1] <= 2 && g.ow >= 3;
            assert_eq!(super::depthwise_blocked::takes_rows(&g), rows, "case {:?} {:?}: row kernel", case.spatial, case.kernel);
            for act in [Some(Activation::Clip { min: 0.0, max: 6.0 }), Some(Activation::Swish(1.0)), None] {
                case.act = act;
                case.bias = act.is_some();
                check(&case);
            }
        }
    }
    super::depthwise_blocked::force_depthwise_lanes(0);
}

#[test]
fn narrow_groups_match_reference() {
    // The direct kernel for groups of 2-16 input channels (RegNet's 8, ResNeXt's 4-16): output
    // channels per group unlike input ones, strides, dilation, asymmetric pads, a batch, 16-lane
    // rows; and 17-wide groups, which take the GEMM path.
    for mut case in [
        case2(1, 16, 16, [9, 20], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 2),
        case2(2, 24, 48, [11, 15], [3, 3], [2, 2], [1, 1], [1, 1, 1, 1], 3),
        case2(1, 12, 6, [13, 17], [3, 3], [1, 2], [2, 1], [2, 1, 0, 2], 3),
        case2(1, 32, 32, [7, 30], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 2),
        case2(1, 34, 34, [8, 9], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 2),
    ] {
        check(&case);
        case.act = Some(Activation::Swish(1.0));
        check(&case);
        case.act = Some(Activation::HardSwish);
        check(&case);
        case.bias = false;
        case.act = Some(Activation::Relu);
        check(&case);
    }
}

#[test]
fn gemm_paths_match_reference() {
    let relu = Some(Activation::Relu);
    let mut cases = vec![
        // Pointwise, one task (small), then split by output columns (>= 1M MACs).
        case2(1, 7, 13, [10, 10], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0], 1),
        case2(1, 64, 64, [15, 20], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0], 1),
        // A small feature map with many channels: split by output channels, pointwise and 3x3.
        case2(1, 128, 96, [9, 9], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0], 1),
        case2(1, 24, 100, [8, 9], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 1),
        // Implicit im2col: padding, stride 2, dilation, more than one 256-deep block.
        case2(1, 16, 40, [23, 31], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 1),
        case2(1, 3, 32, [33, 35], [3, 3], [2, 2], [1, 1], [0, 1, 1, 0], 1),
        case2(1, 40, 24, [17, 19], [3, 3], [1, 2], [2, 2], [2, 2, 2, 2], 1),
        case2(1, 12, 20, [15, 18], [3, 3], [1, 1], [2, 3], [2, 3, 1, 2], 1),
        // Same-size stride-1 ones, whose unfolding rows are shifted planes: dilated, asymmetric
        // pads, taps wholly outside a small plane, and more columns than one packed block or
        // task, so blocks start and end mid-row.
        case2(1, 6, 10, [14, 19], [3, 3], [1, 1], [2, 3], [2, 3, 2, 3], 1),
        case2(1, 5, 7, [9, 30], [2, 2], [1, 1], [1, 1], [0, 1, 1, 0], 1),
        case2(1, 8, 16, [3, 3], [7, 7], [1, 1], [1, 1], [3, 3, 3, 3], 1),
        case2(1, 20, 24, [37, 41], [5, 5], [1, 1], [1, 1], [2, 2, 2, 2], 1),
        // Batches of small planes, run as one GEMM over all the images' pixels: padded 3x3,
        // strided, pointwise, more columns than one task or packed block.
        case2(4, 24, 40, [7, 9], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 1),
        case2(3, 20, 36, [9, 11], [3, 3], [2, 2], [1, 1], [0, 1, 1, 0], 1),
        case2(5, 40, 24, [5, 5], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0], 1),
        case2(8, 64, 72, [11, 13], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 1),
        // Groups that are not depthwise, and a batch (one task per image).
        case2(1, 8, 12, [12, 14], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 4),
        case2(3, 16, 32, [20, 21], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 1),
        case2(3, 32, 48, [14, 14], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0], 2),
        // For the direct kernel (channels in lanes): an input read in place (no padding
        // needed), 48 and 70 channels (a half panel and a ragged one), more than one depth
        // block over a batch whose tiles cross images, a strided 1x1 (not pointwise).
        case2(1, 8, 16, [10, 12], [3, 3], [1, 1], [1, 1], [0, 0, 0, 0], 1),
        case2(2, 9, 48, [7, 5], [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 1),
        case2(3, 40, 70, [5, 6], [3, 3], [2, 1], [1, 1], [1, 0, 0, 1], 1),
        case2(2, 24, 33, [9, 9], [1, 1], [2, 2], [1, 1], [0, 0, 0, 0], 1),
        // Strided 1x1 ones: a subsample on the pointwise path (rows and columns strided
        // differently, a batch, two groups), and one whose last outputs fall in the end
        // padding, which stays on the GEMM path.
        case2(3, 8, 12, [11, 6], [1, 1], [3, 1], [1, 1], [0, 0, 0, 0], 1),
        case2(2, 8, 6, [8, 8], [1, 1], [2, 2], [1, 1], [0, 0, 0, 0], 2),
        case2(1, 16, 20, [10, 7], [1, 1], [2, 3], [1, 1], [0, 0, 1, 1], 1),
    ];
    // 1-D convolution.
    cases.push(Case { n: 2, c: 6, m: 10, spatial: vec![50], kernel: vec![5], strides: vec![2], dilations: vec![1], pads: vec![2, 1], group: 1, bias: true, act: None });
    // 3-D: padded and strided per axis, dilated depth, pointwise, grouped, depthwise (which takes
    // the GEMM path in 3-D), and one image large enough to split by columns.
    let case3 = |n, c, m, dhw: [usize; 3], k: [usize; 3], s: [usize; 3], d: [usize; 3], pads: [usize; 6], group| Case {
        n, c, m, spatial: dhw.to_vec(), kernel: k.to_vec(), strides: s.to_vec(), dilations: d.to_vec(), pads: pads.to_vec(), group, bias: true, act: None,
    };
    cases.extend([
        case3(2, 3, 8, [5, 9, 10], [3, 3, 3], [1, 2, 1], [2, 1, 1], [1, 1, 0, 2, 1, 1], 1),
        case3(1, 8, 6, [4, 6, 7], [1, 1, 1], [1, 1, 1], [1, 1, 1], [0; 6], 1),
        case3(1, 6, 9, [6, 5, 5], [2, 3, 3], [2, 1, 1], [1, 1, 1], [0, 1, 1, 1, 1, 1], 3),
        case3(2, 4, 4, [5, 6, 6], [3, 3, 3], [1, 1, 1], [1, 1, 1], [1; 6], 4),
        case3(1, 16, 32, [8, 16, 16], [3, 3, 3], [1, 1, 1], [1, 1, 1], [1; 6], 1),
    ]);
    let shifted = cases.iter().filter(|c| c.spatial.len() == 2 && conv_geom(c).unfolds_by_shift()).count();
    assert!(shifted >= 5, "only {shifted} cases unfold by shifting");
    let subsampled = cases.iter().filter(|c| conv_geom(c).subsampled().is_some()).count();
    assert_eq!(subsampled, 3, "strided 1x1 cases that subsample (all shallower than the direct kernel takes)");
    let direct = cases.iter().filter(|c| super::conv_direct::applies(&conv_geom(c))).count();
    if direct == 0 {
        eprintln!("note: this CPU has no register kernel for the direct convolution; only the GEMM path is checked");
    }
    // The GEMM path forced, then by shape (the direct kernel, where it applies), then the
    // direct kernel's AVX2 form (on a CPU with AVX-512 too).
    for (path, avx2) in [(super::ConvPath::Gemm, false), (super::ConvPath::ByShape, false), (super::ConvPath::ByShape, true)] {
        super::force_conv_path(path);
        super::conv_direct::force_avx2(avx2);
        for mut case in cases.clone() {
            check(&case);
            case.act = Some(Activation::Swish(1.5));
            check(&case);
            case.act = Some(Activation::HardSwish);
            check(&case);
            case.act = relu;
            case.bias = false;
            check(&case);
        }
    }
    super::conv_direct::force_avx2(false);
}
