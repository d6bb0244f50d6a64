//! HEFT (Topcuoglu, Hariri and Wu, 2002): nodes by decreasing upward rank (mean cost plus the
//! longest mean path of cost and copies to an exit), each on the device where it would finish
//! earliest, with insertion into idle slots between already scheduled nodes.

use super::{Partitioner, Placement, Problem};
use crate::error::{Error, Result};

pub struct Heft;

/// Upward ranks, by node.
pub fn upward_rank(p: &Problem) -> Vec<f64> {
    let n = p.order.len();
    let mean_cost: Vec<f64> = (0..n)
        .map(|i| {
            let c: Vec<f64> = (0..p.devices.len()).filter(|&d| p.allowed(i, d)).filter_map(|d| p.cost[i][d]).collect();
            c.iter().sum::<f64>() / c.len().max(1) as f64
        })
        .collect();
    // Mean copy cost of a tensor between two distinct devices.
    let pairs: Vec<(usize, usize)> = (0..p.devices.len()).flat_map(|a| (0..p.devices.len()).map(move |b| (a, b))).filter(|(a, b)| a != b).collect();
    let mean_copy = |bytes: u64| if pairs.is_empty() { 0.0 } else { pairs.iter().map(|&(a, b)| p.transfer_ms(a, b, bytes)).sum::<f64>() / pairs.len() as f64 };
    let mut succ: Vec<Vec<(usize, f64)>> = vec![vec![]; n];
    for t in &p.tensors {
        if let Some(src) = t.producer {
            let c = mean_copy(t.bytes);
            for &dst in &t.consumers {
                succ[src].push((dst, c));
            }
        }
    }
    let mut rank = vec![0.0; n];
    for i in (0..n).rev() {
        let tail = succ[i].iter().map(|&(j, c)| c + rank[j]).fold(0.0, f64::max);
        rank[i] = mean_cost[i] + tail;
    }
    rank
}

/// The earliest start ≥ `ready` of a slot of length `len` among sorted busy intervals.
fn earliest_slot(busy: &[(f64, f64)], ready: f64, len: f64) -> f64 {
    let mut start = ready;
    for &(a, b) in busy {
        if start + len <= a {
            return start;
        }
        start = start.max(b);
    }
    start
}

impl Partitioner for Heft {
    fn name(&self) -> &'static str {
        "heft"
    }

    /// The list schedule refined by the merge, or greedy or a single device where one of those
    /// is predicted faster (a schedule that overlaps devices can lose to them when run in
    /// sequence).
    fn place(&self, p: &Problem) -> Result<Placement> {
        let scheduled = super::merge::merge(p, schedule(p)?);
        let fitted = super::merge::merge(p, super::merge::fit_memory(p, scheduled.clone()));
        let mut candidates = vec![scheduled, fitted, super::greedy::Greedy.place(p)?];
        candidates.extend((0..p.devices.len()).filter_map(|d| p.single_device(d)));
        super::best_of(p, candidates)
    }
}

/// HEFT's list schedule: a device per node.
pub fn schedule(p: &Problem) -> Result<Placement> {
    {
        let n = p.order.len();
        let rank = upward_rank(p);
        let mut preds: Vec<Vec<(usize, u64)>> = vec![vec![]; n];
        let mut input_bytes: Vec<u64> = vec![0; n];
        for t in &p.tensors {
            for &c in &t.consumers {
                match t.producer {
                    Some(src) => preds[c].push((src, t.bytes)),
                    None => input_bytes[c] += t.bytes,
                }
            }
        }
        // Decreasing rank is a topological order when costs are positive; ties keep the graph's order.
        let mut queue: Vec<usize> = (0..n).collect();
        queue.sort_by(|&a, &b| rank[b].total_cmp(&rank[a]).then(a.cmp(&b)));
        let mut done = vec![false; n];
        let mut finish = vec![0.0f64; n];
        let mut placement = vec![usize::MAX; n];
        let mut busy: Vec<Vec<(f64, f64)>> = vec![vec![]; p.devices.len()];
        let mut pending: std::collections::VecDeque<usize> = queue.into_iter().collect();
        let mut stalls = 0;
        while let Some(i) = pending.pop_front() {
            if preds[i].iter().any(|&(j, _)| !done[j]) {
                // Zero-cost ties can rank a node before its producer: retry it after.
                pending.push_back(i);
                stalls += 1;
                if stalls > n * n + 1 {
                    return Err(Error::Plan("HEFT could not order the graph".into()));
                }
                continue;
            }
            let mut best: Option<(f64, f64, usize)> = None;
            for d in (0..p.devices.len()).filter(|&d| p.allowed(i, d)) {
                let cost = p.cost[i][d].unwrap_or(f64::INFINITY);
                let mut ready = p.transfer_ms(p.host, d, input_bytes[i]);
                for &(j, bytes) in &preds[i] {
                    ready = ready.max(finish[j] + p.transfer_ms(placement[j], d, bytes));
                }
                let start = earliest_slot(&busy[d], ready, cost);
                let end = start + cost;
                if best.is_none_or(|(e, _, _)| end < e) {
                    best = Some((end, start, d));
                }
            }
            let (end, start, d) = best.ok_or_else(|| Error::Plan(format!("no device may run node '{}'", p.graph.g[p.order[i]].name)))?;
            let at = busy[d].partition_point(|&(a, _)| a < start);
            busy[d].insert(at, (start, end));
            finish[i] = end;
            placement[i] = d;
            done[i] = true;
        }
        Ok(placement)
    }
}

#[cfg(test)]
mod tests {
    use super::earliest_slot;

    #[test]
    fn insertion_finds_the_first_gap_that_fits() {
        let busy = [(0.0, 1.0), (3.0, 4.0)];
        assert_eq!(earliest_slot(&busy, 0.0, 2.0), 1.0);
        assert_eq!(earliest_slot(&busy, 0.0, 2.5), 4.0);
        assert_eq!(earliest_slot(&busy, 3.5, 1.0), 4.0);
        assert_eq!(earliest_slot(&[], 2.0, 1.0), 2.0);
    }
}
