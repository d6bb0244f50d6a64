//! The IR: a petgraph `StableGraph` whose nodes are ops and whose edges are tensors
//! (producer output slot -> consumer input slot). Graph inputs are `Op::Input` nodes and weights
//! are `Op::Constant` nodes, so every tensor has exactly one producer.
//!
//! A loaded graph carries symbolic input dims (`batch`, `seq`); [`Graph::bind`] fixes them and
//! fills every value's dtype and concrete shape ([`infer`]).

pub mod einsum_labels;
pub mod geometry;
pub mod infer;
pub mod op;
pub mod validate;

pub use op::*;

use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};
use petgraph::stable_graph::{NodeIndex, StableGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// Values of symbolic dims, by name.
pub type Bindings = BTreeMap<String, usize>;

#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Dim {
    Known(usize),
    Sym(String),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Known(d) => write!(f, "{d}"),
            Dim::Sym(s) => f.write_str(s),
        }
    }
}

/// One tensor a node produces. `dtype` and `shape` are known after inference; `value` when the
/// tensor is a compile-time constant (weights, and everything computable from them and shapes).
#[derive(Clone, Debug, Default)]
pub struct Value {
    pub name: String,
    pub dtype: Option<DType>,
    pub shape: Option<Vec<usize>>,
    pub value: Option<Arc<Tensor>>,
}

impl Value {
    pub fn named(name: impl Into<String>) -> Value {
        Value { name: name.into(), ..Default::default() }
    }
    pub fn numel(&self) -> usize {
        self.shape.as_ref().map(|s| s.iter().product()).unwrap_or(0)
    }
    pub fn nbytes(&self) -> usize {
        self.numel() * self.dtype.map(|d| d.size()).unwrap_or(0)
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub op: Op,
    /// Input arity including absent optional inputs (slots with no edge).
    pub num_inputs: usize,
    pub outputs: Vec<Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub out_slot: usize,
    pub in_slot: usize,
}

#[derive(Clone, Debug)]
pub struct GraphInput {
    pub node: NodeIndex,
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<Dim>,
}

#[derive(Clone, Debug)]
pub struct GraphOutput {
    pub name: String,
    pub node: NodeIndex,
    pub slot: usize,
}

#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub g: StableGraph<Node, Edge>,
    pub inputs: Vec<GraphInput>,
    pub outputs: Vec<GraphOutput>,
    /// Default-domain opset version.
    pub opset: i64,
}

impl Node {
    /// Every output was computed at plan time (inference folded it): nothing runs for it.
    pub fn is_folded(&self) -> bool {
        !self.outputs.is_empty() && self.outputs.iter().all(|v| v.value.is_some())
    }

    /// A node that runs: not an input, a weight or a folded value.
    pub fn is_compute(&self) -> bool {
        !matches!(self.op, Op::Input | Op::Constant { .. }) && !self.is_folded()
    }
}

impl Graph {
    pub fn add_node(&mut self, name: impl Into<String>, op: Op, num_inputs: usize, outputs: Vec<Value>) -> NodeIndex {
        self.g.add_node(Node { name: name.into(), op, num_inputs, outputs })
    }

    pub fn connect(&mut self, src: NodeIndex, out_slot: usize, dst: NodeIndex, in_slot: usize) {
        self.g.add_edge(src, dst, Edge { out_slot, in_slot });
    }

    pub fn add_constant(&mut self, name: impl Into<String>, t: Tensor, initializer: bool) -> NodeIndex {
        let name = name.into();
        let t = Arc::new(t);
        let v = Value { name: name.clone(), dtype: Some(t.dtype()), shape: Some(t.shape().to_vec()), value: Some(t.clone()) };
        self.add_node(name, Op::Constant { value: t, initializer }, 0, vec![v])
    }

    pub fn node(&self, n: NodeIndex) -> &Node {
        &self.g[n]
    }

    /// The producer (node, output slot) of each input slot of `n`; `None` for absent optional inputs.
    pub fn sources(&self, n: NodeIndex) -> Vec<Option<(NodeIndex, usize)>> {
        let mut v = vec![None; self.g[n].num_inputs];
        for e in self.g.edges_directed(n, Direction::Incoming) {
            if let Some(s) = v.get_mut(e.weight().in_slot) {
                *s = Some((e.source(), e.weight().out_slot));
            }
        }
        v
    }

