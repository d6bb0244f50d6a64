//! ONNX Attention (opset 23) on the GPU as the sequence an exporter would have written out:
//! heads gathered (key/value heads repeated for grouped queries), Q K^T scaled in a batched GEMM,
//! the causal and given masks added, a row softmax, and the product with V. Covers inputs
//! without a KV cache, softcap or sliding window; `attention_supported` says which.

use super::movement::dense;
use super::Builder;
use crate::backend::gpu::layout::*;
use crate::backend::gpu::{Kernel, OpSpec};
use crate::error::Result;
use crate::graph::infer::attention_geometry;
use crate::graph::{BinaryOp, Graph, Op};
use crate::tensor::{DType, Tensor};
use petgraph::stable_graph::NodeIndex;

/// Whether the GPU lowering covers Attention node `n`: no past key/value or non-pad lengths, no
/// softcap or window, only the output Y used, and a mask (if any) covering every key and
/// broadcasting to [batch, heads, queries, keys].
pub fn attention_supported(g: &Graph, n: NodeIndex) -> bool {
    let Op::Attention(at) = &g.g[n].op else { return false };
    let shape = |i: usize| g.input_value(n, i).and_then(|v| v.shape.clone());
    let present = |i: usize| g.source(n, i).is_some();
    let (Some(q), Some(k), Some(v)) = (shape(0), shape(1), shape(2)) else { return false };
    let Ok(geo) = attention_geometry(at, &q, &k, &v, None) else { return false };
    let mask_ok = match shape(3) {
        None => !present(3),
        Some(m) => {
            let full = [geo.batch, geo.q_heads, geo.q_seq, geo.kv_seq];
            m.len() <= 4 && m.last() == Some(&geo.kv_seq) && m.iter().rev().zip(full.iter().rev()).all(|(&a, &b)| a == b || a == 1)
        }
    };
    let extra_unused = g.g[n].outputs.iter().skip(1).all(|v| v.name.is_empty());
    mask_ok && extra_unused && !(4..7).any(present) && at.softcap == 0.0 && at.left_window < 0 && at.right_window < 0
}

