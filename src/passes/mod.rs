//! Graph rewrites on a bound graph. Each pass is a small object; [`optimize`] runs them to a
//! fixpoint. Every pass keeps every value's inferred type valid, and the tests check each one
//! preserves the model's outputs.

mod fold;
mod fuse;

pub use fold::{ConstantFold, RemoveIdentity};
pub use fuse::{FoldBatchNorm, FuseActivation, FuseGelu, FusePadIntoConv, FuseSwish};

use crate::error::Result;
use crate::graph::Graph;

pub trait Pass {
    fn name(&self) -> &'static str;
    /// Rewrites `g`; returns whether anything changed.
    fn run(&self, g: &mut Graph) -> Result<bool>;
}

/// The default pipeline, in order.
pub fn default_passes() -> Vec<Box<dyn Pass>> {
    vec![Box::new(ConstantFold), Box::new(RemoveIdentity), Box::new(FoldBatchNorm), Box::new(FusePadIntoConv), Box::new(FuseActivation), Box::new(FuseSwish), Box::new(FuseGelu)]
}

/// Runs `passes` until none changes the graph (bounded, in case two passes undo each other).
pub fn run_to_fixpoint(g: &mut Graph, passes: &[Box<dyn Pass>]) -> Result<()> {
    for _ in 0..8 {
        let mut changed = false;
        for p in passes {
            changed |= p.run(g)?;
        }
        if !changed {
            break;
        }
    }
    g.remove_dead();
    Ok(())
}

pub fn optimize(g: &mut Graph) -> Result<()> {
    run_to_fixpoint(g, &default_passes())
}
