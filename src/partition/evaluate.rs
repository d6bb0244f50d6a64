//! What a placement costs under the cost model, run as the sequential executor runs it:
//! partitions (maximal runs of one device in topological order) one after another, each paying
//! its device's run overhead, and every tensor copied once to each other device that reads it.

use super::{Placement, Problem};
use crate::error::Result;
use crate::plan::{self, Plan, PlannedNode, Predicted, Transfer};
use std::collections::BTreeMap;

/// Partitions as (device, first node, end) ranges over the problem's order.
pub fn partitions(placement: &Placement) -> Vec<(usize, usize, usize)> {
    let mut v: Vec<(usize, usize, usize)> = vec![];
    for (i, &d) in placement.iter().enumerate() {
        match v.last_mut() {
            Some(last) if last.0 == d => last.2 = i + 1,
            _ => v.push((d, i, i + 1)),
        }
    }
    v
}

/// Where tensor `t` lives under `placement` and every other device it must be copied to (the
/// devices of its readers, and the host for a graph output), each once.
fn destinations(p: &Problem, placement: &Placement, t: usize) -> (usize, Vec<usize>) {
    let tensor = &p.tensors[t];
    let from = tensor.producer.map(|i| placement[i]).unwrap_or(p.host);
    let mut to: Vec<usize> = tensor.consumers.iter().map(|&c| placement[c]).chain(tensor.output.then_some(p.host)).filter(|&d| d != from).collect();
    to.sort_unstable();
    to.dedup();
    (from, to)
}

/// Every copy a placement needs: (tensor index, from device, to device).
pub fn transfers(p: &Problem, placement: &Placement) -> Vec<(usize, usize, usize)> {
    (0..p.tensors.len())
        .flat_map(|t| {
            let (from, to) = destinations(p, placement, t);
            to.into_iter().map(move |d| (t, from, d))
        })
        .collect()
}

/// Predicted cost of copying tensor `t` under `placement`.
fn tensor_ms(p: &Problem, placement: &Placement, t: usize) -> f64 {
    let (from, to) = destinations(p, placement, t);
    to.into_iter().map(|d| p.transfer_ms(from, d, p.tensors[t].bytes)).sum()
}

/// The run overhead charged at position `i`: where a partition starts.
fn start_ms(p: &Problem, placement: &Placement, i: usize) -> f64 {
    if i == 0 || placement[i] != placement[i - 1] { p.run_overhead_ms[placement[i]] } else { 0.0 }
}

/// The change in predicted latency if nodes `a..b` move to device `e`, in time proportional to
/// the nodes and the tensors they touch (not the whole graph).
pub fn move_delta_ms(p: &Problem, placement: &mut Placement, a: usize, b: usize, e: usize) -> f64 {
    let n = placement.len();
    let mut tensors: Vec<usize> = (a..b).flat_map(|i| p.touches[i].iter().copied()).collect();
    tensors.sort_unstable();
    tensors.dedup();
    let local = |pl: &Placement| -> f64 { (a..=b.min(n - 1)).map(|i| start_ms(p, pl, i)).sum::<f64>() + tensors.iter().map(|&t| tensor_ms(p, pl, t)).sum::<f64>() };
    let before = local(placement);
    let old: Vec<usize> = placement[a..b].to_vec();
    let compute: f64 = (a..b).map(|i| p.cost[i][e].unwrap_or(f64::INFINITY) - p.cost[i][placement[i]].unwrap_or(f64::INFINITY)).sum();
    placement[a..b].iter_mut().for_each(|x| *x = e);
    let after = local(placement);
    placement[a..b].copy_from_slice(&old);
    after - before + compute
}

/// Predicted latency of a placement, ms.
pub fn latency_ms(p: &Problem, placement: &Placement) -> f64 {
    let compute: f64 = partitions(placement).iter().map(|&(d, a, b)| p.run_overhead_ms[d] + (a..b).map(|i| p.cost[i][d].unwrap_or(f64::INFINITY)).sum::<f64>()).sum();
    let copies: f64 = transfers(p, placement).iter().map(|&(t, f, d)| p.transfer_ms(f, d, p.tensors[t].bytes)).sum();
    compute + copies
}

