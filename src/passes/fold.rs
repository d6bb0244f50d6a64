//! Constant folding and Identity removal.

use super::Pass;
use crate::error::Result;
use crate::graph::{Graph, Op};

/// Replaces every node whose outputs inference could compute (weights-only math, and the
/// Shape->Gather->Concat->Reshape chains once dims are bound) by Constant nodes.
pub struct ConstantFold;

impl Pass for ConstantFold {
    fn name(&self) -> &'static str {
        "constant-fold"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        let targets: Vec<_> = g
            .g
            .node_indices()
            .filter(|&n| {
                let node = &g.g[n];
                !matches!(node.op, Op::Input | Op::Constant { .. }) && !node.outputs.is_empty() && node.outputs.iter().all(|v| v.value.is_some())
            })
            .collect();
        for &n in &targets {
            let outs = g.g[n].outputs.clone();
            let name = g.g[n].name.clone();
            for (slot, v) in outs.into_iter().enumerate() {
                let c = g.add_constant(format!("{name}/folded{slot}"), (*v.value.clone().unwrap()).clone(), false);
                g.g[c].outputs[0] = v;
                g.replace_uses((n, slot), (c, 0));
            }
        }
        let removed = g.remove_dead();
        Ok(!targets.is_empty() || removed > 0)
    }
}

/// Removes Identity (and inference-mode Dropout), rewiring consumers to its input.
pub struct RemoveIdentity;

impl Pass for RemoveIdentity {
    fn name(&self) -> &'static str {
        "remove-identity"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        let ids: Vec<_> = g.g.node_indices().filter(|&n| matches!(g.g[n].op, Op::Identity)).collect();
        let mut changed = false;
        for n in ids {
            let Some(src) = g.source(n, 0) else { continue };
            // A graph input passed straight to an output keeps its Identity: the output needs a node of its own name.
            if g.is_graph_output(n, 0) && matches!(g.g[src.0].op, Op::Input) {
                continue;
            }
            g.replace_uses((n, 0), src);
            g.g.remove_node(n);
            changed = true;
        }
        Ok(changed)
    }
}
