//! A plan: where every node runs and why, the partitions in execution order, every transfer,
//! and what the cost model predicts. Pure data shared by partition and exec (no device
//! handles), saved as JSON with a version and the model's fingerprint.

use crate::error::{Error, Result};
use crate::graph::{Bindings, Graph};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const PLAN_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// One request's time, input to output.
    #[default]
    Latency,
    /// Requests per second with several in flight.
    Throughput,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedNode {
    pub name: String,
    pub op_type: String,
    pub device: String,
    /// Why this device: `pinned`, `only cpu supports LSTM`, `cheaper by 1.3 ms including a 0.2 ms transfer`, ...
    pub reason: String,
    /// Predicted time on every device that supports it.
    pub predicted_ms: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Partition {
    pub id: usize,
    pub device: String,
    /// Node names in execution order.
    pub nodes: Vec<String>,
    /// The run overhead and every node, transfers excluded.
    pub predicted_ms: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    pub tensor: String,
    pub from: String,
    pub to: String,
    pub bytes: u64,
    pub predicted_ms: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Predicted {
    /// One request alone, partitions in sequence.
    pub latency_ms: f64,
    /// Requests pipelined: the busiest device or copy lane sets the pace.
    pub throughput_per_s: f64,
    pub memory_bytes: BTreeMap<String, u64>,
}

/// What an exact search proved about the plan it returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Search {
    /// No placement is predicted faster than this, ms.
    pub lower_bound_ms: f64,
    /// (predicted latency − lower bound) / predicted latency; 0 when proven optimal.
    pub gap: f64,
    pub proven_optimal: bool,
    /// Search-tree nodes visited.
    pub expansions: u64,
    pub elapsed_ms: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub version: u32,
    /// Fingerprint of the bound graph the plan was made for.
    pub model: String,
    pub bindings: Bindings,
    /// Dynamic (a plan per batch size) or static (this plan serves smaller batches padded).
    #[serde(default)]
    pub batching: crate::batching::Batching,
    pub objective: Objective,
    pub algorithm: String,
    pub devices: Vec<String>,
    pub nodes: Vec<PlannedNode>,
    pub partitions: Vec<Partition>,
    pub transfers: Vec<Transfer>,
    pub predicted: Predicted,
    /// Where the algorithm searched exactly (`optimal`, `auto`): its bound and gap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<Search>,
}

/// A fingerprint of a bound graph: its nodes' names, ops and output shapes, in order.
pub fn model_fingerprint(graph: &Graph) -> Result<String> {
    // Each field ends with 0xff (never in UTF-8), so fields cannot run into each other.
    let mut bytes = vec![];
    for n in graph.toposort()? {
        let node = &graph.g[n];
        let fields = [node.name.clone(), node.op.name()].into_iter().chain(node.outputs.iter().map(|v| format!("{:?}", v.shape)));
        for f in fields {
            bytes.extend(f.bytes().chain([0xff]));
        }
    }
    Ok(format!("{:016x}", crate::hash::fnv1a(bytes)))
}

impl Plan {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan serialises")
    }

    pub fn from_json(text: &str) -> Result<Plan> {
        let p: Plan = serde_json::from_str(text).map_err(|e| Error::Plan(format!("not a plan: {e}")))?;
        if p.version != PLAN_VERSION {
            return Err(Error::Plan(format!("plan version {} (this build reads {PLAN_VERSION}); make it again with `hetsched partition`", p.version)));
        }
        Ok(p)
    }

    /// Checks the plan was made for this bound graph.
    pub fn check_graph(&self, graph: &Graph, bindings: &Bindings) -> Result<()> {
        if &self.bindings != bindings {
            return Err(Error::Plan(format!("the plan was made for dims {:?}, not {:?}", self.bindings, bindings)));
        }
        let fp = model_fingerprint(graph)?;
        if fp != self.model {
            return Err(Error::Plan(format!("the plan was made for another model (fingerprint {} vs this model's {fp})", self.model)));
        }
        Ok(())
    }

    /// The device of every node, by name.
    pub fn device_of(&self) -> BTreeMap<&str, &str> {
        self.nodes.iter().map(|n| (n.name.as_str(), n.device.as_str())).collect()
    }
}
