//! The roofline cost model over device profiles: a node costs its launch plus the longer of
//! its compute time (FLOPs over its class's rate at that size) and its memory time (bytes over
//! the device's bandwidth at that size), times its class's calibration factor.

use super::{node_work, CostModel, DeviceProfile, OpClass, ProfileSet, Work};
use crate::error::{Error, Result};
use crate::graph::Graph;
use petgraph::stable_graph::NodeIndex;

/// The device whose memory is host memory.
const HOST: &str = "cpu";

#[derive(Clone, Debug)]
pub struct Roofline {
    pub profiles: ProfileSet,
}

impl Roofline {
    pub fn new(profiles: ProfileSet) -> Roofline {
        Roofline { profiles }
    }

    pub fn profile(&self, device: &str) -> Result<&DeviceProfile> {
        self.profiles.get(device).ok_or_else(|| {
            let known: Vec<&str> = self.profiles.devices.iter().map(|p| p.device.as_str()).collect();
            Error::Profile(format!("no profile for device '{device}' (profiled: {known:?})"))
        })
    }

    /// Predicted milliseconds of `work` on a device, before calibration.
    pub fn work_ms(p: &DeviceProfile, w: &Work) -> f64 {
        let Some(class) = w.class else { return 0.0 };
        if w.steps > 1.0 {
            // One step after another, each a launch and a product at its own (small) size.
            let step = Work { flops: w.flops / w.steps, bytes: w.bytes / w.steps, written: w.written / w.steps, steps: 1.0, class: w.class };
            return w.steps * Self::work_ms(p, &step);
        }
        if class == OpClass::View {
            return p.launch_us * 1e-3;
        }
        let memory = p.bandwidth.seconds(w.bytes).unwrap_or(0.0);
        let curve = p.rates.get(&class).or_else(|| p.rates.get(&OpClass::Other));
        let own = match curve {
            Some(c) if class.compute_bound() => c.seconds(w.flops).unwrap_or(0.0),
            Some(c) => c.seconds(w.bytes).unwrap_or(0.0),
            None => 0.0,
        };
        (p.launch_us * 1e-6 + own.max(memory)) * 1e3
    }

    /// [`Self::work_ms`] with the micro-benchmarks' factor for `op_type` on the work (not
    /// the launch): the prediction calibration starts from.
    pub fn base_ms(p: &DeviceProfile, w: &Work, op_type: &str) -> f64 {
        let ms = Self::work_ms(p, w);
        let launch = if w.class.is_some() { p.launch_us * 1e-3 } else { 0.0 };
        launch + (ms - launch).max(0.0) * p.op_factor(op_type) + Self::epilogue_ms(p, w, op_type)
    }

    /// The arithmetic of activations fused into the node, over its output
    /// ([`DeviceProfile::epilogue_passes`] elementwise passes).
    fn epilogue_ms(p: &DeviceProfile, w: &Work, op_type: &str) -> f64 {
        let passes = p.epilogue_passes(op_type);
        if passes == 0.0 || w.written == 0.0 {
            return 0.0;
        }
        let pass = Work { bytes: 2.0 * w.written, class: Some(OpClass::Elementwise), ..Default::default() };
        (Self::work_ms(p, &pass) - p.launch_us * 1e-3).max(0.0) * passes
    }

    /// Predicted milliseconds of `work` by an op of `op_type` on a device, calibrated.
    pub fn calibrated_ms(p: &DeviceProfile, w: &Work, op_type: &str) -> f64 {
        let f = w.class.map(|c| p.correction(c, op_type, w)).unwrap_or(1.0);
        Self::base_ms(p, w, op_type) * f
    }
}

impl CostModel for Roofline {
    fn devices(&self) -> Vec<String> {
        self.profiles.devices.iter().map(|p| p.device.clone()).collect()
    }

    fn node_ms(&self, graph: &Graph, node: NodeIndex, device: &str) -> Result<f64> {
        Ok(Self::calibrated_ms(self.profile(device)?, &node_work(graph, node), &super::op_type(graph, node)))
    }

    fn transfer_ms(&self, from: &str, to: &str, bytes: u64) -> Result<f64> {
        if from == to {
            return Ok(0.0);
        }
        // To host memory from `from` (free if it is the host, profiled or not), then on to `to`.
        let up = if from == HOST { 0.0 } else { self.profile(from)?.to_host.ms(bytes) };
        let down = if to == HOST { 0.0 } else { self.profile(to)?.to_device.ms(bytes) };
        Ok(up + down)
    }

