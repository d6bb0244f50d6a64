//! Partitioners: a placement of every compute node on a device, under support, pins and memory
//! limits, judged by the cost model. Algorithms see only a [`Problem`] (graph facts, predicted
//! costs and constraints as plain data), never a device.

pub mod constraints;
pub mod evaluate;
pub mod greedy;
pub mod heft;
pub mod merge;
pub mod problem;

pub use constraints::Constraints;
pub use problem::Problem;

use crate::error::Result;
use crate::plan::Plan;

/// A device index per compute node, in the problem's node order.
pub type Placement = Vec<usize>;

pub trait Partitioner {
    fn name(&self) -> &'static str;
    fn place(&self, problem: &Problem) -> Result<Placement>;
}

/// The partitioner named `name`.
pub fn by_name(name: &str) -> Result<Box<dyn Partitioner>> {
    match name {
        "greedy" => Ok(Box::new(greedy::Greedy)),
        "heft" => Ok(Box::new(heft::Heft)),
        "auto" => Ok(Box::new(Auto)),
        other => Err(crate::error::Error::Plan(format!("unknown algorithm '{other}' (greedy, heft, auto)"))),
    }
}

/// Picks the objective's algorithm: for latency, HEFT (itself never predicted worse than the
/// best single device or greedy).
pub struct Auto;

impl Partitioner for Auto {
    fn name(&self) -> &'static str {
        "auto"
    }

    fn place(&self, p: &Problem) -> Result<Placement> {
        heft::Heft.place(p)
    }
}

/// The feasible candidate predicted fastest.
pub fn best_of(p: &Problem, candidates: Vec<Placement>) -> Result<Placement> {
    let mut best: Option<(f64, Placement)> = None;
    let mut last_err = None;
    for pl in candidates {
        match p.feasible(&pl) {
            Ok(()) => {
                let t = evaluate::latency_ms(p, &pl);
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
    let placement = algorithm.place(problem)?;
    problem.feasible(&placement)?;
    evaluate::plan(problem, &placement, algorithm.name())
}