impl Builder<'_> {
    /// `x` ([B, h_in, len, width], or [B, len, h_in * width] when `shape` is 3-D) as a dense
    /// [B, h_in * repeat, len, width], each head repeated `repeat` times.
    fn heads(&mut self, x: usize, shape: &[usize], h_in: usize, repeat: usize, len: usize, width: usize) -> Result<usize> {
        if shape.len() == 4 && repeat == 1 {
            return Ok(x);
        }
        let b = shape[0];
        let src: Vec<isize> = if shape.len() == 4 {
            vec![(h_in * len * width) as isize, (len * width) as isize, 0, width as isize, 1]
        } else {
            vec![(len * h_in * width) as isize, width as isize, 0, (h_in * width) as isize, 1]
        };
        let view = [b, h_in, repeat, len, width];
        let out = self.new_buffer(view.iter().product(), self.buffers[x].elem)?;
        self.copy(x, 0, &src, out, 0, &dense(&view), &view)?;
        Ok(out)
    }

    /// A batched product `c[z] = alpha * a[z] (m x k) * b[z] (k x n)`, `b` read with row and
    /// column strides `b_rs`, `b_cs`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn batched_product(&mut self, a: usize, b: usize, c: usize, batch: usize, [m, n, k]: [usize; 3], (b_rs, b_cs): (usize, usize), alpha: f32) -> Result<()> {
        let d = self.dummy()?;
        let mut p = vec![m as u32, n as u32, k as u32, (m * k) as u32, k as u32, 1, (k * n) as u32, b_rs as u32, b_cs as u32, 0, 0, 1, alpha.to_bits(), 0f32.to_bits()];
        p.extend(act_params(None));
        p.extend([0, (m * n) as u32]);
        self.step(Kernel::Matmul, OpSpec::None, &p, &[a, b, d, c], [n.div_ceil(16) as u32, m.div_ceil(16) as u32, batch as u32])
    }

    pub(super) fn attention(&mut self, n: NodeIndex) -> Result<()> {
        let Op::Attention(at) = &self.g.g[n].op else { unreachable!() };
        let at = at.clone();
        let (qs, ks, vs) = (self.in_shape(n, 0), self.in_shape(n, 1), self.in_shape(n, 2));
        let g = attention_geometry(&at, &qs, &ks, &vs, None)?;
        let (b, hq, s, t, d, dv) = (g.batch, g.q_heads, g.q_seq, g.kv_seq, g.head_size, g.v_size);
        let group = hq / g.kv_heads;
        let (q, k, v) = (self.input(n, 0)?, self.input(n, 1)?, self.input(n, 2)?);
        let elem = self.buffers[q].elem;
        let q4 = self.heads(q, &qs, hq, 1, s, d)?;
        let k4 = self.heads(k, &ks, g.kv_heads, group, t, d)?;
        let v4 = self.heads(v, &vs, g.kv_heads, group, t, dv)?;
        // Scores [B, Hq, S, T] = scale * Q K^T (K read transposed: row stride 1, column stride d).
        let full = [b, hq, s, t];
        let mut scores = self.new_buffer(full.iter().product(), elem)?;
        self.batched_product(q4, k4, scores, b * hq, [s, t, d], (1, d), at.scale.unwrap_or(1.0 / (d as f32).sqrt()))?;
        let mut add = |me: &mut Self, bias: usize, bias_shape: &[usize], op: Option<BinaryOp>| -> Result<()> {
            let next = me.new_buffer(full.iter().product(), elem)?;
            match op {
                Some(op) => me.binary(op, (scores, &full), (bias, bias_shape), next, &full)?,
                // A boolean mask keeps scores where true, -inf elsewhere.
                None => {
                    let minus_inf = me.data_buffer(&Tensor::scalar_f32(f32::NEG_INFINITY), elem)?;
                    let mut p = vec![full.iter().product::<usize>() as u32];
                    p.extend(shape6(&full));
                    for sh in [bias_shape, &full[..], &[]] {
                        p.extend(bcast_strides6(sh, &full));
                    }
                    me.step(Kernel::Where, OpSpec::None, &p, &[bias, scores, minus_inf, next], grid(full.iter().product()))?;
                }
            }
            scores = next;
            Ok(())
        };
        if at.is_causal {
            let causal: Vec<f32> = (0..s * t).map(|e| if e % t > e / t { f32::NEG_INFINITY } else { 0.0 }).collect();
            let c = self.data_buffer(&Tensor::from_f32(&[s, t], causal)?, elem)?;
            add(self, c, &[s, t], Some(BinaryOp::Add))?;
        }
        if self.g.source(n, 3).is_some() {
            let mask_shape = self.in_shape(n, 3);
            let boolean = self.g.input_value(n, 3).and_then(|v| v.dtype) == Some(DType::Bool);
            let m = self.input(n, 3)?;
            add(self, m, &mask_shape, (!boolean).then_some(BinaryOp::Add))?;
        }
        let probs = self.new_buffer(full.iter().product(), elem)?;
        // Kind 16: softmax, with rows masked everywhere attending to nothing (zeros), as ONNX's.
        self.rows(scores, b * hq * s, t, 16, 0.0, None, None, probs)?;
        let o = self.output(n, 0)?;
        if qs.len() == 4 {
            return self.batched_product(probs, v4, o, b * hq, [s, dv, t], (dv, 1), 1.0);
        }
        // 3-D output [B, S, Hq * Dv] from the heads-major product.
        let y = self.new_buffer(b * hq * s * dv, elem)?;
        self.batched_product(probs, v4, y, b * hq, [s, dv, t], (dv, 1), 1.0)?;
        self.permute(y, &[b, hq, s, dv], &[0, 2, 1, 3], o)
    }
}