    /// Makes `src` (node, output slot) the producer of input slot `i` of `n`, replacing any.
    pub fn set_input(&mut self, n: NodeIndex, i: usize, src: (NodeIndex, usize)) {
        let old: Vec<_> = self.g.edges_directed(n, Direction::Incoming).filter(|e| e.weight().in_slot == i).map(|e| e.id()).collect();
        for e in old {
            self.g.remove_edge(e);
        }
        self.connect(src.0, src.1, n, i);
    }

    /// The producer (node, output slot) feeding input slot `i` of `n`, if that input is given.
    pub fn source(&self, n: NodeIndex, i: usize) -> Option<(NodeIndex, usize)> {
        self.g.edges_directed(n, Direction::Incoming).find(|e| e.weight().in_slot == i).map(|e| (e.source(), e.weight().out_slot))
    }

    /// The value feeding input slot `i` of `n`.
    pub fn input_value(&self, n: NodeIndex, i: usize) -> Option<&Value> {
        self.source(n, i).map(|(p, s)| &self.g[p].outputs[s])
    }

    /// The constant feeding input slot `i` of `n`, if that input is known at plan time.
    pub fn input_const(&self, n: NodeIndex, i: usize) -> Option<Arc<Tensor>> {
        self.input_value(n, i).and_then(|v| v.value.clone())
    }

    /// Consumers of output `slot` of `n`, as (node, input slot).
    pub fn consumers(&self, n: NodeIndex, slot: usize) -> Vec<(NodeIndex, usize)> {
        self.g
            .edges_directed(n, Direction::Outgoing)
            .filter(|e| e.weight().out_slot == slot)
            .map(|e| (e.target(), e.weight().in_slot))
            .collect()
    }

    /// The one (node, input slot) reading output `slot` of `n`, if nothing else reads it (a graph
    /// output counts as a reader): what a fusion may rewrite freely.
    pub fn sole_use(&self, n: NodeIndex, slot: usize) -> Option<(NodeIndex, usize)> {
        let c = self.consumers(n, slot);
        (c.len() == 1 && !self.is_graph_output(n, slot)).then(|| c[0])
    }

    pub fn is_graph_output(&self, n: NodeIndex, slot: usize) -> bool {
        self.outputs.iter().any(|o| o.node == n && o.slot == slot)
    }

    /// Nodes in an order where producers come first; a cycle is an error naming a node on it.
    pub fn toposort(&self) -> Result<Vec<NodeIndex>> {
        petgraph::algo::toposort(&self.g, None).map_err(|c| Error::Cycle(self.g[c.node_id()].name.clone()))
    }

    /// Turns graph input `name` into a constant holding `t` (as a weight or a shape parameter
    /// baked into a model is): passes then fold it, and devices see a constant.
    pub fn freeze_input(&mut self, name: &str, t: Tensor) -> Result<()> {
        let i = self.inputs.iter().position(|gi| gi.name == name).ok_or_else(|| Error::Input(format!("no graph input '{name}'")))?;
        let gi = self.inputs.remove(i);
        let c = self.add_constant(name, t, true);
        self.replace_uses((gi.node, 0), (c, 0));
        self.g.remove_node(gi.node);
        Ok(())
    }

    /// Redirects every use of `from` (consumers and graph outputs) to `to`.
    pub fn replace_uses(&mut self, from: (NodeIndex, usize), to: (NodeIndex, usize)) {
        let uses: Vec<_> = self
            .g
            .edges_directed(from.0, Direction::Outgoing)
            .filter(|e| e.weight().out_slot == from.1)
            .map(|e| (e.id(), e.target(), e.weight().in_slot))
            .collect();
        for (id, target, in_slot) in uses {
            self.g.remove_edge(id);
            self.g.add_edge(to.0, target, Edge { out_slot: to.1, in_slot });
        }
        for o in self.outputs.iter_mut().filter(|o| o.node == from.0 && o.slot == from.1) {
            o.node = to.0;
            o.slot = to.1;
        }
    }

