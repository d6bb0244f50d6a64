//! A partitioning problem as plain data: the compute nodes in topological order, each one's
//! predicted cost on every device (None where the device cannot run it), the tensors between
//! them with their sizes, pins and memory limits.

use super::{Constraints, Placement};
use crate::backend::Support;
use crate::cost::CostModel;
use crate::error::{Error, Result};
use crate::graph::{Graph, Op};
use petgraph::stable_graph::NodeIndex;
use std::collections::HashMap;

/// A tensor: its producer (None: a graph input, on the host) and the compute nodes reading it.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub name: String,
    pub producer: Option<usize>,
    pub consumers: Vec<usize>,
    pub bytes: u64,
    /// A graph output: it must reach the host.
    pub output: bool,
}

pub struct Problem<'a> {
    pub graph: &'a Graph,
    pub model: &'a dyn CostModel,
    pub devices: Vec<String>,
    /// Index of the host device (graph inputs start there, outputs end there).
    pub host: usize,
    pub order: Vec<NodeIndex>,
    /// cost[node][device]: predicted ms, None where unsupported.
    pub cost: Vec<Vec<Option<f64>>>,
    /// Why a device cannot run a node.
    pub refusals: Vec<Vec<Option<String>>>,
    pub pinned: Vec<Option<usize>>,
    pub tensors: Vec<Tensor>,
    pub mem_limits: Vec<Option<u64>>,
    pub run_overhead_ms: Vec<f64>,
    /// The tensors each node produces or reads (indices into `tensors`).
    pub touches: Vec<Vec<usize>>,
}

