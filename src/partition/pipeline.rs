//! `pipeline`: for throughput. Requests flow through contiguous stages of the topological order,
//! each stage's device working on one request while the next stage works on the one before;
//! the busiest device or copy lane sets the pace ([`evaluate::period_ms`]). A PipeDream-style
//! dynamic programme (Narayanan et al., SOSP'19) cuts the order into stages, one per device,
//! minimising the slowest stage with the copies into it; a local search then moves whole
//! partitions and their boundary nodes (a device may end with several stages), judged by the
//! exact period; the result is the best of that, the latency plans and each device alone, so it
//! is never predicted slower than the best single device.

use super::evaluate::{partitions, period_ms};
use super::{merge, Partitioner, Placement, Problem};
use crate::error::Result;
use crate::plan::Objective;

pub struct Pipeline;

/// Stage boundaries the programme considers at most: beyond this many nodes, cuts fall between
/// blocks of consecutive nodes.
const MAX_BLOCKS: usize = 192;
/// The programme tracks the set of devices used: 2^devices states.
const MAX_DP_DEVICES: usize = 6;

impl Partitioner for Pipeline {
    fn name(&self) -> &'static str {
        "pipeline"
    }

    fn objective(&self) -> Objective {
        Objective::Throughput
    }

    fn place(&self, p: &Problem) -> Result<Placement> {
        let mut candidates: Vec<Placement> = stages(p).into_iter().collect();
        candidates.push(super::heft::Heft.place(p)?);
        candidates.extend((0..p.devices.len()).filter_map(|d| p.single_device(d)));
        let limited = p.mem_limits.iter().any(Option::is_some);
        let candidates: Vec<Placement> = candidates
            .into_iter()
            .map(|c| if limited && p.feasible(&c).is_err() { merge::fit_memory(p, c) } else { c })
            .map(|c| improve(p, c))
            .collect();
        super::best_by(p, candidates, period_ms)
    }
}

