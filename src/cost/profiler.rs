//! `hetsched profile`: micro-benchmarks that measure a device's profile. Every benchmark is a
//! chain of one op repeated, timed at length 1 and 1 + k: the difference divided by k is one
//! op's time without the run's fixed costs, which the length-1 run measures.

use super::{Curve, DeviceProfile, Fingerprint, Link, OpClass, ProfileKind, Work};
use crate::backend::{Backend, CompileOptions, Executable};
use crate::error::Result;
use crate::onnx::builder::{attr_int, attr_ints, ModelBuilder};
/// ONNX TensorProto.DataType FLOAT.
pub(super) const FLOAT: i32 = 1;
use crate::tensor::Tensor;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct ProfileOptions {
    /// A smaller sweep (about a third of the time) for quick experiments.
    pub quick: bool,
}

/// Reports progress: (what is being measured, steps done, steps in all).
pub type Progress<'a> = &'a mut dyn FnMut(&str, usize, usize);

/// What identifies `backend`'s device and this build.
pub fn fingerprint(backend: &dyn Backend) -> Fingerprint {
    let info = backend.info();
    let mut details: BTreeMap<String, String> = info.details.into_iter().collect();
    if backend.name() == "cpu" {
        if let Ok(text) = std::fs::read_to_string("/proc/cpuinfo") {
            if let Some(l) = text.lines().find(|l| l.starts_with("model name")) {
                details.insert("processor".into(), l.split(':').nth(1).unwrap_or("").trim().to_string());
            }
        }
    }
    Fingerprint { device: backend.name().to_string(), details, build: super::profile::build_id() }
}

/// One benchmark: an op applied `len` times in a chain to an input of fixed shape.
#[derive(Clone, Debug)]
struct Bench {
    label: String,
    class: OpClass,
    shape: Vec<usize>,
    work: Work,
    /// Builds the chain: (builder, input name, output name) per link.
    op: BenchOp,
}

#[derive(Clone, Debug)]
enum BenchOp {
    Relu,
    /// Layer normalisation over rows of 256: a reduction and a pass over the data.
    LayerNorm,
    /// 3x3 max pooling, stride 1, padded: a windowed reduction that keeps the shape.
    MaxPool,
    /// The halves of a vector sliced out and concatenated again: three copies per link, as
    /// channel shuffles, splits and concats move data.
    SliceConcat,
    /// MatMul by a square [k, k] weight.
    MatMul(usize),
    /// Convolution with `c` channels in and out, a `k`×`k` window, `group` groups.
    Conv { c: usize, k: usize, group: usize },
}

impl Bench {
    fn weight_shape(&self) -> Option<Vec<usize>> {
        match &self.op {
            BenchOp::MatMul(k) => Some(vec![*k, *k]),
            BenchOp::Conv { c, k, group } => Some(vec![*c, c / group, *k, *k]),
            _ => None,
        }
    }

    /// Nodes per link of the chain.
    fn launches(&self) -> f64 {
        if matches!(self.op, BenchOp::SliceConcat) { 3.0 } else { 1.0 }
    }

    /// The longest chain whose weights stay within 64 MiB.
    fn max_links(&self) -> usize {
        let w: usize = self.weight_shape().map(|s| s.iter().product::<usize>() * 4).unwrap_or(0);
        if w == 0 { 48 } else { ((64 << 20) / w).clamp(2, 48) }
    }
}

pub(super) fn rand_tensor(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_f32(shape, crate::onnx::builder::rand_vec(n, seed)).expect("benchmark tensor")
}

/// A builder whose one input, `x0`, has `shape`.
fn with_input(shape: &[usize]) -> ModelBuilder {
    let mut m = ModelBuilder::new();
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let dims: Vec<&str> = dims.iter().map(|s| s.as_str()).collect();
    m.input("x0", FLOAT, &dims);
    m
}

fn bound(m: &ModelBuilder) -> Result<crate::graph::Graph> {
    crate::onnx::load_model_bytes(&m.bytes())?.bind(&Default::default(), Some(&crate::backend::cpu::eval_node))
}