    /// Removes every node that no graph output depends on (graph inputs stay).
    pub fn remove_dead(&mut self) -> usize {
        let mut live: HashSet<NodeIndex> = HashSet::new();
        let mut stack: Vec<NodeIndex> = self.outputs.iter().map(|o| o.node).collect();
        while let Some(n) = stack.pop() {
            if live.insert(n) {
                stack.extend(self.g.neighbors_directed(n, Direction::Incoming));
            }
        }
        live.extend(self.inputs.iter().map(|i| i.node));
        let dead: Vec<_> = self.g.node_indices().filter(|n| !live.contains(n)).collect();
        for &n in &dead {
            self.g.remove_node(n);
        }
        dead.len()
    }

    /// Binds symbolic dims and infers every value's dtype, shape and (where computable at plan
    /// time) constant value. `eval` computes a node's outputs from constant inputs; pass `None`
    /// to infer shapes without propagating values.
    pub fn bind(&self, bindings: &Bindings, eval: Option<&infer::Evaluator>) -> Result<Graph> {
        let mut g = self.clone();
        infer::infer(&mut g, bindings, eval)?;
        Ok(g)
    }

    /// Symbolic dim names of the graph inputs, in order of first appearance.
    pub fn symbolic_dims(&self) -> Vec<String> {
        let mut out: Vec<String> = vec![];
        for i in &self.inputs {
            for d in &i.shape {
                if let Dim::Sym(s) = d {
                    if !out.contains(s) {
                        out.push(s.clone());
                    }
                }
            }
        }
        out
    }

    /// The nodes in `set` as a graph of their own. Tensors entering from outside become inputs
    /// (constants are copied in instead), tensors used outside or graph outputs become outputs.
    /// Returns the subgraph and, for each of its inputs and outputs, the (node, slot) in `self`.
    pub fn subgraph(&self, set: &HashSet<NodeIndex>) -> Result<Subgraph> {
        let mut sub = Graph { opset: self.opset, ..Default::default() };
        let mut map: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut boundary_in: HashMap<(NodeIndex, usize), NodeIndex> = HashMap::new();
        let mut inputs_from = vec![];
        for n in self.toposort()? {
            if !set.contains(&n) {
                continue;
            }
            let node = &self.g[n];
            let new = sub.g.add_node(node.clone());
            map.insert(n, new);
            for (slot, src) in self.sources(n).into_iter().enumerate() {
                let Some((p, ps)) = src else { continue };
                let (from, from_slot) = if let Some(&m) = map.get(&p) {
                    (m, ps)
                } else if let Op::Constant { .. } = self.g[p].op {
                    let c = *map.entry(p).or_insert_with(|| sub.g.add_node(self.g[p].clone()));
                    (c, ps)
                } else {
                    let v = &self.g[p].outputs[ps];
                    let inp = *boundary_in.entry((p, ps)).or_insert_with(|| {
                        let i = sub.add_node(v.name.clone(), Op::Input, 0, vec![v.clone()]);
                        let shape = v.shape.clone().unwrap_or_default().into_iter().map(Dim::Known).collect();
                        sub.inputs.push(GraphInput { node: i, name: v.name.clone(), dtype: v.dtype.unwrap_or(DType::F32), shape });
                        inputs_from.push((p, ps));
                        i
                    });
                    (inp, 0)
                };
                sub.connect(from, from_slot, new, slot);
            }
        }
        let mut outputs_to = vec![];
        for (&orig, &new) in map.iter().filter(|(o, _)| set.contains(o)) {
            for slot in 0..self.g[orig].outputs.len() {
                let used_outside = self.consumers(orig, slot).iter().any(|(c, _)| !set.contains(c));
                if used_outside || self.is_graph_output(orig, slot) {
                    sub.outputs.push(GraphOutput { name: self.g[orig].outputs[slot].name.clone(), node: new, slot });
                    outputs_to.push((orig, slot));
                }
            }
        }
        Ok(Subgraph { graph: sub, inputs_from, outputs_to })
    }
}

/// A piece of a graph with the tensors crossing its boundary.
pub struct Subgraph {
    pub graph: Graph,
    /// For each subgraph input, the (node, slot) of the parent graph that feeds it.
    pub inputs_from: Vec<(NodeIndex, usize)>,
    /// For each subgraph output, the (node, slot) of the parent graph it stands for.
    pub outputs_to: Vec<(NodeIndex, usize)>,
}