/// The programme's stages: contiguous ranges of the order, each on a distinct device, that
/// minimise the slowest stage (its run overhead and nodes, or the copies into it, or its
/// outputs' copies to the host, whichever is longest). None where no such cut exists (an op
/// only one device runs on both sides of another device's op) or there are too many devices.
pub fn stages(p: &Problem) -> Option<Placement> {
    let (n, nd) = (p.order.len(), p.devices.len());
    if n == 0 || nd > MAX_DP_DEVICES {
        return None;
    }
    let block = n.div_ceil(MAX_BLOCKS);
    let cuts: Vec<usize> = (0..=n.div_ceil(block)).map(|k| (k * block).min(n)).collect();
    let nb = cuts.len() - 1;
    // prefix[d][i]: nodes 0..i on d; barred[d][i]: how many of them d may not run.
    let (mut prefix, mut barred) = (vec![vec![0.0; n + 1]; nd], vec![vec![0usize; n + 1]; nd]);
    for d in 0..nd {
        for i in 0..n {
            let ok = p.allowed(i, d);
            prefix[d][i + 1] = prefix[d][i] + if ok { p.cost[i][d].unwrap_or(0.0) } else { 0.0 };
            barred[d][i + 1] = barred[d][i] + usize::from(!ok);
        }
    }
    let compute = |d: usize, a: usize, b: usize| if barred[d][b] > barred[d][a] { f64::INFINITY } else { prefix[d][b] - prefix[d][a] };
    let states = 1usize << nd;
    let idx = |k: usize, d: usize, s: usize| (k * nd + d) * states + s;
    let mut best = vec![f64::INFINITY; (nb + 1) * nd * states];
    let mut back: Vec<Option<(usize, usize, usize)>> = vec![None; (nb + 1) * nd * states];
    let mut stamp = vec![usize::MAX; p.tensors.len()];
    let mut reads: Vec<Vec<usize>> = vec![vec![]; n];
    for (t, tensor) in p.tensors.iter().enumerate() {
        for &c in &tensor.consumers {
            reads[c].push(t);
        }
    }
    for ka in 0..nb {
        let a = cuts[ka];
        // Sources reaching stage start `a`: the start itself, or a stage ending there.
        let sources: Vec<(Option<usize>, usize, f64)> = if ka == 0 {
            vec![(None, 0, 0.0)]
        } else {
            (0..nd).flat_map(|d| (0..states).map(move |s| (d, s))).filter_map(|(d, s)| (best[idx(ka, d, s)].is_finite()).then(|| (Some(d), s, best[idx(ka, d, s)]))).collect()
        };
        if sources.is_empty() {
            continue;
        }
        // copies_in[prev * nd + d]: copies of what the stage reads from before it, from the
        // previous stage's device (graph inputs from the host).
        let mut copies_in = vec![0.0; (nd + 1) * nd];
        let mut outputs = vec![0.0; nd];
        for kb in ka + 1..=nb {
            for i in cuts[kb - 1]..cuts[kb] {
                for &t in &reads[i] {
                    let tensor = &p.tensors[t];
                    if tensor.producer.is_some_and(|j| j >= a) || stamp[t] == ka {
                        continue;
                    }
                    stamp[t] = ka;
                    for prev in 0..=nd {
                        let from = if tensor.producer.is_none() || prev == nd { p.host } else { prev };
                        for d in 0..nd {
                            copies_in[prev * nd + d] += p.transfer_ms(from, d, tensor.bytes);
                        }
                    }
                }
                for &t in p.touches[i].iter().filter(|&&t| p.tensors[t].producer == Some(i) && p.tensors[t].output) {
                    for (d, o) in outputs.iter_mut().enumerate() {
                        *o += p.transfer_ms(d, p.host, p.tensors[t].bytes);
                    }
                }
            }
            let b = cuts[kb];
            for d in 0..nd {
                let c = compute(d, a, b);
                if c.is_infinite() {
                    continue;
                }
                let stage = p.run_overhead_ms[d] + c;
                for &(prev, s, so_far) in &sources {
                    if s & (1 << d) != 0 {
                        continue;
                    }
                    let copies = copies_in[prev.unwrap_or(nd) * nd + d];
                    let v = so_far.max(stage).max(copies).max(outputs[d]);
                    let k = idx(kb, d, s | (1 << d));
                    if v < best[k] {
                        best[k] = v;
                        back[k] = Some((ka, prev.unwrap_or(usize::MAX), s));
                    }
                }
            }
        }
    }
    let (mut d, mut s) = (0..nd).flat_map(|d| (0..states).map(move |s| (d, s))).min_by(|x, y| best[idx(nb, x.0, x.1)].total_cmp(&best[idx(nb, y.0, y.1)]))?;
    if !best[idx(nb, d, s)].is_finite() {
        return None;
    }
    let mut placement = vec![0; n];
    let mut kb = nb;
    while kb > 0 {
        let (ka, prev, ps) = back[idx(kb, d, s)]?;
        placement[cuts[ka]..cuts[kb]].iter_mut().for_each(|x| *x = d);
        (kb, d, s) = (ka, prev, ps);
    }
    Some(placement)
}

/// Local search on the exact period: moves a whole partition to another device, or its first or
/// last node to the neighbouring partition's device, while that shortens the period (at most 32
/// sweeps).
pub fn improve(p: &Problem, mut placement: Placement) -> Placement {
    let limited = p.mem_limits.iter().any(Option::is_some);
    let mut current = period_ms(p, &placement);
    let try_move = |placement: &mut Placement, range: std::ops::Range<usize>, e: usize, current: &mut f64| -> bool {
        if range.is_empty() || !range.clone().all(|i| p.allowed(i, e)) {
            return false;
        }
        let old: Vec<usize> = placement[range.clone()].to_vec();
        placement[range.clone()].iter_mut().for_each(|x| *x = e);
        let t = period_ms(p, placement);
        if t < *current - 1e-12 * current.max(1e-9) && (!limited || p.feasible(placement).is_ok()) {
            *current = t;
            return true;
        }
        placement[range].copy_from_slice(&old);
        false
    };
    for _ in 0..32 {
        let mut improved = false;
        let parts = partitions(&placement);
        for (k, &(d, a, b)) in parts.iter().enumerate() {
            if placement[a..b].iter().any(|&x| x != d) {
                continue;
            }
            for e in (0..p.devices.len()).filter(|&e| e != d) {
                improved |= try_move(&mut placement, a..b, e, &mut current);
            }
            if k > 0 && placement[a] == d {
                improved |= try_move(&mut placement, a..a + 1, parts[k - 1].0, &mut current);
            }
            if k + 1 < parts.len() && placement[b - 1] == d {
                improved |= try_move(&mut placement, b - 1..b, parts[k + 1].0, &mut current);
            }
        }
        if !improved {
            break;
        }
    }
    placement
}