/// A bound model of `len` links from input `x0` of `shape` to output `x{len}`: `link(m, i, x, y)`
/// adds link `i`, reading `x` and writing `y` (the benchmarks' chains).
pub(super) fn shape_chain(shape: &[usize], len: usize, mut link: impl FnMut(&mut ModelBuilder, usize, &str, &str)) -> Result<crate::graph::Graph> {
    let mut m = with_input(shape);
    for i in 0..len {
        link(&mut m, i, &format!("x{i}"), &format!("x{}", i + 1));
    }
    m.output(&format!("x{len}"));
    bound(&m)
}

/// `len` copies of an op that changes its input's shape, each reading the input `x0` of `shape`
/// and writing an output of its own (a chain could not feed one link's output to the next).
fn fan_model(shape: &[usize], len: usize, mut link: impl FnMut(&mut ModelBuilder, &str, &str)) -> Result<crate::graph::Graph> {
    let mut m = with_input(shape);
    for i in 0..len {
        let y = format!("y{i}");
        link(&mut m, "x0", &y);
        m.output(&y);
    }
    bound(&m)
}

fn chain_model(b: &Bench, len: usize) -> Result<crate::graph::Graph> {
    if matches!(b.op, BenchOp::MaxPool) {
        return fan_model(&b.shape, len, |m, x, y| { m.node("MaxPool", &[x], &[y], vec![attr_ints("kernel_shape", &[3, 3]), attr_ints("pads", &[1, 1, 1, 1]), attr_ints("strides", &[2, 2])]); });
    }
    shape_chain(&b.shape, len, |m, i, x, y| {
        let w = format!("w{i}");
        // Each link its own weights, read from memory as a real model's are (not from cache).
        if let Some(shape) = b.weight_shape() {
            m.init(&w, &rand_tensor(&shape, 7 + i as u64));
        }
        match &b.op {
            BenchOp::Relu => m.node("Relu", &[x], &[y], vec![]),
            BenchOp::LayerNorm => {
                if i == 0 {
                    m.init("gamma", &rand_tensor(&[256], 5));
                    m.init("beta", &rand_tensor(&[256], 6));
                }
                m.node("LayerNormalization", &[x, "gamma", "beta"], &[y], vec![attr_int("axis", -1)])
            }
            BenchOp::MaxPool => unreachable!("a fan, above"),
            BenchOp::SliceConcat => {
                let half = b.shape[0] as i64 / 2;
                if i == 0 {
                    m.init("zero", &Tensor::from_i64(&[1], vec![0]).expect("index"));
                    m.init("half", &Tensor::from_i64(&[1], vec![half]).expect("index"));
                    m.init("end", &Tensor::from_i64(&[1], vec![2 * half]).expect("index"));
                }
                let (lo, hi) = (format!("lo{i}"), format!("hi{i}"));
                m.node("Slice", &[x, "zero", "half"], &[&lo], vec![]);
                m.node("Slice", &[x, "half", "end"], &[&hi], vec![]);
                m.node("Concat", &[&hi, &lo], &[y], vec![attr_int("axis", 0)])
            }
            BenchOp::MatMul(_) => m.node("MatMul", &[x, &w], &[y], vec![]),
            BenchOp::Conv { k, group, .. } => {
                let p = (*k as i64 - 1) / 2;
                m.node("Conv", &[x, &w], &[y], vec![attr_ints("kernel_shape", &[*k as i64, *k as i64]), attr_ints("pads", &[p, p, p, p]), attr_int("group", *group as i64)])
            }
        };
    })
}

