//! How close the cost model comes: a model's predicted time against its measured median, per
//! node (share within ±25%, Spearman rank correlation) and per transfer size.

use super::{node_work, CostModel, Roofline, Work};
use crate::backend::Executable;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::session::{Session, SessionOptions};
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One node's measured time.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MeasuredNode {
    pub name: String,
    pub op_type: String,
    pub work: Work,
    /// Median over the timed runs, the per-node timing overhead removed.
    pub measured_ms: f64,
}

/// A model measured on one device.
pub struct ModelMeasurement {
    pub model: String,
    pub device: String,
    pub batch: usize,
    pub graph: Arc<Graph>,
    /// Median host-to-host time of a whole run.
    pub whole_ms: f64,
    pub nodes: Vec<MeasuredNode>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

/// Runs `model` at `batch` on `device` (the session's passes applied): a whole-run median over
/// `budget`, then per-node medians over timed runs. `timed_node_overhead_us` is removed from each node.
pub fn measure_model(path: &std::path::Path, device: &str, batch: usize, budget: Duration, timed_node_overhead_us: f64) -> Result<ModelMeasurement> {
    let session = Session::from_path(path, SessionOptions { device: device.into(), ..Default::default() })?;
    let bindings = crate::session::default_bindings(session.graph(), batch, 16, &Default::default());
    let inputs = session.random_inputs(&bindings, 0)?;
    let prepared = session.prepare(&bindings)?;
    let ordered: Vec<Tensor> = session.inputs().iter().map(|gi| inputs.iter().find(|(n, _)| n == &gi.name).map(|(_, t)| t.clone()).unwrap()).collect();
    let exe: &dyn Executable = &*prepared.executable;
    exe.run(ordered.clone())?;
    let (mut whole, start) = (vec![], Instant::now());
    while whole.len() < 3 || (whole.len() < 50 && start.elapsed() < budget) {
        let t = Instant::now();
        exe.run(ordered.clone())?;
        whole.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let graph = prepared.graph.clone();
    let by_name: HashMap<&str, petgraph::stable_graph::NodeIndex> = graph.g.node_indices().map(|n| (graph.g[n].name.as_str(), n)).collect();
    let mut per_node: Vec<Vec<f64>> = vec![];
    let mut names: Vec<(String, String)> = vec![];
    let start = Instant::now();
    for round in 0.. {
        let (_, times) = exe.run_timed(ordered.clone())?;
        if round == 0 {
            names = times.iter().map(|t| (t.node.clone(), t.op_type.clone())).collect();
            per_node = vec![vec![]; times.len()];
        }
        for (v, t) in per_node.iter_mut().zip(&times) {
            v.push(t.ms);
        }
        if round >= 1 && (round >= 20 || start.elapsed() > budget) {
            break;
        }
    }
    let mut nodes = vec![];
    for ((name, op_type), mut v) in names.into_iter().zip(per_node) {
        let Some(&n) = by_name.get(name.as_str()) else { continue };
        let ms = (median(&mut v) - timed_node_overhead_us * 1e-3).max(0.0);
        nodes.push(MeasuredNode { name, op_type, work: node_work(&graph, n), measured_ms: ms });
    }
    let model = path.parent().filter(|_| path.file_name().is_some_and(|f| f == "model.onnx")).unwrap_or(path).file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
    Ok(ModelMeasurement { model, device: device.into(), batch, graph, whole_ms: median(&mut whole), nodes })
}

/// Spearman's rank correlation (average ranks for ties).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    fn ranks(v: &[f64]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                j += 1;
            }
            let avg = (i + j) as f64 / 2.0 + 1.0;
            for &k in &idx[i..=j] {
                r[k] = avg;
            }
            i = j + 1;
        }
        r
    }
    let n = a.len().min(b.len());
    if n < 2 {
        return f64::NAN;
    }
    let (ra, rb) = (ranks(&a[..n]), ranks(&b[..n]));
    let mean = (n as f64 + 1.0) / 2.0;
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        cov += (ra[i] - mean) * (rb[i] - mean);
        va += (ra[i] - mean).powi(2);
        vb += (rb[i] - mean).powi(2);
    }
    if va == 0.0 || vb == 0.0 { f64::NAN } else { cov / (va * vb).sqrt() }
}

