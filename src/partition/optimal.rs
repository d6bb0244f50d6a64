//! `optimal`: the exact latency optimum under the cost model, by depth-first branch and bound
//! over the topological order, seeded with HEFT's plan. A partial placement's cost (its nodes,
//! the run overheads of the partitions it has started, the copies its nodes already need) only
//! grows as nodes are added, so it plus a lower bound on the rest prunes. The bound on the rest
//! is a dynamic programme over the remaining nodes in order: each at its cheapest device given
//! its predecessor's, paying the run overhead where the device changes and the copy of what it
//! reads from the node just before it — every chain is priced exactly, only copies between nodes
//! further apart are left out. When a limit stops the search it returns the best plan found
//! with the smallest bound of the subtrees left open: a proven lower bound, and so a gap.

use super::{Partitioner, Placement, Problem, Solution};
use crate::error::Result;
use std::time::{Duration, Instant};

/// When the search stops early.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub time: Duration,
    /// Nodes of the search tree (a node given a device) at most.
    pub expansions: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { time: Duration::from_secs(10), expansions: u64::MAX }
    }
}

pub struct Optimal {
    pub limits: Limits,
}

/// What the search proved.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub placement: Placement,
    pub latency_ms: f64,
    /// No placement is predicted faster than this.
    pub lower_bound_ms: f64,
    /// The search finished: `placement` is optimal.
    pub proven: bool,
    pub expansions: u64,
    pub elapsed: Duration,
}

impl Outcome {
    /// (latency − bound) / latency.
    pub fn gap(&self) -> f64 {
        if self.latency_ms > 0.0 { ((self.latency_ms - self.lower_bound_ms) / self.latency_ms).max(0.0) } else { 0.0 }
    }
}

impl Partitioner for Optimal {
    fn name(&self) -> &'static str {
        "optimal"
    }

    fn place(&self, p: &Problem) -> Result<Placement> {
        Ok(self.solve(p)?.placement)
    }

    fn solve(&self, p: &Problem) -> Result<Solution> {
        let seed = super::heft::Heft.place(p)?;
        let out = solve(p, seed, &self.limits);
        Ok(Solution { search: Some(crate::plan::Search::from(&out)), placement: out.placement })
    }
}

impl From<&Outcome> for crate::plan::Search {
    fn from(o: &Outcome) -> Self {
        crate::plan::Search { lower_bound_ms: o.lower_bound_ms, gap: o.gap(), proven_optimal: o.proven, expansions: o.expansions, elapsed_ms: o.elapsed.as_secs_f64() * 1e3 }
    }
}

/// The search's fixed data: per node what it reads and writes, copy costs per tensor and
/// device pair, and the bound on every suffix.
struct Tables {
    nd: usize,
    reads: Vec<Vec<usize>>,
    writes: Vec<Vec<usize>>,
    /// copy[t][from * nd + to], ms.
    copy: Vec<Vec<f64>>,
    /// rest[i][d]: a lower bound on what nodes after i add, node i being on d.
    rest: Vec<Vec<f64>>,
}

fn tables(p: &Problem) -> Tables {
    let (n, nd) = (p.order.len(), p.devices.len());
    let (mut reads, mut writes) = (vec![vec![]; n], vec![vec![]; n]);
    for (t, tensor) in p.tensors.iter().enumerate() {
        if let Some(i) = tensor.producer {
            writes[i].push(t);
        }
        for &c in &tensor.consumers {
            reads[c].push(t);
        }
    }
    let copy: Vec<Vec<f64>> = p.tensors.iter().map(|t| (0..nd * nd).map(|k| p.transfer_ms(k / nd, k % nd, t.bytes)).collect()).collect();
    let mut rest = vec![vec![0.0; nd]; n];
    for i in (0..n.saturating_sub(1)).rev() {
        let next = i + 1;
        for d in 0..nd {
            let mut best = f64::INFINITY;
            for e in (0..nd).filter(|&e| p.allowed(next, e)) {
                let mut c = p.cost[next][e].unwrap_or(f64::INFINITY) + rest[next][e];
                if e != d {
                    c += p.run_overhead_ms[e];
                    // Copies of what `next` reads from node i; an output already bound for the
                    // host is charged there, not here.
                    c += writes[i].iter().filter(|&&t| reads[next].contains(&t) && !(p.tensors[t].output && e == p.host)).map(|&t| copy[t][d * nd + e]).sum::<f64>();
                }
                best = best.min(c);
            }
            rest[i][d] = best;
        }
    }
    Tables { nd, reads, writes, copy, rest }
}

/// The search state: the placement so far, which devices each tensor is already copied to
/// (its producer's included), and an undo log for backtracking.
struct State {
    placement: Placement,
    copied_to: Vec<u64>,
    undo: Vec<(usize, u64)>,
}

