//! Fusions: BatchNormalization into the preceding Conv, a zero Pad into the following Conv's
//! pads, Relu/Clip/Swish/HardSwish into Conv or Gemm,
//! `x * Sigmoid(x)` into one Swish (SiLU) op, and the five-op erf GELU into one Gelu.

use super::Pass;
use crate::error::Result;
use crate::graph::{Activation, AutoPad, Graph, Op, PadMode, UnaryOp};
use crate::tensor::Tensor;
use petgraph::stable_graph::NodeIndex;


/// The single consumer of output 0 of `n`, reading it as its first input, if nothing else reads it.
fn sole_consumer(g: &Graph, n: NodeIndex) -> Option<NodeIndex> {
    g.sole_use(n, 0).filter(|&(_, slot)| slot == 0).map(|(c, _)| c)
}

/// Makes `node` the unary `op` of `x` (its inputs dropped); the caller removes what it replaced.
fn become_unary(g: &mut Graph, node: NodeIndex, x: (NodeIndex, usize), op: UnaryOp) {
    let incoming: Vec<_> = g.g.edges_directed(node, petgraph::Direction::Incoming).map(|e| petgraph::visit::EdgeRef::id(&e)).collect();
    for e in incoming {
        g.g.remove_edge(e);
    }
    g.connect(x.0, x.1, node, 0);
    g.g[node].num_inputs = 1;
    g.g[node].op = Op::Unary(op);
}

fn f32_const(g: &Graph, n: NodeIndex, slot: usize) -> Option<Vec<f32>> {
    g.input_const(n, slot).and_then(|t| t.as_f32().ok().map(|v| v.to_vec()))
}

pub struct FoldBatchNorm;

impl Pass for FoldBatchNorm {
    fn name(&self) -> &'static str {
        "fold-batchnorm"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        let convs: Vec<_> = g.g.node_indices().filter(|&n| matches!(g.g[n].op, Op::Conv { activation: None, .. })).collect();
        for conv in convs {
            let Some(bn) = sole_consumer(g, conv) else { continue };
            let Op::BatchNorm { epsilon } = g.g[bn].op else { continue };
            let (Some(w), Some(scale), Some(beta), Some(mean), Some(var)) =
                (g.input_const(conv, 1), f32_const(g, bn, 1), f32_const(g, bn, 2), f32_const(g, bn, 3), f32_const(g, bn, 4))
            else {
                continue;
            };
            let Ok(wv) = w.as_f32() else { continue };
            let m = w.shape()[0];
            let per = wv.len() / m.max(1);
            let bias = f32_const(g, conv, 2).unwrap_or_else(|| vec![0.0; m]);
            let k: Vec<f32> = (0..m).map(|i| scale[i] / (var[i] + epsilon).sqrt()).collect();
            let new_w: Vec<f32> = wv.iter().enumerate().map(|(i, &x)| x * k[i / per]).collect();
            let new_b: Vec<f32> = (0..m).map(|i| (bias[i] - mean[i]) * k[i] + beta[i]).collect();
            let name = g.g[conv].name.clone();
            let wc = g.add_constant(format!("{name}/W_bn"), Tensor::from_f32(w.shape(), new_w)?, true);
            let bc = g.add_constant(format!("{name}/B_bn"), Tensor::from_f32(&[m], new_b)?, true);
            // Rewire the conv to the folded weights, then let the conv stand in for the BN.
            g.set_input(conv, 1, (wc, 0));
            g.set_input(conv, 2, (bc, 0));
            g.g[conv].num_inputs = 3;
            g.replace_uses((bn, 0), (conv, 0));
            g.g.remove_node(bn);
            changed = true;
        }
        if changed {
            g.remove_dead();
        }
        Ok(changed)
    }
}

/// A constant-mode Pad with zero fill and non-negative spatial pads whose only use is a Conv
/// becomes part of the Conv's own pads (TensorFlow exports pad this way): no padded copy.
pub struct FusePadIntoConv;

