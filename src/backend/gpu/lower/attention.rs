//! ONNX Attention (opset 23) on the GPU as the sequence an exporter would have written out:
//! heads gathered, the past keys/values put in front of the new ones (the present outputs),
//! key/value heads repeated for grouped queries, Q K^T scaled in a batched GEMM, softcapped,
//! the causal/window and given masks added, a row softmax, and the product with V; the QK output
//! copied at the stage its mode names; padded external caches (nonpad_kv_seqlen) mask by
//! comparisons against the per-batch valid counts. Not covered: masks shorter than the keys;
//! `attention_supported` says which.

use super::movement::dense;
use super::Builder;
use crate::backend::gpu::layout::*;
use crate::backend::gpu::{Kernel, OpSpec};
use crate::error::Result;
use crate::graph::infer::attention_geometry;
use crate::graph::{BinaryOp, Graph, Op};
use crate::tensor::{DType, Tensor};
use petgraph::stable_graph::NodeIndex;

/// Whether the GPU lowering covers Attention node `n`: past key and value together or neither,
/// and a mask (if any) covering every key (past ones included) and
/// broadcasting to [batch, heads, queries, keys].
pub fn attention_supported(g: &Graph, n: NodeIndex) -> bool {
    let Op::Attention(at) = &g.g[n].op else { return false };
    let shape = |i: usize| g.input_value(n, i).and_then(|v| v.shape.clone());
    let present = |i: usize| g.source(n, i).is_some();
    let (Some(q), Some(k), Some(v)) = (shape(0), shape(1), shape(2)) else { return false };
    if present(4) != present(5) {
        return false;
    }
    let Ok(geo) = attention_geometry(at, &q, &k, &v, shape(4).as_deref()) else { return false };
    let mask_ok = match shape(3) {
        None => !present(3),
        Some(m) => {
            let full = [geo.batch, geo.q_heads, geo.q_seq, geo.total_seq];
            m.len() <= 4 && m.last() == Some(&geo.total_seq) && m.iter().rev().zip(full.iter().rev()).all(|(&a, &b)| a == b || a == 1)
        }
    };
    mask_ok && (0..=3).contains(&at.qk_matmul_output_mode)
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

    /// `o = cond ? scores : -inf` over `full` (`cond` keeps), or `cond ? -inf : scores` (`cond`
    /// masks).
    fn select(&mut self, cond: usize, cond_shape: &[usize], scores: usize, cond_masks: bool, full: &[usize], o: usize) -> Result<()> {
        let minus_inf = self.data_buffer(&Tensor::scalar_f32(f32::NEG_INFINITY), self.buffers[scores].elem)?;
        let numel: usize = full.iter().product();
        let mut p = vec![numel as u32];
        p.extend(shape6(full));
        let (x, y): ((usize, &[usize]), (usize, &[usize])) = if cond_masks { ((minus_inf, &[]), (scores, full)) } else { ((scores, full), (minus_inf, &[])) };
        for sh in [cond_shape, x.1, y.1] {
            p.extend(bcast_strides6(sh, full));
        }
        self.step(Kernel::Where, OpSpec::None, &p, &[cond, x.0, y.0, o], grid(numel))
    }

    /// The present keys (or values) [B, H, past + len, width]: `past` then `cur` (both dense
    /// [B, H, ., width]) along the sequence, into output `slot` when the model names it.
    #[allow(clippy::too_many_arguments)]
    fn present(&mut self, n: NodeIndex, slot: usize, past: usize, cur: usize, [b, h, past_len, len, width]: [usize; 5]) -> Result<usize> {
        let total = past_len + len;
        let out = match self.g.g[n].outputs.get(slot) {
            Some(v) if !v.name.is_empty() => self.output(n, slot)?,
            _ => self.new_buffer(b * h * total * width, self.buffers[cur].elem)?,
        };
        let dst = dense(&[b, h, total, width]);
        self.copy(past, 0, &dense(&[b, h, past_len, width]), out, 0, &dst, &[b, h, past_len, width])?;
        self.copy(cur, 0, &dense(&[b, h, len, width]), out, past_len * width, &dst, &[b, h, len, width])?;
        Ok(out)
    }

    pub(super) fn attention(&mut self, n: NodeIndex) -> Result<()> {
        let Op::Attention(at) = &self.g.g[n].op else { unreachable!() };
        let at = at.clone();
        let (qs, ks, vs) = (self.in_shape(n, 0), self.in_shape(n, 1), self.in_shape(n, 2));
        let has_past = self.g.source(n, 4).is_some();
        let past_shape = has_past.then(|| self.in_shape(n, 4));
        let g = attention_geometry(&at, &qs, &ks, &vs, past_shape.as_deref())?;
        let (b, hq, s, t, d, dv) = (g.batch, g.q_heads, g.q_seq, g.total_seq, g.head_size, g.v_size);
        let (hk, group) = (g.kv_heads, hq / g.kv_heads);
        let (q, k, v) = (self.input(n, 0)?, self.input(n, 1)?, self.input(n, 2)?);
        let elem = self.buffers[q].elem;
        let q4 = self.heads(q, &qs, hq, 1, s, d)?;
        let (mut k_all, mut v_all) = (self.heads(k, &ks, hk, 1, g.kv_seq, d)?, self.heads(v, &vs, hk, 1, g.kv_seq, dv)?);
        if has_past {
            let (pk, pv) = (self.input(n, 4)?, self.input(n, 5)?);
            k_all = self.present(n, 1, pk, k_all, [b, hk, g.past_seq, g.kv_seq, d])?;
            v_all = self.present(n, 2, pv, v_all, [b, hk, g.past_seq, g.kv_seq, dv])?;
        } else {
            // Without a cache the present outputs are the new keys and values themselves.
            for (slot, x, width) in [(1, k_all, d), (2, v_all, dv)] {
                if self.g.g[n].outputs.get(slot).is_some_and(|v| !v.name.is_empty()) {
                    let o = self.output(n, slot)?;
                    let shape = [b, hk, t, width];
                    self.copy(x, 0, &dense(&shape), o, 0, &dense(&shape), &shape)?;
                }
            }
        }
        let k4 = self.heads(k_all, &[b, hk, t, d], hk, group, t, d)?;
        let v4 = self.heads(v_all, &[b, hk, t, dv], hk, group, t, dv)?;
        // Scores [B, Hq, S, T] = scale * Q K^T (K read transposed: row stride 1, column stride d).
        let full = [b, hq, s, t];
        let numel: usize = full.iter().product();
        let mut scores = self.new_buffer(numel, elem)?;
        self.batched_product(q4, k4, scores, b * hq, [s, t, d], (1, d), at.scale.unwrap_or(1.0 / (d as f32).sqrt()))?;
        let qk_out = match self.g.g[n].outputs.get(3) {
            Some(v) if !v.name.is_empty() => Some(self.output(n, 3)?),
            _ => None,
        };
        let expose = |me: &mut Self, scores: usize, stage: i64| -> Result<()> {
            match qk_out {
                Some(o) if at.qk_matmul_output_mode.max(1) == stage => me.copy(scores, 0, &dense(&full), o, 0, &dense(&full), &full),
                _ => Ok(()),
            }
        };
        if at.softcap > 0.0 {
            // softcap * tanh(scores / softcap)
            let (inv, cap) = (self.data_buffer(&Tensor::scalar_f32(1.0 / at.softcap), elem)?, self.data_buffer(&Tensor::scalar_f32(at.softcap), elem)?);
            let [scaled, bounded, capped] = [(); 3].map(|_| self.new_buffer(numel, elem));
            let (scaled, bounded, capped) = (scaled?, bounded?, capped?);
            self.binary(BinaryOp::Mul, (scores, &full), (inv, &[]), scaled, &full)?;
            self.step(Kernel::Unary, OpSpec::Unary(crate::graph::UnaryOp::Tanh), &[numel as u32, 0, 0], &[scaled, bounded], grid(numel))?;
            self.binary(BinaryOp::Mul, (bounded, &full), (cap, &[]), capped, &full)?;
            scores = capped;
        }
        expose(self, scores, 1)?;
        // scores + bias, or (a boolean mask) scores where true and -inf elsewhere.
        let add = |me: &mut Self, scores: usize, bias: usize, bias_shape: &[usize], op: Option<BinaryOp>| -> Result<usize> {
            let next = me.new_buffer(numel, elem)?;
            match op {
                Some(op) => me.binary(op, (scores, &full), (bias, bias_shape), next, &full)?,
                None => me.select(bias, bias_shape, scores, false, &full, next)?,
            }
            Ok(next)
        };
        let windowed = at.is_causal || at.left_window >= 0 || at.right_window >= 0;
        // A padded external cache: the valid key count per batch, as [B, 1, 1, 1].
        let nonpad = match self.g.source(n, 6) {
            Some(_) => Some(self.input(n, 6)?),
            None => None,
        };
        let per_batch = [b, 1, 1, 1];
        // Scores set to -inf where `lhs op rhs` (shapes broadcasting to `full`).
        let mask_where = |me: &mut Self, scores: usize, op: BinaryOp, (lhs, ls): (usize, &[usize]), (rhs, rs): (usize, &[usize])| -> Result<usize> {
            let cond = me.new_buffer(numel, elem)?;
            me.binary(op, (lhs, ls), (rhs, rs), cond, &full)?;
            let next = me.new_buffer(numel, elem)?;
            me.select(cond, &full, scores, true, &full, next)?;
            Ok(next)
        };
        let keys = [1, 1, 1, t];
        let constant = |me: &mut Self, shape: &[usize], f: &dyn Fn(usize) -> f32| me.data_buffer(&Tensor::from_f32(shape, (0..shape.iter().product()).map(f).collect())?, elem);
        if let Some(valid) = nonpad {
            // Keys at or past the valid count are padding.
            let j = constant(self, &keys, &|j| j as f32)?;
            scores = mask_where(self, scores, BinaryOp::GreaterOrEqual, (j, &keys), (valid, &per_batch))?;
        }
        match nonpad {
            Some(valid) if windowed && g.past_seq == 0 => {
                // Query i sits at absolute position valid - S + i, so its distance to key j is
                // valid - e with e = j - i + S: each window side compares the valid counts
                // against e shifted by its bound.
                let grid_st = [1, 1, s, t];
                let sides = [(at.is_causal, 0, BinaryOp::Less), (at.left_window >= 0, at.left_window, BinaryOp::Greater), (at.right_window >= 0, -at.right_window, BinaryOp::Less)];
                for (_, shift, op) in sides.into_iter().filter(|side| side.0) {
                    let e = constant(self, &grid_st, &|x| ((x % t) as i64 - (x / t) as i64 + s as i64 + shift) as f32)?;
                    scores = mask_where(self, scores, op, (valid, &per_batch), (e, &grid_st))?;
                }
            }
            _ if windowed => {
                // Queries at their absolute positions (after the past keys) against every key.
                let hidden = |e: usize| at.hides((e / t + g.past_seq) as i64 - (e % t) as i64);
                let c = constant(self, &[s, t], &|e| if hidden(e) { f32::NEG_INFINITY } else { 0.0 })?;
                scores = add(self, scores, c, &[s, t], Some(BinaryOp::Add))?;
            }
            _ => {}
        }
        if self.g.source(n, 3).is_some() {
            let mask_shape = self.in_shape(n, 3);
            let boolean = self.g.input_value(n, 3).and_then(|v| v.dtype) == Some(DType::Bool);
            let m = self.input(n, 3)?;
            scores = add(self, scores, m, &mask_shape, (!boolean).then_some(BinaryOp::Add))?;
        }
        expose(self, scores, 2)?;
        let probs = self.new_buffer(numel, elem)?;
        // Kind 16: softmax, with rows masked everywhere attending to nothing (zeros), as ONNX's.
        self.rows(scores, b * hq * s, t, 16, 0.0, None, None, probs)?;
        expose(self, probs, 3)?;
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