fn benches(quick: bool) -> Vec<Bench> {
    let mut v = vec![];
    let pick = |all: Vec<usize>| -> Vec<usize> { if quick { all.into_iter().step_by(2).collect() } else { all } };
    for n in pick(vec![1 << 8, 1 << 10, 1 << 13, 1 << 16, 1 << 18, 1 << 20, 1 << 22]) {
        let bytes = 8.0 * n as f64;
        v.push(Bench { label: format!("relu {n}"), class: OpClass::Elementwise, shape: vec![n], work: Work { flops: n as f64, bytes, class: Some(OpClass::Elementwise), ..Default::default() }, op: BenchOp::Relu });
        let rows = (n / 256).max(1);
        // x in and out, and the scale and bias rows.
        v.push(Bench { label: format!("layernorm {rows}x256"), class: OpClass::Reduction, shape: vec![rows, 256], work: Work { flops: 8.0 * (rows * 256) as f64, bytes: 8.0 * (rows * 256 + 256) as f64, class: Some(OpClass::Reduction), ..Default::default() }, op: BenchOp::LayerNorm });
        let side = if n >= 1024 { 32 } else { 16 };
        let planes = (n / (side * side)).max(1);
        let m = planes * side * side;
        // 3x3 stride 2, the pooling of CNN stems and stages: a quarter of the pixels out, each
        // 9 comparisons.
        let out = m / 4;
        v.push(Bench { label: format!("maxpool 3x3/2 {planes}x{side}x{side}"), class: OpClass::Pool, shape: vec![1, planes, side, side], work: Work { flops: 9.0 * out as f64, bytes: 4.0 * (m + out) as f64, class: Some(OpClass::Pool), ..Default::default() }, op: BenchOp::MaxPool });
        // Three copies per link, each counted as it is in a model (reads what it writes):
        // two halves (2 × 2 × 2n bytes) and the whole (2 × 4n bytes).
        v.push(Bench { label: format!("slice+concat {n}"), class: OpClass::Movement, shape: vec![n], work: Work { flops: 0.0, bytes: 16.0 * n as f64, class: Some(OpClass::Movement), ..Default::default() }, op: BenchOp::SliceConcat });
    }
    // Matrix products: batch-1 classifier rows, attention-sized and square ones.
    let gemms: Vec<(usize, usize)> = if quick {
        vec![(1, 512), (16, 128), (4, 1024), (64, 256), (256, 512), (512, 1024)]
    } else {
        vec![(1, 64), (1, 256), (1, 512), (16, 192), (1, 1024), (8, 512), (4, 1024), (2, 2048), (16, 768), (32, 64), (64, 128), (64, 256), (48, 384), (128, 512), (256, 512), (384, 768), (512, 1024)]
    };
    for (m, k) in gemms {
        let class = if m < super::THIN_ROWS { OpClass::Thin } else { OpClass::Gemm };
        let flops = 2.0 * (m * k * k) as f64;
        let bytes = 4.0 * (2 * m * k + k * k) as f64;
        v.push(Bench { label: format!("matmul {m}x{k}x{k}"), class, shape: vec![m, k], work: Work { flops, bytes, class: Some(class), ..Default::default() }, op: BenchOp::MatMul(k) });
    }
    // Convolutions at batch 1: 3x3 over the sizes of classifier stages, 1x1 (a GEMM), depthwise.
    let convs: Vec<(usize, usize, usize, usize)> = {
        // Sizes chosen so no two of a class do the same FLOPs (a curve has one rate per size).
        let all = vec![
            (4, 3, 1, 16), (8, 3, 1, 28), (8, 3, 1, 56), (24, 3, 1, 28), (16, 3, 1, 56), (48, 3, 1, 28), (32, 3, 1, 56), (160, 3, 1, 14), (96, 3, 1, 28), (64, 3, 1, 56), (320, 3, 1, 14),
            (16, 1, 1, 16), (32, 1, 1, 56), (160, 1, 1, 14), (96, 1, 1, 28), (480, 1, 1, 7),
            (16, 3, 16, 14), (32, 3, 32, 28), (960, 3, 960, 7), (384, 3, 384, 14), (144, 3, 144, 28), (96, 3, 96, 56), (32, 3, 32, 112),
        ];
        if quick { all.into_iter().step_by(2).collect() } else { all }
    };
    for (c, k, group, hw) in convs {
        let class = if group > 1 { OpClass::Depthwise } else if k == 1 && hw * hw < super::THIN_ROWS { OpClass::Thin } else if k == 1 { OpClass::Gemm } else { OpClass::Conv };
        let out = (c * hw * hw) as f64;
        let flops = 2.0 * out * (c / group * k * k) as f64;
        let bytes = 4.0 * (2.0 * out + (c * c / group * k * k) as f64);
        v.push(Bench { label: format!("conv {c}ch {k}x{k} g{group} {hw}x{hw}"), class, shape: vec![1, c, hw, hw], work: Work { flops, bytes, class: Some(class), ..Default::default() }, op: BenchOp::Conv { c, k, group } });
    }
    v
}