/// Predicted time between requests when requests are pipelined: every device (its partitions'
/// run overheads and nodes) and every copy lane (one direction between two devices) is a
/// resource busy for its share of each request, working on different requests at once; the
/// busiest one sets the pace.
pub fn period_ms(p: &Problem, placement: &Placement) -> f64 {
    let nd = p.devices.len();
    let mut busy = vec![0.0; nd + nd * nd];
    for (d, a, b) in partitions(placement) {
        busy[d] += p.run_overhead_ms[d] + (a..b).map(|i| p.cost[i][d].unwrap_or(f64::INFINITY)).sum::<f64>();
    }
    for (t, f, d) in transfers(p, placement) {
        busy[nd + f * nd + d] += p.transfer_ms(f, d, p.tensors[t].bytes);
    }
    busy.into_iter().fold(0.0, f64::max)
}

/// Requests per second at [`period_ms`].
pub fn throughput_per_s(p: &Problem, placement: &Placement) -> f64 {
    let period = period_ms(p, placement);
    if period > 0.0 { 1e3 / period } else { 0.0 }
}

/// Why node `i` sits on its device, by what moving it elsewhere would change.
fn reason(p: &Problem, placement: &Placement, i: usize, algorithm: &str) -> String {
    let d = placement[i];
    let op = &p.graph.g[p.order[i]].op.name();
    if p.pinned[i].is_some() {
        return "pinned".into();
    }
    let others: Vec<usize> = (0..p.devices.len()).filter(|&e| e != d && p.cost[i][e].is_some()).collect();
    if others.is_empty() {
        return format!("only {} supports {op}", p.devices[d]);
    }
    let mut scratch = placement.clone();
    let (mut best_alt, mut best_delta) = (others[0], f64::INFINITY);
    for &e in &others {
        let delta = move_delta_ms(p, &mut scratch, i, i + 1, e);
        if delta < best_delta {
            (best_alt, best_delta) = (e, delta);
        }
    }
    let (here, there) = (p.cost[i][d].unwrap_or(0.0), p.cost[i][best_alt].unwrap_or(0.0));
    let alt = &p.devices[best_alt];
    if best_delta >= 0.0 {
        let node_gain = there - here;
        if node_gain >= 0.0 {
            format!("cheaper by {best_delta:.3} ms than on {alt} ({here:.3} vs {there:.3} ms, transfers included)")
        } else {
            format!("saves {best_delta:.3} ms of transfers and overheads over {alt}, which computes it {:.3} ms faster", -node_gain)
        }
    } else {
        format!("placed by {algorithm}; {alt} would be {:.3} ms faster", -best_delta)
    }
}

/// The plan of a placement.
pub fn plan(p: &Problem, placement: &Placement, algorithm: &str) -> Result<Plan> {
    let base = latency_ms(p, placement);
    let mut nodes = vec![];
    for (i, &n) in p.order.iter().enumerate() {
        let node = &p.graph.g[n];
        let predicted_ms: BTreeMap<String, f64> = p.devices.iter().zip(&p.cost[i]).filter_map(|(d, c)| c.map(|c| (d.clone(), c))).collect();
        nodes.push(PlannedNode { name: node.name.clone(), op_type: crate::cost::op_type(p.graph, n), device: p.devices[placement[i]].clone(), reason: reason(p, placement, i, algorithm), predicted_ms });
    }
    let partitions = partitions(placement)
        .into_iter()
        .enumerate()
        .map(|(id, (d, a, b))| plan::Partition {
            id,
            device: p.devices[d].clone(),
            nodes: (a..b).map(|i| p.graph.g[p.order[i]].name.clone()).collect(),
            predicted_ms: p.run_overhead_ms[d] + (a..b).map(|i| p.cost[i][d].unwrap_or(0.0)).sum::<f64>(),
        })
        .collect();
    let transfers = transfers(p, placement)
        .into_iter()
        .map(|(t, f, d)| Transfer { tensor: p.tensors[t].name.clone(), from: p.devices[f].clone(), to: p.devices[d].clone(), bytes: p.tensors[t].bytes, predicted_ms: p.transfer_ms(f, d, p.tensors[t].bytes) })
        .collect();
    let mut memory_bytes = BTreeMap::new();
    for (d, name) in p.devices.iter().enumerate() {
        memory_bytes.insert(name.clone(), p.memory_bytes(placement, d)?);
    }
    Ok(Plan {
        version: plan::PLAN_VERSION,
        model: plan::model_fingerprint(p.graph)?,
        bindings: Default::default(),
        batching: Default::default(),
        objective: plan::Objective::Latency,
        algorithm: algorithm.into(),
        devices: p.devices.clone(),
        nodes,
        partitions,
        transfers,
        predicted: Predicted { latency_ms: base, throughput_per_s: throughput_per_s(p, placement), memory_bytes },
        search: None,
    })
}
