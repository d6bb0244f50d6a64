//! The production baseline (ONNX Runtime, OpenVINO HETERO, tract): devices in the user's
//! priority order; the first that may run a node takes it. Kept to show what cost-based
//! placement gains.

use super::{Partitioner, Placement, Problem};
use crate::error::{Error, Result};

pub struct Greedy;

impl Partitioner for Greedy {
    fn name(&self) -> &'static str {
        "greedy"
    }

    fn place(&self, p: &Problem) -> Result<Placement> {
        (0..p.order.len())
            .map(|i| (0..p.devices.len()).find(|&d| p.allowed(i, d)).ok_or_else(|| Error::Plan(format!("no device may run node '{}'", p.graph.g[p.order[i]].name))))
            .collect()
    }
}
