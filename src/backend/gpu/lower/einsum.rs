//! Einsum on the GPU as permutes around one batched GEMM ([`EinsumGemm`] says which equations
//! fit and the labels' roles).

use super::Builder;
use crate::error::{Error, Result};
use crate::graph::einsum_labels::{EinsumGemm, GemmLabels};
use crate::graph::{Graph, Op};
use petgraph::stable_graph::NodeIndex;

/// The route of Einsum node `n`, if the GPU lowering covers its equation.
pub fn einsum_route(g: &Graph, n: NodeIndex) -> Option<EinsumGemm> {
    let Op::Einsum { equation } = &g.g[n].op else { return None };
    let shapes: Vec<Vec<usize>> = (0..g.g[n].num_inputs).map(|i| g.input_value(n, i).and_then(|v| v.shape.clone())).collect::<Option<_>>()?;
    let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
    EinsumGemm::new(equation, &refs)
}

impl Builder<'_> {
    /// Copies `x` (labelled `from`) into `o` laid out as `to` (a permutation of `from`).
    fn relabel(&mut self, x: usize, route: &EinsumGemm, from: &[char], to: &[char], o: usize) -> Result<()> {
        self.permute(x, &route.shape(from), &EinsumGemm::perm(from, to), o)
    }

    /// `x` laid out as `to`: itself when it already is, else a permuted copy.
    fn laid_out(&mut self, x: usize, route: &EinsumGemm, from: &[char], to: &[char]) -> Result<usize> {
        if from == to {
            return Ok(x);
        }
        let t = self.new_buffer(route.size(to), self.buffers[x].elem)?;
        self.relabel(x, route, from, to, t)?;
        Ok(t)
    }

    pub(super) fn einsum(&mut self, n: NodeIndex) -> Result<()> {
        let route = einsum_route(self.g, n).ok_or_else(|| Error::Tensor("this einsum equation has no GPU route".into()))?;
        let o = self.output(n, 0)?;
        let a = self.input(n, 0)?;
        let Some(GemmLabels { batch, left, contract, right }) = route.roles() else {
            return self.relabel(a, &route, &route.labels[0], &route.out, o);
        };
        let b = self.input(n, 1)?;
        let (la, lb) = (&route.labels[0], &route.labels[1]);
        let a2 = self.laid_out(a, &route, la, &[&batch[..], &left, &contract].concat())?;
        let b2 = self.laid_out(b, &route, lb, &[&batch[..], &contract, &right].concat())?;
        let product: Vec<char> = [&batch[..], &left, &right].concat();
        let (m, k, nn) = (route.size(&left), route.size(&contract), route.size(&right));
        let c = if product == route.out { o } else { self.new_buffer(route.size(&product), self.buffers[o].elem)? };
        self.batched_product(a2, b2, c, route.size(&batch), [m, nn, k], (nn, 1), 1.0)?;
        if c != o {
            self.relabel(c, &route, &product, &route.out, o)?;
        }
        Ok(())
    }
}