/// Median milliseconds of `exe` on `inputs`: a warm-up, then runs until `budget` is spent
/// (at least 3, at most 25).
fn median_ms(exe: &dyn Executable, inputs: &[Tensor], budget: Duration) -> Result<f64> {
    exe.run(inputs.to_vec())?;
    let start = Instant::now();
    let mut times = vec![];
    while times.len() < 3 || (times.len() < 25 && start.elapsed() < budget) {
        let t = Instant::now();
        exe.run(inputs.to_vec())?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

pub(super) struct Timer<'a> {
    backend: &'a dyn Backend,
    budget: Duration,
}

impl Timer<'_> {
    fn compile(&self, g: crate::graph::Graph) -> Result<Arc<dyn Executable>> {
        self.backend.compile(Arc::new(g), &CompileOptions::default())
    }

    /// (one op's ms, the length-1 run's ms) for a chain benchmark.
    fn per_op(&self, b: &Bench, target_ms: f64, overhead_ms: f64) -> Result<(f64, f64)> {
        let x = vec![rand_tensor(&b.shape, 1)];
        self.chain_times(&|len| chain_model(b, len), &x, target_ms, overhead_ms, b.max_links())
    }

    /// One link's ms of the chains `build(len)` makes.
    pub(super) fn per_link(&self, build: &dyn Fn(usize) -> Result<crate::graph::Graph>, x: &[Tensor], target_ms: f64, overhead_ms: f64, max_links: usize) -> Result<f64> {
        Ok(self.chain_times(build, x, target_ms, overhead_ms, max_links)?.0)
    }

    /// Times the chain at length 1 and 1 + k, k chosen so the longer one takes about
    /// `target_ms`: (one link's ms, the length-1 run's ms).
    fn chain_times(&self, build: &dyn Fn(usize) -> Result<crate::graph::Graph>, x: &[Tensor], target_ms: f64, overhead_ms: f64, max_links: usize) -> Result<(f64, f64)> {
        let t1 = median_ms(&*self.compile(build(1)?)?, x, self.budget)?;
        let one = (t1 - overhead_ms).max(1e-3);
        let k = ((target_ms / one).round() as usize).clamp(2, max_links);
        let tk = median_ms(&*self.compile(build(1 + k)?)?, x, self.budget)?;
        Ok((((tk - t1) / k as f64).max(one * 0.05), t1))
    }

}

/// Sizes of the transfer sweep: 4 KiB to 64 MiB.
pub fn transfer_sizes(quick: bool) -> Vec<u64> {
    (12..=26).step_by(if quick { 4 } else { 2 }).map(|p| 1u64 << p).collect()
}

/// A graph that uploads `n` floats and downloads one: Slice(x, 0:1).
fn upload_model(n: usize) -> Result<crate::graph::Graph> {
    let mut m = ModelBuilder::new();
    m.input("x", FLOAT, &[&n.to_string()]);
    m.init("s", &Tensor::from_i64(&[1], vec![0])?).init("e", &Tensor::from_i64(&[1], vec![1])?);
    m.node("Slice", &["x", "s", "e"], &["y"], vec![]).output("y");
    crate::onnx::load_model_bytes(&m.bytes())?.bind(&Default::default(), Some(&crate::backend::cpu::eval_node))
}

/// A graph that uploads `n` floats and downloads them unchanged (Identity): against
/// [`upload_model`], which uploads as much and downloads one, the difference is the download.
fn echo_model(n: usize) -> Result<crate::graph::Graph> {
    let mut m = ModelBuilder::new();
    m.input("x", FLOAT, &[&n.to_string()]);
    m.node("Identity", &["x"], &["y"], vec![]).output("y");
    crate::onnx::load_model_bytes(&m.bytes())?.bind(&Default::default(), Some(&crate::backend::cpu::eval_node))
}

