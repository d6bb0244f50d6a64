//! Static cost facts of a bound graph: params, MACs, FLOPs, bytes moved, arithmetic intensity,
//! and the peak activation memory of an execution order with buffer reuse. The cost model and
//! `hetsched inspect` read these.

pub mod lifetimes;

use crate::error::Result;
use crate::graph::{Graph, Op, PoolKind};
use crate::tensor::DType;
use petgraph::stable_graph::NodeIndex;
use std::collections::{HashMap, HashSet};

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct NodeCost {
    pub name: String,
    pub op_type: String,
    pub output_shapes: Vec<Vec<usize>>,
    /// Float initializer elements this node consumes.
    pub params: u64,
    pub macs: u64,
    pub flops: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// flops / (bytes_read + bytes_written).
    pub intensity: f64,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ModelCost {
    /// Float initializer elements (each initializer counted once).
    pub params: u64,
    pub macs: u64,
    pub flops: u64,
    pub weight_bytes: u64,
    pub peak_activation_bytes: u64,
    pub nodes: Vec<NodeCost>,
}

/// Costs of one compute node (inputs and constants excluded).
pub fn node_cost(g: &Graph, n: NodeIndex) -> NodeCost {
    let node = &g.g[n];
    let srcs = g.sources(n);
    let ins: Vec<Option<&crate::graph::Value>> = srcs.iter().map(|s| s.map(|(p, i)| &g.g[p].outputs[i])).collect();
    let in_shape = |i: usize| ins.get(i).copied().flatten().and_then(|v| v.shape.clone()).unwrap_or_default();
    let out_numel = node.outputs.first().map(|v| v.numel() as u64).unwrap_or(0);
    let in_numel = |i: usize| in_shape(i).iter().product::<usize>() as u64;
    let params: u64 = srcs
        .iter()
        .flatten()
        .filter(|(p, _)| matches!(g.g[*p].op, Op::Constant { initializer: true, .. }))
        .map(|&(p, i)| &g.g[p].outputs[i])
        .filter(|v| v.dtype.is_some_and(DType::is_float))
        .map(|v| v.numel() as u64)
        .sum();
    let has = |i: usize| ins.get(i).copied().flatten().is_some();
    let (macs, extra): (u64, u64) = match &node.op {
        Op::Conv { activation, .. } => {
            let w = in_shape(1);
            let per_out: u64 = w.iter().skip(1).product::<usize>() as u64; // (C/g) * K...
            (out_numel * per_out, out_numel * (has(2) as u64 + activation.is_some() as u64))
        }
        Op::ConvTranspose { .. } => {
            // Every input element meets (C_out/g) * K weights (W is [C_in, C_out/g, K...]).
            let w = in_shape(1);
            (in_numel(0) * w.iter().skip(1).product::<usize>() as u64, out_numel * has(2) as u64)
        }
        Op::Attention(at) => {
            let past = ins.get(4).copied().flatten().and_then(|v| v.shape.clone());
            match crate::graph::infer::attention_geometry(at, &in_shape(0), &in_shape(1), &in_shape(2), past.as_deref()) {
                // Q K^T and the weighted sum of V, per batch and query head.
                Ok(a) => {
                    let per_head = (a.q_seq * a.total_seq * (a.head_size + a.v_size)) as u64;
                    ((a.batch * a.q_heads) as u64 * per_head, 5 * (a.batch * a.q_heads * a.q_seq * a.total_seq) as u64)
                }
                Err(_) => (0, 0),
            }
        }
        Op::Gemm { trans_a, activation, .. } => {
            let a = in_shape(0);
            let k = if *trans_a { a.first() } else { a.get(1) }.copied().unwrap_or(0) as u64;
            (out_numel * k, out_numel * (has(2) as u64 + activation.is_some() as u64))
        }
        Op::MatMul | Op::MatMulInteger | Op::QLinearMatMul => {
            let a = in_shape(0);
            (out_numel * a.last().copied().unwrap_or(0) as u64, 0)
        }
        Op::QLinearConv { .. } | Op::ConvInteger { .. } => {
            let w = in_shape(if matches!(node.op, Op::QLinearConv { .. }) { 3 } else { 1 });
            (out_numel * w.iter().skip(1).product::<usize>() as u64, 2 * out_numel)
        }
        Op::Unary(_) | Op::Binary(_) | Op::Clip { .. } | Op::Where => (0, out_numel),
        Op::Variadic { .. } => (0, out_numel * (ins.iter().flatten().count().saturating_sub(1)) as u64),
        Op::Pool { window, kind } => {
            let k: u64 = window.kernel_shape.iter().product::<usize>() as u64;
            (0, out_numel * k * if matches!(kind, PoolKind::Lp { .. }) { 2 } else { 1 })
        }
        Op::GlobalPool { .. } | Op::Reduce { .. } | Op::ArgExtreme { .. } => (0, in_numel(0)),
        Op::BatchNorm { .. } => (0, 2 * out_numel),
        Op::Softmax { .. } => (0, 5 * out_numel),
        Op::LayerNorm { .. } | Op::RmsNorm { .. } | Op::InstanceNorm { .. } => (0, 8 * out_numel + 2 * in_numel(1)),
        Op::Recurrent(r) => {
            // Per step, direction and sequence: gates x (input + hidden) MACs.
            let x = in_shape(0);
            let (steps_batch, input) = (x.iter().take(2).product::<usize>() as u64, x.get(2).copied().unwrap_or(0) as u64);
            let (h, gates) = (r.hidden as u64, r.kind.gates() as u64);
            (steps_batch * r.directions as u64 * gates * h * (input + h), steps_batch * r.directions as u64 * gates * h * 4)
        }
        _ => (0, 0),
    };
    let bytes_read: u64 = ins.iter().flatten().map(|v| v.nbytes() as u64).sum();
    let bytes_written: u64 = node.outputs.iter().map(|v| v.nbytes() as u64).sum();
    let flops = 2 * macs + extra;
    let moved = (bytes_read + bytes_written).max(1);
    NodeCost {
        name: node.name.clone(),
        op_type: node.op.name(),
        output_shapes: node.outputs.iter().map(|v| v.shape.clone().unwrap_or_default()).collect(),
        params,
        macs,
        flops,
        bytes_read,
        bytes_written,
        intensity: flops as f64 / moved as f64,
    }
}

/// Whole-model costs, in execution (topological) order.
pub fn analyze(g: &Graph) -> Result<ModelCost> {
    let order = g.toposort()?;
    let mut m = ModelCost::default();
    let mut seen_weights = HashSet::new();
    for &n in &order {
        match &g.g[n].op {
            Op::Input => {}
            Op::Constant { value, initializer } => {
                if *initializer && seen_weights.insert(n) {
                    m.weight_bytes += value.nbytes() as u64;
                    if value.dtype().is_float() {
                        m.params += value.numel() as u64;
                    }
                }
            }
            _ => {
                let c = node_cost(g, n);
                m.macs += c.macs;
                m.flops += c.flops;
                m.nodes.push(c);
            }
        }
    }
    m.peak_activation_bytes = peak_activation_bytes(g, &order);
    Ok(m)
}

/// Peak bytes of live activations when running `order`, each value freed after its last reader
/// (graph outputs live to the end; constants are weights, not activations).
pub fn peak_activation_bytes(g: &Graph, order: &[NodeIndex]) -> u64 {
    let pos: HashMap<NodeIndex, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut free_at: Vec<Vec<u64>> = vec![vec![]; order.len() + 1];
    let mut alloc_at: Vec<u64> = vec![0; order.len()];
    for (i, &n) in order.iter().enumerate() {
        if matches!(g.g[n].op, Op::Constant { .. }) {
            continue;
        }
        for (slot, v) in g.g[n].outputs.iter().enumerate() {
            if v.value.is_some() && !matches!(g.g[n].op, Op::Input) {
                continue; // folded at plan time
            }
            let bytes = v.nbytes() as u64;
            alloc_at[i] += bytes;
            let last = g.consumers(n, slot).iter().filter_map(|(c, _)| pos.get(c).copied()).max();
            let end = if g.is_graph_output(n, slot) { order.len() } else { last.unwrap_or(i) };
            free_at[end].push(bytes);
        }
    }
    let (mut live, mut peak) = (0u64, 0u64);
    for i in 0..order.len() {
        live += alloc_at[i];
        peak = peak.max(live);
        live -= free_at[i].iter().sum::<u64>();
    }
    peak
}
