//! Einsum on the GPU as permutes around one batched GEMM: with two operands, the labels both
//! share and keep are the batch, those both share and drop are contracted, those only one keeps
//! are its free rows or columns. One operand: a pure permutation. `einsum_route` says which
//! equations fit (no label repeated within an operand, none summed away from one operand alone,
//! no broadcasting).

use super::Builder;
use crate::error::{Error, Result};
use crate::graph::einsum_labels::einsum_plan;
use crate::graph::{Graph, Op};
use petgraph::stable_graph::NodeIndex;
use std::collections::BTreeMap;

/// How an Einsum runs: the operands' labels, the output's, each label's size.
pub struct EinsumRoute {
    labels: Vec<Vec<char>>,
    out: Vec<char>,
    dims: BTreeMap<char, usize>,
}

/// The route of Einsum node `n`, if the GPU lowering covers its equation.
pub fn einsum_route(g: &Graph, n: NodeIndex) -> Option<EinsumRoute> {
    let Op::Einsum { equation } = &g.g[n].op else { return None };
    let shapes: Vec<Vec<usize>> = (0..g.g[n].num_inputs).map(|i| g.input_value(n, i).and_then(|v| v.shape.clone())).collect::<Option<_>>()?;
    let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
    let (labels, out, dims) = einsum_plan(equation, &refs).ok()?;
    let distinct = |l: &[char]| l.iter().enumerate().all(|(i, c)| !l[..i].contains(c));
    let sized = labels.iter().zip(&shapes).all(|(l, s)| l.iter().zip(s).all(|(c, &d)| dims[c] == d));
    if !labels.iter().all(|l| distinct(l)) || !distinct(&out) || !sized {
        return None;
    }
    // Every label an operand has is kept or shared: nothing is summed out of one operand alone.
    let covered = match labels.as_slice() {
        [a] => a.len() == out.len() && a.iter().all(|c| out.contains(c)),
        [a, b] => a.iter().all(|c| out.contains(c) || b.contains(c)) && b.iter().all(|c| out.contains(c) || a.contains(c)),
        _ => false,
    };
    covered.then_some(EinsumRoute { labels, out, dims })
}

impl Builder<'_> {
    /// Copies `x` (labelled `from`) into `o` laid out as `to` (a permutation of `from`).
    fn relabel(&mut self, x: usize, dims: &BTreeMap<char, usize>, from: &[char], to: &[char], o: usize) -> Result<()> {
        let shape: Vec<usize> = from.iter().map(|c| dims[c]).collect();
        let perm: Vec<usize> = to.iter().map(|c| from.iter().position(|f| f == c).unwrap_or(0)).collect();
        self.permute(x, &shape, &perm, o)
    }

    /// `x` laid out as `to`: itself when it already is, else a permuted copy.
    fn laid_out(&mut self, x: usize, dims: &BTreeMap<char, usize>, from: &[char], to: &[char]) -> Result<usize> {
        if from == to {
            return Ok(x);
        }
        let t = self.new_buffer(to.iter().map(|c| dims[c]).product(), self.buffers[x].elem)?;
        self.relabel(x, dims, from, to, t)?;
        Ok(t)
    }

    pub(super) fn einsum(&mut self, n: NodeIndex) -> Result<()> {
        let EinsumRoute { labels, out, dims } = einsum_route(self.g, n).ok_or_else(|| Error::Tensor("this einsum equation has no GPU route".into()))?;
        let o = self.output(n, 0)?;
        let a = self.input(n, 0)?;
        let [la, lb] = match labels.as_slice() {
            [la] => return self.relabel(a, &dims, la, &out, o),
            [la, lb] => [la, lb],
            _ => unreachable!("einsum_route takes one or two operands"),
        };
        let b = self.input(n, 1)?;
        let pick = |keep: &dyn Fn(&char) -> bool, order: &[char]| -> Vec<char> { order.iter().copied().filter(|c| keep(c)).collect() };
        let batch = pick(&|c| la.contains(c) && lb.contains(c), &out);
        let contract = pick(&|c| lb.contains(c) && !out.contains(c), la);
        let left = pick(&|c| la.contains(c) && !lb.contains(c), &out);
        let right = pick(&|c| lb.contains(c) && !la.contains(c), &out);
        let size = |ls: &[char]| ls.iter().map(|c| dims[c]).product::<usize>();
        let a2 = self.laid_out(a, &dims, la, &[&batch[..], &left, &contract].concat())?;
        let b2 = self.laid_out(b, &dims, lb, &[&batch[..], &contract, &right].concat())?;
        let product: Vec<char> = [&batch[..], &left, &right].concat();
        let (m, k, nn) = (size(&left), size(&contract), size(&right));
        let c = if product == out { o } else { self.new_buffer(size(&product), self.buffers[o].elem)? };
        self.batched_product(a2, b2, c, size(&batch), [m, nn, k], (nn, 1), 1.0)?;
        if c != o {
            self.relabel(c, &dims, &product, &out, o)?;
        }
        Ok(())
    }
}