/// Median of paired differences `a − b`, the two run alternately (so drift cancels): at least
/// 5 pairs, at most 41, within `budget`.
fn paired_diff_ms(a: &dyn Executable, xa: &[Tensor], b: &dyn Executable, xb: &[Tensor], budget: Duration) -> Result<f64> {
    a.run(xa.to_vec())?;
    b.run(xb.to_vec())?;
    let (start, mut d) = (Instant::now(), vec![]);
    while d.len() < 5 || (d.len() < 41 && start.elapsed() < budget) {
        let t = Instant::now();
        a.run(xa.to_vec())?;
        let ta = t.elapsed().as_secs_f64();
        let t = Instant::now();
        b.run(xb.to_vec())?;
        d.push((ta - t.elapsed().as_secs_f64()) * 1e3);
    }
    d.sort_by(f64::total_cmp);
    Ok(d[d.len() / 2])
}

/// Measured (bytes, ms) copies host→device and device→host, each the difference of two runs
/// that differ only in that copy. `launch_ms` is the one launch the download's baseline has
/// more (its Slice).
pub fn measure_transfers(backend: &dyn Backend, quick: bool, budget: Duration, launch_ms: f64, progress: &mut dyn FnMut(&str)) -> Result<(Vec<(u64, f64)>, Vec<(u64, f64)>)> {
    let timer = Timer { backend, budget };
    let one = vec![rand_tensor(&[1], 3)];
    let base = timer.compile(upload_model(1)?)?;
    let (mut up, mut down) = (vec![], vec![]);
    for bytes in transfer_sizes(quick) {
        progress(&format!("copy {} KiB", bytes >> 10));
        let n = (bytes / 4) as usize;
        let x = [rand_tensor(&[n], 4)];
        let sliced = timer.compile(upload_model(n)?)?;
        let echo = timer.compile(echo_model(n)?)?;
        let u = paired_diff_ms(&*sliced, &x, &*base, &one, budget)?;
        let d = paired_diff_ms(&*echo, &x, &*sliced, &x, budget)? + launch_ms;
        up.push((bytes, u.max(1e-4)));
        down.push((bytes, d.max(1e-4)));
    }
    Ok((up, down))
}