/// Predicted against measured for one model on one device.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FidelityRow {
    pub model: String,
    pub device: String,
    pub batch: usize,
    /// Whether this model was among those the profile was calibrated on.
    pub calibrated_on: bool,
    pub predicted_ms: f64,
    pub measured_ms: f64,
    /// (predicted − measured) / measured, in percent.
    pub error_pct: f64,
    pub nodes: usize,
    /// Share of nodes predicted within ±25% of their measured time.
    pub nodes_within_25: f64,
    pub spearman: f64,
    /// Per op class: (predicted, measured) ms summed over its nodes.
    pub by_class: std::collections::BTreeMap<super::OpClass, (f64, f64)>,
    /// Per op type as calibration keys it (`Conv+Relu/3d`): (predicted, measured) ms summed.
    pub by_op_type: std::collections::BTreeMap<String, (f64, f64)>,
}

pub fn fidelity(model: &dyn CostModel, m: &ModelMeasurement, calibrated_on: bool) -> Result<FidelityRow> {
    let predicted = super::roofline::predict_graph(model, &m.graph, &m.device)?;
    let by_name: HashMap<&str, f64> = predicted.nodes.iter().map(|(n, ms)| (m.graph.g[*n].name.as_str(), *ms)).collect();
    let (mut p, mut q) = (vec![], vec![]);
    let mut by_class: std::collections::BTreeMap<super::OpClass, (f64, f64)> = Default::default();
    let mut by_op_type: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for n in &m.nodes {
        if let Some(&ms) = by_name.get(n.name.as_str()) {
            p.push(ms);
            q.push(n.measured_ms);
            let e = by_op_type.entry(n.op_type.clone()).or_default();
            e.0 += ms;
            e.1 += n.measured_ms;
            if let Some(c) = n.work.class {
                let e = by_class.entry(c).or_default();
                e.0 += ms;
                e.1 += n.measured_ms;
            }
        }
    }
    let within = p.iter().zip(&q).filter(|(p, q)| (*p - *q).abs() <= 0.25 * *q).count();
    Ok(FidelityRow {
        model: m.model.clone(),
        device: m.device.clone(),
        batch: m.batch,
        calibrated_on,
        predicted_ms: predicted.total_ms,
        measured_ms: m.whole_ms,
        error_pct: (predicted.total_ms - m.whole_ms) / m.whole_ms * 100.0,
        nodes: p.len(),
        nodes_within_25: if p.is_empty() { 0.0 } else { within as f64 / p.len() as f64 },
        spearman: spearman(&p, &q),
        by_class,
        by_op_type,
    })
}

/// A copy size predicted against a fresh measurement.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TransferRow {
    pub device: String,
    pub direction: String,
    pub bytes: u64,
    pub predicted_ms: f64,
    pub measured_ms: f64,
    pub error_pct: f64,
}

/// Measures `device`'s copies again and compares them with the profile's link model.
pub fn transfer_fidelity(model: &Roofline, device: &str, quick: bool) -> Result<Vec<TransferRow>> {
    let p = model.profile(device)?.clone();
    if p.is_host() || p.kind == super::ProfileKind::Virtual {
        return Ok(vec![]);
    }
    let backend = crate::backend::by_name(device)?;
    let (up, down) = super::profiler::measure_transfers(&*backend, quick, Duration::from_millis(200), p.launch_us * 1e-3, &mut |_| {})?;
    let mut rows = vec![];
    for (dir, samples, link) in [("to_device", up, &p.to_device), ("to_host", down, &p.to_host)] {
        for (bytes, ms) in samples {
            let pred = link.ms(bytes);
            rows.push(TransferRow { device: device.into(), direction: dir.into(), bytes, predicted_ms: pred, measured_ms: ms, error_pct: (pred - ms) / ms * 100.0 });
        }
    }
    if rows.is_empty() {
        return Err(Error::Profile(format!("no transfers measured on {device}")));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::spearman;

    #[test]
    fn spearman_by_hand() {
        // Same order: 1; reversed: -1; one swap of five: 1 - 6·2/(5·24) = 0.9.
        assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[1.0, 2.0, 4.0, 3.0, 5.0]) - 0.9).abs() < 1e-12);
        assert!(spearman(&[1.0], &[1.0]).is_nan());
    }
}