impl Pass for FusePadIntoConv {
    fn name(&self) -> &'static str {
        "fuse-pad-into-conv"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        let pads: Vec<_> = g.g.node_indices().filter(|&n| matches!(g.g[n].op, Op::Pad { mode: PadMode::Constant })).collect();
        for pad in pads {
            let Some(conv) = sole_consumer(g, pad) else { continue };
            let Some(extra) = spatial_zero_pads(g, pad) else { continue };
            let Some(x) = g.source(pad, 0) else { continue };
            let Op::Conv { window, .. } = &mut g.g[conv].op else { continue };
            let nd = extra.len() / 2;
            if window.auto_pad != AutoPad::NotSet || !(window.pads.is_empty() || window.pads.len() == 2 * nd) {
                continue;
            }
            let old = if window.pads.is_empty() { vec![0; 2 * nd] } else { window.pads.clone() };
            window.pads = old.iter().zip(&extra).map(|(a, b)| a + b).collect();
            g.set_input(conv, 0, x);
            g.g.remove_node(pad);
            changed = true;
        }
        if changed {
            g.remove_dead();
        }
        Ok(changed)
    }
}

/// The spatial pads (begins, then ends; rank - 2 of each) of a Pad node that adds only zeros,
/// only around spatial axes of a rank >= 3 input.
fn spatial_zero_pads(g: &Graph, pad: NodeIndex) -> Option<Vec<usize>> {
    let rank = g.input_value(pad, 0)?.shape.as_ref()?.len();
    let pads = g.input_const(pad, 1)?.to_i64_vec().ok()?;
    let value_is_zero = match g.source(pad, 2) {
        None => true,
        Some(_) => g.input_const(pad, 2)?.to_f64_vec().first().is_none_or(|&v| v == 0.0),
    };
    let axes = match g.source(pad, 3) {
        None => None,
        Some(_) => Some(g.input_const(pad, 3)?.to_i64_vec().ok()?),
    };
    let axes = crate::graph::infer::pad_axes(rank, axes).ok()?;
    if rank < 3 || !value_is_zero || pads.len() != 2 * axes.len() {
        return None;
    }
    let (mut begin, mut end) = (vec![0i64; rank], vec![0i64; rank]);
    for (i, &a) in axes.iter().enumerate() {
        begin[a] = pads[i];
        end[a] = pads[i + axes.len()];
    }
    let spatial = begin[2..].iter().chain(&end[2..]);
    if begin[..2].iter().chain(&end[..2]).any(|&p| p != 0) || spatial.clone().any(|&p| p < 0) {
        return None;
    }
    Some(begin[2..].iter().chain(&end[2..]).map(|&p| p as usize).collect())
}

pub struct FuseActivation;

impl Pass for FuseActivation {
    fn name(&self) -> &'static str {
        "fuse-activation"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        let producers: Vec<_> = g
            .g
            .node_indices()
            .filter(|&n| matches!(g.g[n].op, Op::Conv { activation: None, .. } | Op::Gemm { activation: None, .. }))
            .collect();
        for p in producers {
            let Some(c) = sole_consumer(g, p) else { continue };
            let act = match &g.g[c].op {
                Op::Unary(UnaryOp::Relu) => Activation::Relu,
                Op::Unary(UnaryOp::Swish(alpha)) => Activation::Swish(*alpha),
                Op::Unary(UnaryOp::HardSwish) => Activation::HardSwish,
                Op::Clip { min, max } => {
                    let bound = |slot: usize, attr: Option<f32>, default: f32| -> Option<f32> {
                        match g.source(c, slot) {
                            Some(_) => g.input_const(c, slot).and_then(|t| t.as_f32().ok().and_then(|v| v.first().copied())),
                            None => Some(attr.unwrap_or(default)),
                        }
                    };
                    let (Some(lo), Some(hi)) = (bound(1, *min, f32::NEG_INFINITY), bound(2, *max, f32::INFINITY)) else { continue };
                    Activation::Clip { min: lo, max: hi }
                }
                _ => continue,
            };
            match &mut g.g[p].op {
                Op::Conv { activation, .. } | Op::Gemm { activation, .. } => *activation = Some(act),
                _ => unreachable!(),
            }
            let out = g.g[c].outputs[0].clone();
            g.g[p].outputs[0].name = out.name;
            g.replace_uses((c, 0), (p, 0));
            g.g.remove_node(c);
            changed = true;
        }
        Ok(changed)
    }
}

/// `Mul(x, Sigmoid(x))` (either operand order; SiLU, as exported by PyTorch for EfficientNet,
/// YOLO and the like) becomes one `Swish` op: one pass over the tensor instead of two, and no
/// intermediate.
pub struct FuseSwish;