/// Measures `backend`'s profile.
pub fn measure(backend: &dyn Backend, options: ProfileOptions, progress: Progress) -> Result<DeviceProfile> {
    let quick = options.quick;
    let benches = benches(quick);
    let host = backend.name() == "cpu";
    let total = 3 + benches.len() + super::op_benches::op_benches().len() + if host { 0 } else { transfer_sizes(quick).len() };
    let mut step = 0;
    let timer = Timer { backend, budget: Duration::from_millis(if quick { 60 } else { 150 }) };
    let target_ms = if quick { 6.0 } else { 15.0 };

    // Launch cost: a chain of one-element Relus; run overhead: the length-1 chain's rest.
    progress("launch overhead", step, total);
    let tiny = Bench { label: "relu 1".into(), class: OpClass::Elementwise, shape: vec![1], work: Work::default(), op: BenchOp::Relu };
    let (launch_ms, t1) = timer.per_op(&tiny, 2.0, 0.0)?;
    let run_overhead_ms = (t1 - launch_ms).max(0.0);
    step += 1;
    progress("per-node timing overhead", step, total);
    let timed_node_overhead_us = {
        let exe = timer.compile(chain_model(&tiny, 16)?)?;
        let x = vec![rand_tensor(&[1], 1)];
        let mut per = vec![];
        for _ in 0..5 {
            let (_, times) = exe.run_timed(x.clone())?;
            per.push(times.iter().map(|t| t.ms).sum::<f64>() / times.len().max(1) as f64);
        }
        per.sort_by(f64::total_cmp);
        ((per[per.len() / 2] - launch_ms) * 1e3).max(0.0)
    };
    step += 1;

    // The sweep fits a time budget on slow devices (a software rasteriser runs a large
    // convolution for seconds): past each class's first two sizes, a benchmark whose op the
    // class's last rate predicts above the cap, or that would start after the deadline, is left
    // out (the curve holds its last rate beyond its points).
    let started = Instant::now();
    let (deadline, op_cap_ms) = if quick { (Duration::from_secs(15), 10.0) } else { (Duration::from_secs(40), 40.0) };
    let mut busy: Vec<(&Bench, f64)> = vec![];
    let mut last_rate: BTreeMap<OpClass, (usize, f64)> = BTreeMap::new();
    for b in &benches {
        progress(&b.label, step, total);
        step += 1;
        let size = if b.class.compute_bound() { b.work.flops } else { b.work.bytes };
        if let Some(&(seen, rate)) = last_rate.get(&b.class) {
            let estimate_ms = launch_ms + size / rate * 1e3;
            if seen >= 2 && (estimate_ms > op_cap_ms || started.elapsed() > deadline) {
                continue;
            }
        }
        let (ms, _) = timer.per_op(b, target_ms, run_overhead_ms)?;
        let s = ((ms - b.launches() * launch_ms) * 1e-3).max(ms * 1e-3 * 0.05);
        busy.push((b, s));
        let e = last_rate.entry(b.class).or_insert((0, 0.0));
        *e = (e.0 + 1, size / s);
    }
    let mut points: BTreeMap<OpClass, Vec<(f64, f64)>> = BTreeMap::new();
    for &(b, s) in busy.iter().filter(|(b, _)| !b.class.compute_bound()) {
        points.entry(b.class).or_default().push((b.work.bytes, b.work.bytes / s));
    }
    let elementwise = points.get(&OpClass::Elementwise).cloned().unwrap_or_default();
    let bandwidth = Curve::new(elementwise).map_err(crate::error::Error::Profile)?;
    let timed: Vec<(OpClass, f64, f64, f64)> = busy.iter().filter(|(b, _)| b.class.compute_bound()).map(|&(b, s)| (b.class, b.work.flops, b.work.bytes, s)).collect();
    for (class, pts) in compute_points(&timed, &bandwidth) {
        points.entry(class).or_default().extend(pts);
    }
    let mut rates = BTreeMap::new();
    for (class, pts) in points {
        rates.insert(class, Curve::new(pts).map_err(crate::error::Error::Profile)?);
    }
    // Ops without a class of their own run at a quarter of the product rate (a guess that
    // calibration corrects).
    if let Some(g) = rates.get(&OpClass::Gemm) {
        rates.insert(OpClass::Other, Curve { points: g.points.iter().map(|&(s, r)| (s, r / 4.0)).collect() });
    }
    let mut profile = DeviceProfile {
        version: super::profile::PROFILE_VERSION,
        device: backend.name().to_string(),
        kind: ProfileKind::Measured,
        fingerprint: Some(fingerprint(backend)),
        launch_us: launch_ms * 1e3,
        run_overhead_us: run_overhead_ms * 1e3,
        timed_node_overhead_us,
        rates,
        bandwidth,
        to_device: Link::LOCAL,
        to_host: Link::LOCAL,
        memory_bytes: if host { host_memory_bytes() } else { None },
        im2col_workspace: backend.name() == "cuda",
        calibration: BTreeMap::new(),
        op_calibration: BTreeMap::new(),
        op_factors: BTreeMap::new(),
        size_calibration: BTreeMap::new(),
        calibrated_on: vec![],
        executes_on: None,
        paced: false,
    };
    profile.op_factors = super::op_benches::measure(&timer, &profile, target_ms, op_cap_ms, if quick { Duration::from_secs(6) } else { Duration::from_secs(15) }, &mut |what| {
        progress(what, step, total);
        step += 1;
    })?;
    if !host {
        let (up, down) = measure_transfers(backend, quick, timer.budget, launch_ms, &mut |what| {
            progress(what, step, total);
            step += 1;
        })?;
        profile.to_device = Link::fit_with_curve(&up).unwrap_or(Link::LOCAL);
        profile.to_host = Link::fit_with_curve(&down).unwrap_or(Link::LOCAL);
    }
    progress("done", total, total);
    profile.validate()?;
    Ok(profile)
}

