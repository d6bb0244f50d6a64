//! Micro-benchmarks of single op types whose kernels run other loops than their class's
//! benchmark (a 3-D convolution is not a 2-D one, Resize interpolates where a concat copies,
//! Softmax exponentiates where LayerNorm only sums). Each gives the op type a factor: its
//! measured work time over what its class's curve predicts for the same work, the roofline's
//! prior for models the profile was never calibrated on.

use super::profiler::{rand_tensor, Timer};
use super::{node_work, DeviceProfile, Roofline};
use crate::error::Result;
use crate::graph::Graph;
use crate::onnx::builder::{attr_float, attr_int, attr_ints, attr_string, ModelBuilder};
use crate::tensor::Tensor;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Adds one link of a chain: nodes from `x` to `y` (`i` numbers the link's own names).
type Link = fn(&mut ModelBuilder, usize, &str, &str, &[usize]);

/// One op type's benchmark: a chain of `link`s over an input of `shape`, which each link keeps.
pub(super) struct OpBench {
    pub label: &'static str,
    pub shape: Vec<usize>,
    link: Link,
}

fn constant(m: &mut ModelBuilder, name: &str, shape: &[usize], seed: u64) {
    m.init(name, &rand_tensor(shape, seed));
}

fn conv_link(m: &mut ModelBuilder, i: usize, x: &str, y: &str, s: &[usize], transpose: bool) {
    let c = s[1];
    let spatial = s.len() - 2;
    let w = format!("w{i}");
    let mut shape = vec![c, c];
    shape.extend(std::iter::repeat_n(3, spatial));
    constant(m, &w, &shape, 11 + i as u64);
    let attrs = vec![attr_ints("kernel_shape", &vec![3; spatial]), attr_ints("pads", &vec![1; 2 * spatial])];
    m.node(if transpose { "ConvTranspose" } else { "Conv" }, &[x, &w], &[y], attrs);
}

fn pool_link(m: &mut ModelBuilder, x: &str, y: &str, s: &[usize], op: &str) {
    let spatial = s.len() - 2;
    m.node(op, &[x], &[y], vec![attr_ints("kernel_shape", &vec![3; spatial]), attr_ints("pads", &vec![1; 2 * spatial])]);
}

fn unary_link(m: &mut ModelBuilder, x: &str, y: &str, op: &str) {
    m.node(op, &[x], &[y], vec![]);
}

/// The op types timed, at sizes of the tensors real models give them (a few hundred KiB to a
/// few MiB), small enough for a software rasteriser.
pub(super) fn op_benches() -> Vec<OpBench> {
    vec![
        OpBench { label: "Conv/3d", shape: vec![1, 16, 8, 16, 16], link: |m, i, x, y, s| conv_link(m, i, x, y, s, false) },
        OpBench {
            // 32 -> 32 channels over 28x28: a 1.6 MFLOP product, within a software rasteriser's cap.
            label: "Conv/pointwise",
            shape: vec![1, 32, 28, 28],
            link: |m, i, x, y, s| {
                let w = format!("w{i}");
                constant(m, &w, &[s[1], s[1], 1, 1], 11 + i as u64);
                m.node("Conv", &[x, &w], &[y], vec![attr_ints("kernel_shape", &[1, 1])]);
            },
        },
        OpBench { label: "ConvTranspose", shape: vec![1, 32, 28, 28], link: |m, i, x, y, s| conv_link(m, i, x, y, s, true) },
        OpBench { label: "MaxPool/3d", shape: vec![1, 16, 8, 16, 16], link: |m, _, x, y, s| pool_link(m, x, y, s, "MaxPool") },
        OpBench { label: "AveragePool/3d", shape: vec![1, 16, 8, 16, 16], link: |m, _, x, y, s| pool_link(m, x, y, s, "AveragePool") },
        OpBench { label: "AveragePool", shape: vec![1, 32, 32, 32], link: |m, _, x, y, s| pool_link(m, x, y, s, "AveragePool") },
        OpBench {
            label: "Resize",
            shape: vec![1, 16, 32, 32],
            // Bilinear up by 2, then down by 2: the shape comes back.
            link: |m, i, x, y, _| {
                let (up, su, sd) = (format!("up{i}"), format!("su{i}"), format!("sd{i}"));
                m.init(&su, &Tensor::from_f32(&[4], vec![1.0, 1.0, 2.0, 2.0]).expect("scales"));
                m.init(&sd, &Tensor::from_f32(&[4], vec![1.0, 1.0, 0.5, 0.5]).expect("scales"));
                m.node("Resize", &[x, "", &su], &[&up], vec![attr_string("mode", "linear")]);
                m.node("Resize", &[&up, "", &sd], &[y], vec![attr_string("mode", "linear")]);
            },
        },
        OpBench { label: "Transpose/strided", shape: vec![1, 64, 64, 64], link: |m, _, x, y, _| { m.node("Transpose", &[x], &[y], vec![attr_ints("perm", &[0, 1, 3, 2])]); } },
        OpBench { label: "Softmax", shape: vec![1024, 256], link: |m, _, x, y, _| { m.node("Softmax", &[x], &[y], vec![attr_int("axis", -1)]); } },
        OpBench {
            label: "InstanceNormalization",
            shape: vec![1, 32, 64, 64],
            link: |m, i, x, y, s| {
                let (sc, b) = (format!("scale{i}"), format!("bias{i}"));
                constant(m, &sc, &[s[1]], 3);
                constant(m, &b, &[s[1]], 4);
                m.node("InstanceNormalization", &[x, &sc, &b], &[y], vec![attr_float("epsilon", 1e-5)]);
            },
        },
        OpBench {
            label: "Add",
            shape: vec![1 << 18],
            link: |m, i, x, y, s| {
                let w = format!("w{i}");
                constant(m, &w, s, 5 + i as u64);
                m.node("Add", &[x, &w], &[y], vec![]);
            },
        },
        OpBench {
            label: "Mul (per channel)",
            shape: vec![1, 64, 32, 32],
            link: |m, i, x, y, s| {
                let w = format!("w{i}");
                constant(m, &w, &[1, s[1], 1, 1], 5 + i as u64);
                m.node("Mul", &[x, &w], &[y], vec![]);
            },
        },
        OpBench {
            // A sequence of 16 steps, 4 sequences, 128 features in and hidden: the gate
            // products, the elementwise cell and the per-step hand-offs of a recurrent layer.
            label: "LSTM",
            shape: vec![16, 4, 128],
            link: |m, i, x, y, s| {
                let h = s[2];
                let (w, r, b, axes, full) = (format!("w{i}"), format!("r{i}"), format!("b{i}"), format!("axes{i}"), format!("full{i}"));
                constant(m, &w, &[1, 4 * h, h], 21 + i as u64);
                constant(m, &r, &[1, 4 * h, h], 41 + i as u64);
                constant(m, &b, &[1, 8 * h], 61 + i as u64);
                m.init(&axes, &Tensor::from_i64(&[1], vec![1]).expect("axes"));
                m.node("LSTM", &[x, &w, &r, &b], &[&full], vec![attr_int("hidden_size", h as i64)]);
                m.node("Squeeze", &[&full, &axes], &[y], vec![]);
            },
        },
        OpBench { label: "Sigmoid", shape: vec![1 << 18], link: |m, _, x, y, _| unary_link(m, x, y, "Sigmoid") },
        OpBench { label: "Erf", shape: vec![1 << 18], link: |m, _, x, y, _| unary_link(m, x, y, "Erf") },
    ]
}

fn chain(b: &OpBench, len: usize) -> Result<Graph> {
    super::profiler::shape_chain(&b.shape, len, |m, i, x, y| (b.link)(m, i, x, y, &b.shape))
}

/// Factors are kept in this range: beyond it the benchmark, not the kernel, went wrong.
const FACTOR_RANGE: (f64, f64) = (0.05, 50.0);

/// Times every op benchmark on `timer`'s device against `profile` (its class curves already
/// measured): `(op type, factor)` by the key [`DeviceProfile::op_factor`] reads. Benchmarks the
/// device cannot compile, whose link the profile predicts above `op_cap_ms`, or that would start
/// after `deadline`, are left out.
pub(super) fn measure(timer: &Timer, profile: &DeviceProfile, target_ms: f64, op_cap_ms: f64, deadline: Duration, progress: &mut dyn FnMut(&str)) -> Result<BTreeMap<String, f64>> {
    let started = Instant::now();
    let mut factors = BTreeMap::new();
    let launch_ms = profile.launch_us * 1e-3;
    for b in op_benches() {
        progress(b.label);
        if started.elapsed() > deadline {
            break;
        }
        let one = chain(&b, 1)?;
        let nodes: Vec<_> = one.g.node_indices().filter(|&n| one.g[n].is_compute()).collect();
        let Some(&first) = nodes.first() else { continue };
        let key = super::profile::unfused(&super::op_type(&one, first));
        let predicted: f64 = nodes.iter().map(|&n| Roofline::work_ms(profile, &node_work(&one, n))).sum();
        let launches = nodes.len() as f64 * launch_ms;
        if predicted > op_cap_ms {
            continue;
        }
        let x = vec![rand_tensor(&b.shape, 1)];
        let Ok(measured) = timer.per_link(&|len| chain(&b, len), &x, target_ms, profile.run_overhead_us * 1e-3, 32) else { continue };
        let (work, predicted_work) = (measured - launches, predicted - launches);
        if work > 0.0 && predicted_work > 0.0 {
            factors.insert(key, (work / predicted_work).clamp(FACTOR_RANGE.0, FACTOR_RANGE.1));
        }
    }
    Ok(factors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every benchmark builds, keeps its input's shape, and names the op type its key says.
    #[test]
    fn every_op_benchmark_builds_a_shape_keeping_chain() {
        for b in op_benches() {
            let g = chain(&b, 2).unwrap_or_else(|e| panic!("{}: {e}", b.label));
            let out = g.outputs[0].clone();
            let shape = g.g[out.node].outputs[out.slot].shape.clone().unwrap();
            assert_eq!(shape, b.shape, "{}", b.label);
            let first = g.toposort().unwrap().into_iter().find(|&n| g.g[n].is_compute()).unwrap();
            let key = super::super::profile::unfused(&super::super::op_type(&g, first));
            assert!(b.label.starts_with(key.as_str()), "{}: keyed {key}", b.label);
        }
    }
}
