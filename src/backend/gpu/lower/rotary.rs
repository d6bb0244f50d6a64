//! RotaryEmbedding on the GPU from the shared kernels: the cos/sin rows gathered by position,
//! the two halves of every rotated pair copied out of X (strided views: first/second half, or
//! even/odd elements when interleaved), `x1 cos - x2 sin` and `x2 cos + x1 sin` as broadcasting
//! binary launches, and both written back into the output's views (the rest of each head, past
//! rotary_embedding_dim, copied through).

use super::movement::dense;
use super::Builder;
use crate::error::Result;
use crate::graph::geometry::RotaryGeometry;
use crate::graph::{BinaryOp, Op};
use crate::backend::gpu::{Kernel, OpSpec};
use crate::backend::gpu::layout::grid;
use petgraph::stable_graph::NodeIndex;

impl Builder<'_> {
    pub(super) fn rotary(&mut self, n: NodeIndex) -> Result<()> {
        let Op::Rotary { interleaved, rotary_dim, num_heads } = self.g.g[n].op else { unreachable!("rotary() lowers RotaryEmbedding") };
        let (xs, cos_shape) = (self.in_shape(n, 0), self.in_shape(n, 1));
        let geo = RotaryGeometry::new(&xs, &cos_shape, rotary_dim, num_heads)?;
        let (x, o) = (self.input(n, 0)?, self.output(n, 0)?);
        // cos and sin as [batch, seq, half]: gathered by position, or given so.
        let elem = self.buffers[x].elem;
        let view = geo.view();
        let rows = geo.batch * geo.seq;
        let (mut cos, mut sin) = (self.input(n, 1)?, self.input(n, 2)?);
        if self.g.source(n, 3).is_some() {
            let positions = self.input(n, 3)?;
            let (flag, id) = self.index_check()?;
            let p = [(rows * geo.half) as u32, cos_shape[0] as u32, rows as u32, geo.half as u32, id];
            for table in [&mut cos, &mut sin] {
                let picked = self.new_buffer(rows * geo.half, self.buffers[*table].elem)?;
                self.step(Kernel::Gather, OpSpec::None, &p, &[*table, positions, picked, flag], grid(rows * geo.half))?;
                *table = picked;
            }
        }
        // The pair (a, b) of element i < half: (i, i + half), or (2i, 2i + 1) interleaved.
        let (step, second): (isize, usize) = if interleaved { (2, 1) } else { (1, geo.half) };
        let st = dense(&view);
        let half_view = [view[0], view[1], view[2], geo.half];
        let pair_st = [st[0], st[1], st[2], step];
        let half_len: usize = half_view.iter().product();
        let cache_view = geo.cache_view();
        let [x1, x2, c1, s2, c2, s1, y1, y2] = [(); 8].map(|_| self.new_buffer(half_len, elem));
        let (x1, x2, c1, s2, c2, s1, y1, y2) = (x1?, x2?, c1?, s2?, c2?, s1?, y1?, y2?);
        self.copy(x, 0, &pair_st, x1, 0, &dense(&half_view), &half_view)?;
        self.copy(x, second as isize, &pair_st, x2, 0, &dense(&half_view), &half_view)?;
        for (a, c, out) in [(x1, cos, c1), (x2, sin, s2), (x2, cos, c2), (x1, sin, s1)] {
            self.binary(BinaryOp::Mul, (a, &half_view), (c, &cache_view), out, &half_view)?;
        }
        self.binary(BinaryOp::Sub, (c1, &half_view), (s2, &half_view), y1, &half_view)?;
        self.binary(BinaryOp::Add, (c2, &half_view), (s1, &half_view), y2, &half_view)?;
        if 2 * geo.half < geo.head {
            // Elements past rotary_embedding_dim pass through.
            let tail = [view[0], view[1], view[2], geo.head - 2 * geo.half];
            self.copy(x, (2 * geo.half) as isize, &st, o, 2 * geo.half, &st, &tail)?;
        }
        self.copy(y1, 0, &dense(&half_view), o, 0, &pair_st, &half_view)?;
        self.copy(y2, 0, &dense(&half_view), o, second, &pair_st, &half_view)?;
        Ok(())
    }
}
