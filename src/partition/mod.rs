//! Partitioners: a placement of every compute node on a device, under support, pins and memory
//! limits, judged by the cost model. Algorithms see only a [`Problem`] (graph facts, predicted
//! costs and constraints as plain data), never a device.

pub mod constraints;
pub mod evaluate;
pub mod greedy;
pub mod heft;
pub mod merge;
pub mod optimal;
pub mod pipeline;
pub mod problem;

pub use constraints::Constraints;
pub use problem::Problem;

use crate::error::Result;
use crate::plan::{Objective, Plan, Search};

/// A device index per compute node, in the problem's node order.
pub type Placement = Vec<usize>;

/// A placement, and what a search proved about it where it searched.
pub struct Solution {
    pub placement: Placement,
    pub search: Option<Search>,
}

pub trait Partitioner {
    fn name(&self) -> &'static str;
    fn place(&self, problem: &Problem) -> Result<Placement>;
    /// What the placement is chosen for.
    fn objective(&self) -> Objective {
        Objective::Latency
    }
    fn solve(&self, problem: &Problem) -> Result<Solution> {
        Ok(Solution { placement: self.place(problem)?, search: None })
    }
}

/// The partitioner named `name`, for `objective` where the name leaves it open (`auto`).
pub fn by_name(name: &str, objective: Objective) -> Result<Box<dyn Partitioner>> {
    match (name, objective) {
        ("greedy", _) => Ok(Box::new(greedy::Greedy)),
        ("heft", _) => Ok(Box::new(heft::Heft)),
        ("optimal", _) => Ok(Box::new(optimal::Optimal { limits: Default::default() })),
        ("pipeline", _) | ("auto", Objective::Throughput) => Ok(Box::new(pipeline::Pipeline)),
        ("auto", Objective::Latency) => Ok(Box::new(Auto)),
        (other, _) => Err(crate::error::Error::Plan(format!("unknown algorithm '{other}' (greedy, heft, optimal, pipeline, auto)"))),
    }
}

/// Search-tree nodes `auto` gives the exact search after HEFT: enough to prove the optimum of a
/// chain-like CNN, bounded so planning stays in milliseconds and the same on every machine.
pub const AUTO_EXPANSIONS: u64 = 100_000;

/// For latency: HEFT (never predicted worse than the best single device or greedy), then the
/// exact search from HEFT's plan within [`AUTO_EXPANSIONS`]. For throughput use
/// [`pipeline::Pipeline`] (`by_name("auto", Throughput)` does).
pub struct Auto;

impl Partitioner for Auto {
    fn name(&self) -> &'static str {
        "auto"
    }

    fn place(&self, p: &Problem) -> Result<Placement> {
        Ok(self.solve(p)?.placement)
    }

    fn solve(&self, p: &Problem) -> Result<Solution> {
        let limits = optimal::Limits { time: std::time::Duration::from_secs(1), expansions: AUTO_EXPANSIONS };
        let out = optimal::solve(p, heft::Heft.place(p)?, &limits);
        Ok(Solution { search: Some(Search::from(&out)), placement: out.placement })
    }
}

/// The feasible candidate predicted fastest.
pub fn best_of(p: &Problem, candidates: Vec<Placement>) -> Result<Placement> {
    best_by(p, candidates, evaluate::latency_ms)
}

/// The feasible candidate with the lowest `score`.
pub fn best_by(p: &Problem, candidates: Vec<Placement>, score: fn(&Problem, &Placement) -> f64) -> Result<Placement> {
    let mut best: Option<(f64, Placement)> = None;
    let mut last_err = None;
    for pl in candidates {
        match p.feasible(&pl) {
            Ok(()) => {
                let t = score(p, &pl);
                if best.as_ref().is_none_or(|(b, _)| t < *b) {
                    best = Some((t, pl));
                }
            }
            Err(e) => last_err = Some(e),
        }
    }
    best.map(|b| b.1).ok_or_else(|| last_err.unwrap_or_else(|| crate::error::Error::Plan("no placement to choose from".into())))
}

/// Places `problem` with `algorithm` and describes the result as a [`Plan`].
pub fn partition(problem: &Problem, algorithm: &dyn Partitioner) -> Result<Plan> {
    let solution = algorithm.solve(problem)?;
    problem.feasible(&solution.placement)?;
    let mut plan = evaluate::plan(problem, &solution.placement, algorithm.name())?;
    plan.objective = algorithm.objective();
    plan.search = solution.search;
    Ok(plan)
}