    fn run_overhead_ms(&self, device: &str) -> Result<f64> {
        Ok(self.profile(device)?.run_overhead_us * 1e-3)
    }

    fn memory_bytes(&self, graph: &Graph, nodes: &[NodeIndex], device: &str) -> Result<u64> {
        let p = self.profile(device)?;
        Ok(super::memory::footprint(graph, nodes, p.im2col_workspace).total())
    }

    fn capacity_bytes(&self, device: &str) -> Option<u64> {
        self.profiles.get(device).and_then(|p| p.memory_bytes)
    }
}

/// What running a whole graph on one device is predicted to cost.
#[derive(Clone, Debug, Default)]
pub struct GraphPrediction {
    pub device: String,
    pub total_ms: f64,
    pub overhead_ms: f64,
    /// Graph inputs to the device and outputs back to the host.
    pub transfer_ms: f64,
    /// Per compute node, in topological order: (node, ms).
    pub nodes: Vec<(NodeIndex, f64)>,
}

/// Predicts `graph` run whole on `device`: the run overhead, the inputs' and outputs' copies
/// and every node.
pub fn predict_graph(model: &dyn CostModel, graph: &Graph, device: &str) -> Result<GraphPrediction> {
    let mut pr = GraphPrediction { device: device.into(), overhead_ms: model.run_overhead_ms(device)?, ..Default::default() };
    for n in graph.toposort()? {
        if !graph.g[n].is_compute() {
            continue;
        }
        pr.nodes.push((n, model.node_ms(graph, n, device)?));
    }
    for gi in &graph.inputs {
        let bytes = graph.g[gi.node].outputs[0].nbytes() as u64;
        pr.transfer_ms += model.transfer_ms("cpu", device, bytes)?;
    }
    for o in &graph.outputs {
        let bytes = graph.g[o.node].outputs[o.slot].nbytes() as u64;
        pr.transfer_ms += model.transfer_ms(device, "cpu", bytes)?;
    }
    pr.total_ms = pr.overhead_ms + pr.transfer_ms + pr.nodes.iter().map(|x| x.1).sum::<f64>();
    Ok(pr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::{Curve, Link, ProfileKind};
    use std::collections::BTreeMap;

    fn device(rates: BTreeMap<OpClass, Curve>) -> DeviceProfile {
        DeviceProfile {
            version: crate::cost::profile::PROFILE_VERSION,
            device: "gpu0".into(),
            kind: ProfileKind::Virtual,
            fingerprint: None,
            launch_us: 5.0,
            run_overhead_us: 20.0,
            timed_node_overhead_us: 0.0,
            rates,
            bandwidth: Curve::flat(100e9),
            to_device: Link::new(10.0, 10.0),
            to_host: Link::new(20.0, 5.0),
            memory_bytes: None,
            im2col_workspace: false,
            calibration: BTreeMap::new(),
            op_calibration: BTreeMap::new(),
            op_factors: BTreeMap::new(),
            size_calibration: BTreeMap::new(),
            calibrated_on: vec![],
            executes_on: Some("cpu".into()),
            paced: false,
        }
    }

    #[test]
    fn compute_bound_and_memory_bound_by_hand() {
        let mut rates = BTreeMap::new();
        rates.insert(OpClass::Gemm, Curve::flat(1e12));
        let p = device(rates);
        // 2 GFLOP over 1 MB: compute 2 ms, memory 0.01 ms; + 5 µs launch = 2.005 ms.
        let w = Work { flops: 2e9, bytes: 1e6, class: Some(OpClass::Gemm), ..Default::default() };
        assert!((Roofline::work_ms(&p, &w) - 2.005).abs() < 1e-9);
        // A thin product: 2 MFLOP over 100 MB: memory-bound at 100 GB/s = 1 ms (+ launch).
        let thin = Work { flops: 2e6, bytes: 1e8, class: Some(OpClass::Gemm), ..Default::default() };
        assert!((Roofline::work_ms(&p, &thin) - 1.005).abs() < 1e-9);
        // Elementwise has no curve of its own here: Other's absent too, so memory alone.
        let e = Work { flops: 1e6, bytes: 4e8, class: Some(OpClass::Elementwise), ..Default::default() };
        assert!((Roofline::work_ms(&p, &e) - 4.005).abs() < 1e-9);
        // Views cost their launch; folded nodes nothing.
        assert!((Roofline::work_ms(&p, &Work { class: Some(OpClass::View), ..Default::default() }) - 0.005).abs() < 1e-12);
        assert_eq!(Roofline::work_ms(&p, &Work::default()), 0.0);
        // A recurrent layer's 16 steps: each 1/16 of the work and a launch of its own.
        let rec = Work { steps: 16.0, ..w };
        assert!((Roofline::work_ms(&p, &rec) - 16.0 * (0.005 + 2.0 / 16.0)).abs() < 1e-9);
        // Calibration scales the whole node: here fitted on 1x1 convolutions (a Conv family
        // seen, factor 1 of its own over the class's 1.5).
        let mut q = p.clone();
        q.calibration.insert(OpClass::Gemm, 1.5);
        q.op_calibration.insert("Conv+Relu".into(), 1.0);
        assert!((Roofline::calibrated_ms(&q, &w, "Conv") - 1.5 * 2.005).abs() < 1e-9);
        // A family the calibration never ran takes the class's factor, unless the
        // micro-benchmarks timed it: MatMul is the GEMM curve's own benchmark.
        assert!((Roofline::calibrated_ms(&q, &w, "Gemm") - 1.5 * 2.005).abs() < 1e-9);
        assert!((Roofline::calibrated_ms(&q, &w, "MatMul") - 2.005).abs() < 1e-9);
        // An op type's own factor multiplies its class's.
        q.op_calibration.insert("MatMul".into(), 2.0);
        assert!((Roofline::calibrated_ms(&q, &w, "MatMul") - 3.0 * 2.005).abs() < 1e-9);
        assert!((Roofline::calibrated_ms(&q, &w, "Gemm") - 1.5 * 2.005).abs() < 1e-9);
        // A micro-benchmark factor scales the work, not the launch, for the op and its fused forms.
        let mut r = p.clone();
        r.op_factors.insert("Conv/3d".into(), 4.0);
        assert!((Roofline::base_ms(&r, &w, "Conv+Relu/3d") - (0.005 + 4.0 * 2.0)).abs() < 1e-9);
        assert!((Roofline::base_ms(&r, &w, "Conv") - 2.005).abs() < 1e-9);
        // A fused activation adds its benchmarked twin's factor beyond one elementwise pass
        // over the output: 1 MB written is a 2 MB pass, 0.02 ms at 100 GB/s; Sigmoid at 3x
        // adds two of them to Conv+Swish. Relu adds nothing; Gelu alone reads Erf's factor.
        r.op_factors.insert("Sigmoid".into(), 3.0);
        r.op_factors.insert("Erf".into(), 2.5);
        let wrote = Work { written: 1e6, ..w };
        assert!((Roofline::base_ms(&r, &wrote, "Conv+Swish") - (2.005 + 2.0 * 0.02)).abs() < 1e-9);
        assert!((Roofline::base_ms(&r, &wrote, "Conv+Relu") - 2.005).abs() < 1e-9);
        assert!((r.op_factor("Gelu") - 2.5).abs() < 1e-12);
    }

    #[test]
    fn transfers_go_through_host_memory() {
        let mut cpu = device(BTreeMap::new());
        cpu.device = "cpu".into();
        let gpu0 = device(BTreeMap::new());
        let mut gpu1 = device(BTreeMap::new());
        gpu1.device = "gpu1".into();
        let m = Roofline::new(ProfileSet { devices: vec![cpu, gpu0, gpu1] });
        // 10 MB up: 10 µs + 1 ms. Down: 20 µs + 2 ms. gpu0 -> gpu1: down then up.
        assert!((m.transfer_ms("cpu", "gpu0", 10_000_000).unwrap() - 1.01).abs() < 1e-9);
        assert!((m.transfer_ms("gpu0", "cpu", 10_000_000).unwrap() - 2.02).abs() < 1e-9);
        assert!((m.transfer_ms("gpu0", "gpu1", 10_000_000).unwrap() - 3.03).abs() < 1e-9);
        assert_eq!(m.transfer_ms("gpu1", "gpu1", 1 << 30).unwrap(), 0.0);
        assert!(m.transfer_ms("cpu", "tpu", 1).is_err());
    }
}