/// Physical memory of this machine (Linux), for the CPU's capacity.
pub fn host_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The (FLOPs, FLOP/s) points of each compute-bound class from its timed benchmarks (class,
/// FLOPs, bytes, seconds). A product the memory roof explains (`bandwidth` would take at least
/// half its time just to move its bytes) says nothing of the compute rate, so it is left out,
/// unless the roof explains every one of the class's products: a bandwidth measured while the
/// machine was busy can come out that low, and a class without a curve would be predicted from
/// nothing.
fn compute_points(timed: &[(OpClass, f64, f64, f64)], bandwidth: &Curve) -> BTreeMap<OpClass, Vec<(f64, f64)>> {
    let mut by_class: BTreeMap<OpClass, Vec<(f64, f64, bool)>> = BTreeMap::new();
    for &(class, flops, bytes, s) in timed {
        let memory_bound = bandwidth.seconds(bytes).unwrap_or(0.0) >= 0.5 * s;
        by_class.entry(class).or_default().push((flops, flops / s, memory_bound));
    }
    by_class
        .into_iter()
        .map(|(class, pts)| {
            let all_memory_bound = pts.iter().all(|p| p.2);
            (class, pts.into_iter().filter(|p| all_memory_bound || !p.2).map(|(size, rate, _)| (size, rate)).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every benchmark builds, and the work it is credited with is the work the cost model
    /// reads off the same nodes in a real model (else the curves would be in other units than
    /// the predictions they serve).
    #[test]
    fn every_benchmark_is_credited_the_work_of_its_nodes() {
        for b in benches(false) {
            let g = chain_model(&b, 1).unwrap_or_else(|e| panic!("{}: {e}", b.label));
            let works: Vec<Work> = g.g.node_indices().map(|n| super::super::node_work(&g, n)).filter(|w| w.class.is_some()).collect();
            assert!(!works.is_empty(), "{}: no compute node", b.label);
            assert!(works.iter().all(|w| w.class == Some(b.class)), "{}: classes {:?}", b.label, works.iter().map(|w| w.class).collect::<Vec<_>>());
            let (flops, bytes): (f64, f64) = (works.iter().map(|w| w.flops).sum(), works.iter().map(|w| w.bytes).sum());
            let close = |a: f64, e: f64| (a - e).abs() <= 0.02 * e.max(1.0);
            if b.class.compute_bound() {
                assert!(close(flops, b.work.flops), "{}: nodes do {flops} FLOPs, credited {}", b.label, b.work.flops);
            } else {
                assert!(close(bytes, b.work.bytes), "{}: nodes move {bytes} B, credited {}", b.label, b.work.bytes);
            }
        }
    }

    /// Products the memory roof explains are left out of their class's curve, unless it
    /// explains them all. Bandwidth 1 GB/s: 1 MB takes 1 ms to move.
    #[test]
    fn products_the_memory_roof_explains_are_left_out_unless_all_are() {
        let bandwidth = Curve::flat(1e9);
        let timed = [
            // 1 MB in 1 ms: the roof explains it. 1 MB in 4 ms: the roof takes a quarter.
            (OpClass::Gemm, 1e6, 1e6, 1e-3),
            (OpClass::Gemm, 8e6, 1e6, 4e-3),
            // Every conv is explained: all are kept.
            (OpClass::Conv, 1e6, 1e6, 1e-3),
            (OpClass::Conv, 2e6, 2e6, 1.5e-3),
        ];
        let pts = compute_points(&timed, &bandwidth);
        assert_eq!(pts[&OpClass::Gemm], vec![(8e6, 2e9)]);
        assert_eq!(pts[&OpClass::Conv], vec![(1e6, 1e9), (2e6, 2e6 / 1.5e-3)]);
    }

    /// A fan keeps every copy: `len` pools of the one input, each an output.
    #[test]
    fn a_fan_has_one_output_per_link() {
        let b = benches(true).into_iter().find(|b| matches!(b.op, BenchOp::MaxPool)).unwrap();
        let g = chain_model(&b, 3).unwrap();
        assert_eq!(g.outputs.len(), 3);
        let (c, h) = (b.shape[1], b.shape[2]);
        for o in &g.outputs {
            assert_eq!(g.g[o.node].outputs[o.slot].shape.as_deref(), Some(&[1, c, h / 2, h / 2][..]));
        }
    }
}
