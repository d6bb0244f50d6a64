//! The memory a set of nodes needs on one device: the weights they read, their peak live
//! activations in execution order (each value freed after its last reader in the set; values
//! read outside the set, and graph outputs, live to the end), and the device's workspace.

use crate::graph::{Graph, Op};
use petgraph::stable_graph::NodeIndex;
use std::collections::{HashMap, HashSet};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Footprint {
    pub weight_bytes: u64,
    pub peak_activation_bytes: u64,
    pub workspace_bytes: u64,
}

impl Footprint {
    pub fn total(&self) -> u64 {
        self.weight_bytes + self.peak_activation_bytes + self.workspace_bytes
    }
}

fn is_value(graph: &Graph, n: NodeIndex) -> bool {
    let node = &graph.g[n];
    matches!(node.op, Op::Constant { .. }) || (node.is_folded() && !matches!(node.op, Op::Input))
}

/// The footprint of `order` (a topologically ordered set of nodes) on one device.
pub fn footprint(graph: &Graph, order: &[NodeIndex], im2col_workspace: bool) -> Footprint {
    let set: HashSet<NodeIndex> = order.iter().copied().collect();
    let pos: HashMap<NodeIndex, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut f = Footprint::default();
    let mut weights_seen = HashSet::new();
    // alloc[i]: bytes that become live at step i; free[i]: bytes released after step i.
    let (mut alloc, mut free) = (vec![0u64; order.len()], vec![0u64; order.len() + 1]);
    let mut boundary_seen = HashSet::new();
    for (i, &n) in order.iter().enumerate() {
        if is_value(graph, n) {
            continue;
        }
        for src in graph.sources(n).into_iter().flatten() {
            let (p, slot) = src;
            if is_value(graph, p) {
                if weights_seen.insert(src) {
                    f.weight_bytes += graph.g[p].outputs[slot].nbytes() as u64;
                }
            } else if !set.contains(&p) && boundary_seen.insert(src) {
                // A tensor arriving from another device (or a graph input): live from the start
                // of the set to its last reader here.
                let bytes = graph.g[p].outputs[slot].nbytes() as u64;
                alloc[0] += bytes;
                let last = graph.consumers(p, slot).iter().filter_map(|(c, _)| pos.get(c).copied()).max().unwrap_or(i);
                free[last] += bytes;
            }
        }
        for (slot, v) in graph.g[n].outputs.iter().enumerate() {
            let bytes = v.nbytes() as u64;
            alloc[i] += bytes;
            let consumers = graph.consumers(n, slot);
            let leaves = graph.is_graph_output(n, slot) || consumers.iter().any(|(c, _)| !set.contains(c));
            let end = if leaves { order.len() } else { consumers.iter().filter_map(|(c, _)| pos.get(c).copied()).max().unwrap_or(i) };
            free[end] += bytes;
        }
        if im2col_workspace {
            f.workspace_bytes = f.workspace_bytes.max(im2col_bytes(graph, n));
        }
    }
    let mut live = 0u64;
    for i in 0..order.len() {
        live += alloc[i];
        f.peak_activation_bytes = f.peak_activation_bytes.max(live);
        live = live.saturating_sub(free[i]);
    }
    f
}

/// The im2col buffer a convolution lowered to a GEMM needs: (C/g · K) × output positions, f32.
fn im2col_bytes(graph: &Graph, n: NodeIndex) -> u64 {
    let Op::Conv { window, .. } = &graph.g[n].op else { return 0 };
    if window.kernel_shape.iter().all(|&k| k == 1) {
        return 0;
    }
    let Some(Some((w, ws))) = graph.sources(n).get(1).copied() else { return 0 };
    let per_col: usize = graph.g[w].outputs[ws].shape.as_ref().map(|s| s.iter().skip(1).product()).unwrap_or(0);
    let positions: usize = graph.g[n].outputs[0].shape.as_ref().map(|s| s.iter().skip(2).product::<usize>() * s.first().copied().unwrap_or(1)).unwrap_or(0);
    (per_col * positions * 4) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Value;
    use crate::tensor::DType;

    fn value(name: &str, n: usize) -> Vec<Value> {
        vec![Value { name: name.into(), dtype: Some(DType::F32), shape: Some(vec![n]), value: None }]
    }

    /// x(100 floats) -> a -> b -> c, plus a weight of 50 floats read by b; c is the output.
    #[test]
    fn footprint_by_hand() {
        let mut g = Graph::default();
        let x = g.add_node("x", Op::Input, 0, value("x", 100));
        let w = crate::tensor::Tensor::from_f32(&[50], vec![0.0; 50]).unwrap();
        let mut wv = value("w", 50);
        wv[0].value = Some(std::sync::Arc::new(w.clone()));
        let wn = g.add_node("w", Op::Constant { value: std::sync::Arc::new(w), initializer: true }, 0, wv);
        let a = g.add_node("a", Op::Unary(crate::graph::UnaryOp::Relu), 1, value("a", 100));
        let b = g.add_node("b", Op::Binary(crate::graph::BinaryOp::Add), 2, value("b", 200));
        let c = g.add_node("c", Op::Unary(crate::graph::UnaryOp::Relu), 1, value("c", 200));
        g.connect(x, 0, a, 0);
        g.connect(a, 0, b, 0);
        g.connect(wn, 0, b, 1);
        g.connect(b, 0, c, 0);
        g.outputs.push(crate::graph::GraphOutput { name: "c".into(), node: c, slot: 0 });
        // All of it: x (400 B) live until a; a (400) until b; b (800) until c; c (800) to the end.
        // Peak at b: a + b = 1200 (x freed after a) ... at a: x + a = 800; at c: b + c = 1600.
        let f = footprint(&g, &[x, wn, a, b, c], false);
        assert_eq!(f.weight_bytes, 200);
        assert_eq!(f.peak_activation_bytes, 1600);
        // Only b and c on this device: a arrives from elsewhere (400 B), b's weight is here.
        let f = footprint(&g, &[b, c], false);
        assert_eq!((f.weight_bytes, f.peak_activation_bytes), (200, 400 + 800 + 800 - 400));
    }
}