impl<'a> Problem<'a> {
    /// `support(device, node)` answers whether a device's backend runs a node.
    pub fn new(graph: &'a Graph, model: &'a dyn CostModel, devices: &[String], constraints: &Constraints, support: &dyn Fn(&str, NodeIndex) -> Support) -> Result<Problem<'a>> {
        let devices: Vec<String> = devices.iter().filter(|d| !constraints.exclude.contains(d)).cloned().collect();
        let host = devices.iter().position(|d| d == "cpu").ok_or_else(|| Error::Plan("the device list needs cpu (graph inputs and outputs live in host memory)".into()))?;
        let order: Vec<NodeIndex> = graph.toposort()?.into_iter().filter(|&n| graph.g[n].is_compute()).collect();
        let index: HashMap<NodeIndex, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        let (mut cost, mut refusals, mut pinned) = (vec![], vec![], vec![]);
        for &n in &order {
            let node = &graph.g[n];
            let (mut c, mut r) = (vec![], vec![]);
            for d in &devices {
                match support(d, n) {
                    Support::Yes => {
                        c.push(Some(model.node_ms(graph, n, d)?));
                        r.push(None);
                    }
                    Support::No(why) => {
                        c.push(None);
                        r.push(Some(why));
                    }
                }
            }
            if c.iter().all(Option::is_none) {
                let why: Vec<String> = devices.iter().zip(&r).map(|(d, w)| format!("{d}: {}", w.clone().unwrap_or_default())).collect();
                return Err(Error::Unsupported { node: node.name.clone(), op: node.op.name(), what: format!("no device can run it ({})", why.join("; ")) });
            }
            let op_type = crate::cost::op_type(graph, n);
            let pin = match constraints.pin_for(&node.name, &op_type) {
                None => None,
                Some(d) => {
                    let Some(di) = devices.iter().position(|x| x == d) else {
                        return Err(Error::Plan(format!("node '{}' is pinned to '{d}', which is not among the devices {devices:?}", node.name)));
                    };
                    if let Some(why) = &r[di] {
                        return Err(Error::Plan(format!("node '{}' ({}) is pinned to {d}, which cannot run it: {why}", node.name, node.op.name())));
                    }
                    Some(di)
                }
            };
            cost.push(c);
            refusals.push(r);
            pinned.push(pin);
        }
        let mut tensors = vec![];
        let mut seen: HashMap<(NodeIndex, usize), usize> = HashMap::new();
        for (i, &n) in order.iter().enumerate() {
            for src in graph.sources(n).into_iter().flatten() {
                let (p, slot) = src;
                if !graph.g[p].is_compute() && !matches!(graph.g[p].op, Op::Input) {
                    continue; // weights live with the node that reads them
                }
                let t = *seen.entry(src).or_insert_with(|| {
                    let v = &graph.g[p].outputs[slot];
                    tensors.push(Tensor { name: v.name.clone(), producer: index.get(&p).copied(), consumers: vec![], bytes: v.nbytes() as u64, output: graph.is_graph_output(p, slot) });
                    tensors.len() - 1
                });
                if !tensors[t].consumers.contains(&i) {
                    tensors[t].consumers.push(i);
                }
            }
        }
        for o in &graph.outputs {
            if let Some(&pi) = index.get(&o.node) {
                if !seen.contains_key(&(o.node, o.slot)) {
                    let v = &graph.g[o.node].outputs[o.slot];
                    seen.insert((o.node, o.slot), tensors.len());
                    tensors.push(Tensor { name: v.name.clone(), producer: Some(pi), consumers: vec![], bytes: v.nbytes() as u64, output: true });
                }
            }
        }
        let mut touches = vec![vec![]; order.len()];
        for (t, tensor) in tensors.iter().enumerate() {
            for i in tensor.producer.into_iter().chain(tensor.consumers.iter().copied()) {
                if touches[i].last() != Some(&t) {
                    touches[i].push(t);
                }
            }
        }
        let mem_limits = devices.iter().map(|d| constraints.mem_limits.get(d).copied().or_else(|| model.capacity_bytes(d))).collect();
        let run_overhead_ms = devices.iter().map(|d| model.run_overhead_ms(d)).collect::<Result<_>>()?;
        Ok(Problem { graph, model, devices, host, order, cost, refusals, pinned, tensors, mem_limits, run_overhead_ms, touches })
    }

    /// Whether a node may go to a device (supported, and pinned there if pinned at all).
    pub fn allowed(&self, node: usize, device: usize) -> bool {
        self.cost[node][device].is_some() && self.pinned[node].is_none_or(|p| p == device)
    }

    /// Every node on `device`, if it may take them all.
    pub fn single_device(&self, device: usize) -> Option<Placement> {
        (0..self.order.len()).all(|i| self.allowed(i, device)).then(|| vec![device; self.order.len()])
    }

    /// Support, pins and memory limits.
    pub fn feasible(&self, placement: &Placement) -> Result<()> {
        if placement.len() != self.order.len() {
            return Err(Error::Plan(format!("placement has {} entries for {} nodes", placement.len(), self.order.len())));
        }
        for (i, &d) in placement.iter().enumerate() {
            let name = &self.graph.g[self.order[i]].name;
            if let Some(why) = &self.refusals[i][d] {
                return Err(Error::Plan(format!("node '{name}' placed on {} which cannot run it: {why}", self.devices[d])));
            }
            if let Some(p) = self.pinned[i] {
                if p != d {
                    return Err(Error::Plan(format!("node '{name}' is pinned to {} but placed on {}", self.devices[p], self.devices[d])));
                }
            }
        }
        for (d, limit) in self.mem_limits.iter().enumerate() {
            let Some(limit) = limit else { continue };
            let need = self.memory_bytes(placement, d)?;
            if need > *limit {
                return Err(Error::Plan(format!("{} needs {need} bytes for its nodes, over its limit of {limit}", self.devices[d])));
            }
        }
        Ok(())
    }

    /// Memory the nodes placed on `device` need there.
    pub fn memory_bytes(&self, placement: &Placement, device: usize) -> Result<u64> {
        let nodes: Vec<NodeIndex> = self.order.iter().zip(placement).filter(|(_, &d)| d == device).map(|(&n, _)| n).collect();
        if nodes.is_empty() {
            return Ok(0);
        }
        self.model.memory_bytes(self.graph, &nodes, &self.devices[device])
    }

    /// Predicted ms to move `bytes` from one device to another.
    pub fn transfer_ms(&self, from: usize, to: usize, bytes: u64) -> f64 {
        if from == to {
            return 0.0;
        }
        self.model.transfer_ms(&self.devices[from], &self.devices[to], bytes).unwrap_or(f64::INFINITY)
    }
}
