//! A cost-based merge: moves whole partitions to a neighbour's device (or any other allowed
//! device) while that lowers the predicted latency, removing tiny fragments and CPU↔GPU
//! ping-pong that node-by-node placement leaves.

use super::evaluate::{latency_ms, partitions};
use super::{Placement, Problem};

pub fn merge(p: &Problem, mut placement: Placement) -> Placement {
    let mut best = latency_ms(p, &placement);
    for _ in 0..64 {
        let mut improved = false;
        for (d, a, b) in partitions(&placement) {
            for e in (0..p.devices.len()).filter(|&e| e != d) {
                if !(a..b).all(|i| p.allowed(i, e)) {
                    continue;
                }
                let mut moved = placement.clone();
                moved[a..b].iter_mut().for_each(|x| *x = e);
                let t = latency_ms(p, &moved);
                if t < best - 1e-12 && p.feasible(&moved).is_ok() {
                    (best, placement, improved) = (t, moved, true);
                    break;
                }
            }
            if improved {
                break;
            }
        }
        if !improved {
            break;
        }
    }
    placement
}
