//! A cost-based merge: moves whole partitions to a neighbour's device (or any other allowed
//! device) while that lowers the predicted latency, removing tiny fragments and CPU↔GPU
//! ping-pong that node-by-node placement leaves.

use super::evaluate::{move_delta_ms, partitions};
use super::{Placement, Problem};

/// Sweeps over the partitions, applying every move that lowers the latency, until a sweep
/// finds none (at most 64 sweeps). Moves are judged by their local delta; memory limits are
/// checked only where a device has one.
pub fn merge(p: &Problem, mut placement: Placement) -> Placement {
    let limited = p.mem_limits.iter().any(Option::is_some);
    for _ in 0..64 {
        let mut improved = false;
        for (d, a, b) in partitions(&placement) {
            // Earlier moves in this sweep may have changed this range: skip it if so.
            if placement[a..b].iter().any(|&x| x != d) {
                continue;
            }
            for e in (0..p.devices.len()).filter(|&e| e != d) {
                if !(a..b).all(|i| p.allowed(i, e)) {
                    continue;
                }
                if move_delta_ms(p, &mut placement, a, b, e) < -1e-12 {
                    placement[a..b].iter_mut().for_each(|x| *x = e);
                    if limited && p.feasible(&placement).is_err() {
                        placement[a..b].iter_mut().for_each(|x| *x = d);
                        continue;
                    }
                    improved = true;
                    break;
                }
            }
        }
        if !improved {
            break;
        }
    }
    placement
}

/// Moves nodes off devices over their memory limit, to the host, those that gain least per byte
/// of weights first, until every limit holds (or nothing more may move). Node-by-node placement
/// knows no memory; this is how a model whose weights do not fit a GPU gets split.
pub fn fit_memory(p: &Problem, mut placement: Placement) -> Placement {
    let weights: Vec<u64> = p
        .order
        .iter()
        .map(|&n| {
            p.graph
                .sources(n)
                .into_iter()
                .flatten()
                .filter(|&(s, _)| matches!(p.graph.g[s].op, crate::graph::Op::Constant { .. }))
                .map(|(s, slot)| p.graph.g[s].outputs[slot].nbytes() as u64)
                .sum::<u64>()
                + p.graph.g[n].outputs.iter().map(|v| v.nbytes() as u64).sum::<u64>()
        })
        .collect();
    for d in 0..p.devices.len() {
        let Some(limit) = p.mem_limits[d] else { continue };
        if d == p.host {
            continue;
        }
        let mut movable: Vec<usize> = (0..p.order.len()).filter(|&i| placement[i] == d && p.allowed(i, p.host)).collect();
        // Gain of keeping node i on d, per byte it holds there (weights and its outputs).
        let per_byte = |i: usize| {
            let gain = p.cost[i][p.host].unwrap_or(f64::INFINITY) - p.cost[i][d].unwrap_or(0.0);
            gain / (weights[i] as f64 + 1.0)
        };
        movable.sort_by(|&a, &b| per_byte(a).total_cmp(&per_byte(b)));
        for i in movable {
            if p.memory_bytes(&placement, d).unwrap_or(u64::MAX) <= limit {
                break;
            }
            placement[i] = p.host;
        }
    }
    placement
}