impl State {
    /// What giving node i device e adds to the partial cost.
    fn added_ms(&self, p: &Problem, tb: &Tables, i: usize, e: usize) -> f64 {
        let mut c = p.cost[i][e].unwrap_or(f64::INFINITY);
        if i == 0 || self.placement[i - 1] != e {
            c += p.run_overhead_ms[e];
        }
        for &t in &tb.reads[i] {
            if self.copied_to[t] & (1 << e) == 0 {
                let from = p.tensors[t].producer.map(|j| self.placement[j]).unwrap_or(p.host);
                c += tb.copy[t][from * tb.nd + e];
            }
        }
        for &t in &tb.writes[i] {
            if p.tensors[t].output && e != p.host {
                c += tb.copy[t][e * tb.nd + p.host];
            }
        }
        c
    }

    fn apply(&mut self, p: &Problem, tb: &Tables, i: usize, e: usize) {
        self.placement[i] = e;
        for &t in &tb.reads[i] {
            self.undo.push((t, self.copied_to[t]));
            self.copied_to[t] |= 1 << e;
        }
        for &t in &tb.writes[i] {
            self.undo.push((t, self.copied_to[t]));
            self.copied_to[t] = (1 << e) | if p.tensors[t].output { 1 << p.host } else { 0 };
        }
    }

    fn revert_to(&mut self, mark: usize) {
        while self.undo.len() > mark {
            let (t, m) = self.undo.pop().expect("undo entry");
            self.copied_to[t] = m;
        }
    }
}

/// One level of the search: node `depth`'s devices by bound, and how far they are tried.
struct Frame {
    children: Vec<(f64, usize)>,
    next: usize,
    mark: usize,
}

/// Branch and bound from `incumbent` (a feasible placement); never returns anything predicted
/// slower than it.
pub fn solve(p: &Problem, incumbent: Placement, limits: &Limits) -> Outcome {
    let start = Instant::now();
    let n = p.order.len();
    let mut best = incumbent;
    let mut ub = super::evaluate::latency_ms(p, &best);
    if n == 0 || p.devices.len() > 64 {
        return Outcome { placement: best, latency_ms: ub, lower_bound_ms: if n == 0 { ub } else { 0.0 }, proven: n == 0, expansions: 0, elapsed: start.elapsed() };
    }
    let tb = tables(p);
    let limited = p.mem_limits.iter().any(Option::is_some);
    let mut s = State { placement: vec![0; n], copied_to: vec![0; p.tensors.len()], undo: vec![] };
    for (t, tensor) in p.tensors.iter().enumerate() {
        if tensor.producer.is_none() {
            s.copied_to[t] = 1 << p.host;
        }
    }
    let mut partial = vec![0.0; n + 1];
    let eps = |ub: f64| 1e-12 * ub.abs().max(1e-9);
    let children = |s: &State, partial: f64, i: usize| -> Vec<(f64, usize)> {
        let mut v: Vec<(f64, usize)> = (0..tb.nd).filter(|&e| p.allowed(i, e)).map(|e| (partial + s.added_ms(p, &tb, i, e) + tb.rest[i][e], e)).collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    };
    let root = children(&s, 0.0, 0);
    let mut stack = vec![Frame { children: root, next: 0, mark: 0 }];
    let mut expansions = 0u64;
    let mut stopped = false;
    while !stack.is_empty() {
        let depth = stack.len() - 1;
        let frame = &mut stack[depth];
        s.revert_to(frame.mark);
        let Some(&(bound, e)) = frame.children.get(frame.next) else {
            stack.pop();
            continue;
        };
        if bound >= ub - eps(ub) {
            // Children are sorted: none after this one can do better.
            frame.next = frame.children.len();
            continue;
        }
        frame.next += 1;
        expansions += 1;
        if expansions >= limits.expansions || (expansions % 1024 == 0 && start.elapsed() >= limits.time) {
            frame.next -= 1;
            stopped = true;
            break;
        }
        partial[depth + 1] = partial[depth] + s.added_ms(p, &tb, depth, e);
        s.apply(p, &tb, depth, e);
        if depth + 1 == n {
            let total = partial[n];
            if total < ub - eps(ub) && (!limited || p.feasible(&s.placement).is_ok()) {
                ub = total;
                best = s.placement.clone();
            }
            continue;
        }
        let mark = s.undo.len();
        let kids = children(&s, partial[depth + 1], depth + 1);
        stack.push(Frame { children: kids, next: 0, mark });
    }
    // Open subtrees: every untried child still under the incumbent.
    let open = stack.iter().flat_map(|f| f.children[f.next..].iter().map(|c| c.0)).filter(|&b| b < ub).fold(f64::INFINITY, f64::min);
    let latency = super::evaluate::latency_ms(p, &best);
    Outcome { placement: best, latency_ms: latency, lower_bound_ms: if stopped { open.min(latency) } else { latency }, proven: !stopped, expansions, elapsed: start.elapsed() }
}