impl Pass for FuseSwish {
    fn name(&self) -> &'static str {
        "fuse-swish"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        let sigmoids: Vec<_> = g.g.node_indices().filter(|&n| matches!(g.g[n].op, Op::Unary(UnaryOp::Sigmoid))).collect();
        for sg in sigmoids {
            let Some(x) = g.source(sg, 0) else { continue };
            let Some((mul, slot)) = g.sole_use(sg, 0) else { continue };
            if !matches!(g.g[mul].op, Op::Binary(crate::graph::BinaryOp::Mul)) {
                continue;
            }
            // The other operand must be the Sigmoid's own input.
            if g.source(mul, 1 - slot) != Some(x) {
                continue;
            }
            become_unary(g, mul, x, UnaryOp::Swish(1.0));
            g.g.remove_node(sg);
            changed = true;
        }
        Ok(changed)
    }
}

/// `0.5 * x * (1 + erf(x / sqrt(2)))` as exported from PyTorch (Div or Mul by 1/sqrt(2), Erf,
/// Add 1, then Mul by x and by 0.5 in either order) becomes one Gelu: one pass over the tensor
/// instead of five, and one GPU launch. Only where every intermediate has that single use.
pub struct FuseGelu;

impl FuseGelu {
    /// Whether input `slot` of `n` is a constant scalar within 1e-4 (relative) of `want`.
    fn scalar_is(g: &Graph, n: NodeIndex, slot: usize, want: f64) -> bool {
        g.input_const(n, slot).is_some_and(|t| t.numel() == 1 && t.dtype().is_float() && (t.to_f64_vec()[0] - want).abs() <= 1e-4 * want.abs())
    }

    fn binary(g: &Graph, n: NodeIndex, op: crate::graph::BinaryOp) -> bool {
        matches!(g.g[n].op, Op::Binary(b) if b == op)
    }

    /// The GELU ending at the Erf node `erf`: (x, the nodes it replaces, the node whose output is
    /// the GELU's).
    fn match_at(g: &Graph, erf: NodeIndex) -> Option<((NodeIndex, usize), Vec<NodeIndex>, NodeIndex)> {
        use crate::graph::BinaryOp::{Add, Div, Mul};
        let scaled = g.source(erf, 0)?;
        let d = scaled.0;
        let by_root2 = (Self::binary(g, d, Div) && Self::scalar_is(g, d, 1, std::f64::consts::SQRT_2)) || (Self::binary(g, d, Mul) && Self::scalar_is(g, d, 1, std::f64::consts::FRAC_1_SQRT_2));
        if !by_root2 || g.sole_use(d, 0)?.0 != erf {
            return None;
        }
        let x = g.source(d, 0)?;
        let (add, slot) = g.sole_use(erf, 0)?;
        if !Self::binary(g, add, Add) || !Self::scalar_is(g, add, 1 - slot, 1.0) {
            return None;
        }
        let (m1, slot) = g.sole_use(add, 0)?;
        if !Self::binary(g, m1, Mul) {
            return None;
        }
        let other = g.source(m1, 1 - slot)?;
        if other == x {
            // x * (1 + erf) then * 0.5
            let (m2, slot) = g.sole_use(m1, 0)?;
            (Self::binary(g, m2, Mul) && Self::scalar_is(g, m2, 1 - slot, 0.5)).then(|| (x, vec![d, erf, add, m1], m2))
        } else {
            // (x * 0.5) * (1 + erf)
            let h = other.0;
            let x_slot = (0..2).find(|&i| g.source(h, i) == Some(x))?;
            let ok = Self::binary(g, h, Mul) && Self::scalar_is(g, h, 1 - x_slot, 0.5) && g.sole_use(h, 0)?.0 == m1;
            ok.then(|| (x, vec![d, erf, add, h], m1))
        }
    }
}

impl Pass for FuseGelu {
    fn name(&self) -> &'static str {
        "fuse-gelu"
    }
    fn run(&self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        let erfs: Vec<_> = g.g.node_indices().filter(|&n| matches!(g.g[n].op, Op::Unary(UnaryOp::Erf))).collect();
        for erf in erfs {
            let Some((x, gone, out)) = Self::match_at(g, erf) else { continue };
            become_unary(g, out, x, UnaryOp::Gelu { tanh: false });
            for n in gone {
                g.g.remove_node(n);
            }
            changed = true;
        }
        Ok(changed)
    }
}
