//! Shape and dtype inference with symbolic dims bound, plus constant propagation: any node whose
//! inputs are all known at plan time gets its value computed (through an injected evaluator, so
//! this module needs no backend). That is what turns Shape->Gather->Concat->Reshape chains into
//! constants once the batch is bound.

use super::{Dim, Graph, Node, Op, PoolKind, Bindings};
pub use super::geometry::*;
use crate::error::{Error, Result};
use crate::tensor::{broadcast_shapes, checked_numel, norm_axis, DType, Tensor};
use std::sync::Arc;

/// Computes a node's outputs from host inputs (absent optional inputs are `None`).
pub type Evaluator = dyn Fn(&Node, &[Option<&Tensor>]) -> Result<Vec<Tensor>> + Sync;

/// Values above this many elements are not propagated (folding big compute at plan time is
/// rarely worth the memory).
const MAX_FOLD_ELEMENTS: usize = 1 << 22;

/// A node input as seen by a shape rule.
pub struct In<'a> {
    pub dtype: DType,
    pub shape: &'a [usize],
    pub value: Option<&'a Tensor>,
}

/// Output dtypes and shapes of `node` for concrete inputs (what a kernel needs to size its result).
pub fn output_types(node: &Node, inputs: &[Option<&Tensor>]) -> Result<Vec<(DType, Vec<usize>)>> {
    let ins: Vec<Option<In>> = inputs.iter().map(|t| t.map(|t| In { dtype: t.dtype(), shape: t.shape(), value: Some(t) })).collect();
    let outs = rule(node, &ins)?;
    // Shapes computed from run-time values get the same size limit as planned ones.
    for (_, shape) in &outs {
        checked_numel(shape)?;
    }
    Ok(outs)
}

pub fn infer(g: &mut Graph, bindings: &Bindings, eval: Option<&Evaluator>) -> Result<()> {
    for inp in g.inputs.clone() {
        let shape = inp
            .shape
            .iter()
            .map(|d| match d {
                Dim::Known(v) => Ok(*v),
                Dim::Sym(s) => bindings.get(s).copied().ok_or_else(|| {
                    Error::Input(format!("dim '{s}' of input '{}' is not bound (bind it, e.g. --batch / --seq / --dim {s}=N)", inp.name))
                }),
            })
            .collect::<Result<Vec<_>>>()?;
        checked_numel(&shape).map_err(|e| Error::Input(format!("input '{}': {e}", inp.name)))?;
        let v = &mut g.g[inp.node].outputs[0];
        v.dtype = Some(inp.dtype);
        v.shape = Some(shape);
    }
    for n in g.toposort()? {
        if matches!(g.g[n].op, Op::Input | Op::Constant { .. }) {
            continue;
        }
        let node = &g.g[n];
        let srcs = g.sources(n);
        let mut ins: Vec<Option<In>> = Vec::with_capacity(srcs.len());
        let mut unknown = false;
        for s in &srcs {
            ins.push(match s {
                None => None,
                Some((p, slot)) => {
                    let v = &g.g[*p].outputs[*slot];
                    match (&v.dtype, &v.shape) {
                        (Some(dtype), Some(shape)) => Some(In { dtype: *dtype, shape, value: v.value.as_deref() }),
                        // Downstream of a run-time shape: this node's shapes are run-time too.
                        _ => {
                            unknown = true;
                            None
                        }
                    }
                }
            });
        }
        let ctx = |msg: String| Error::node(&node.name, &node.op.name(), msg);
        let checked = if unknown { Err(Error::DataDependent(String::new())) } else { super::validate::check(node, &ins) };
        let outs = match checked.and_then(|()| rule(node, &ins)) {
            Ok(o) => o,
            Err(Error::DataDependent(_)) => {
                for v in g.g[n].outputs.iter_mut() {
                    (v.dtype, v.shape, v.value) = (None, None, None);
                }
                continue;
            }
            Err(Error::Tensor(m) | Error::Input(m)) => return Err(ctx(m)),
            Err(e) => return Err(e.in_node(&node.name, &node.op.name())),
        };
        if outs.len() < node.outputs.len() && node.outputs[outs.len()..].iter().any(|v| !v.name.is_empty()) {
            return Err(ctx(format!("only the first {} output(s) are supported, the model uses {}", outs.len(), node.outputs.len())));
        }
        for (dt, shape) in &outs {
            checked_numel(shape).map_err(|e| ctx(format!("output {e} (dtype {dt})")))?;
        }
        let mut values: Vec<Option<Arc<Tensor>>> = vec![None; outs.len()];
        let all_const = ins.iter().all(|i| i.as_ref().is_none_or(|i| i.value.is_some()));
        let small = outs.iter().all(|(_, s)| s.iter().product::<usize>() <= MAX_FOLD_ELEMENTS);
        if let Op::Shape { .. } | Op::Size = node.op {
            let full = ins[0].as_ref().unwrap().shape;
            let t = shape_value(&node.op, full)?;
            values[0] = Some(Arc::new(t));
        } else if let (Some(eval), true, true) = (eval, all_const, small) {
            let tensors: Vec<Option<&Tensor>> = ins.iter().map(|i| i.as_ref().map(|i| i.value.unwrap())).collect();
            let res = eval(node, &tensors).map_err(|e| e.in_node(&node.name, &node.op.name()))?;
            for (i, t) in res.into_iter().enumerate().take(outs.len()) {
                if t.shape() != outs[i].1.as_slice() || t.dtype() != outs[i].0 {
                    return Err(ctx(format!(
                        "evaluated output {i} is {} {:?}, inference said {} {:?}",
                        t.dtype(), t.shape(), outs[i].0, outs[i].1
                    )));
                }
                values[i] = Some(Arc::new(t));
            }
        }
        let node = &mut g.g[n];
        for (i, ((dt, shape), val)) in outs.into_iter().zip(values).enumerate() {
            if let Some(v) = node.outputs.get_mut(i) {
                v.dtype = Some(dt);
                v.shape = Some(shape);
                v.value = val;
            }
        }
    }
    Ok(())
}

pub fn shape_value(op: &Op, full: &[usize]) -> Result<Tensor> {
    match op {
        Op::Size => Ok(Tensor::new(vec![], crate::tensor::Data::I64(vec![full.iter().product::<usize>() as i64]))?),
        Op::Shape { start, end } => {
            let (s, e) = shape_range(*start, *end, full.len());
            let v: Vec<i64> = full[s..e].iter().map(|&d| d as i64).collect();
            Tensor::from_i64(&[v.len()], v)
        }
        _ => unreachable!("shape_value on {}", op.name()),
    }
}

fn shape_range(start: i64, end: Option<i64>, rank: usize) -> (usize, usize) {
    let r = rank as i64;
    let clamp = |x: i64| (if x < 0 { x + r } else { x }).clamp(0, r) as usize;
    let s = clamp(start);
    let e = end.map(clamp).unwrap_or(rank);
    (s, e.max(s))
}

type Out = Vec<(DType, Vec<usize>)>;


fn need<'a>(ins: &'a [Option<In<'a>>], i: usize) -> Result<&'a In<'a>> {
    ins.get(i).and_then(|x| x.as_ref()).ok_or_else(|| Error::Tensor(format!("missing required input {i}")))
}

/// The value of an input that must be known at plan time (shapes, axes, pads).
fn const_ints(ins: &[Option<In>], i: usize, what: &str) -> Result<Option<Vec<i64>>> {
    match ins.get(i).and_then(|x| x.as_ref()) {
        None => Ok(None),
        Some(x) => match x.value {
            Some(v) => Ok(Some(v.to_i64_vec()?)),
            None => Err(Error::DataDependent(format!("input {i} ({what}) is only known at run time"))),
        },
    }
}

fn bcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    broadcast_shapes(a, b).ok_or_else(|| Error::Tensor(format!("shapes {a:?} and {b:?} do not broadcast")))
}

fn rule(node: &Node, ins: &[Option<In>]) -> Result<Out> {
    use Op::*;
    let x = || need(ins, 0);
    Ok(match &node.op {
        Input | Constant { .. } => unreachable!(),
        Identity | Clip { .. } | Softmax { .. } => vec![(x()?.dtype, x()?.shape.to_vec())],
        Unary(u) => {
            let dt = if matches!(u, super::UnaryOp::Not | super::UnaryOp::IsNaN | super::UnaryOp::IsInf { .. }) { DType::Bool } else { x()?.dtype };
            vec![(dt, x()?.shape.to_vec())]
        }
        Binary(b) => {
            let (a, c) = (need(ins, 0)?, need(ins, 1)?);
            if a.dtype != c.dtype && !matches!(b, super::BinaryOp::Pow) {
                return Err(Error::Tensor(format!("input dtypes differ: {} vs {}", a.dtype, c.dtype)));
            }
            let dt = if b.is_comparison() || b.is_logical() { DType::Bool } else { a.dtype };
            vec![(dt, bcast(a.shape, c.shape)?)]
        }
        Variadic { .. } => {
            let mut s = x()?.shape.to_vec();
            for i in ins.iter().flatten().skip(1) {
                s = bcast(&s, i.shape)?;
            }
            vec![(x()?.dtype, s)]
        }
        Conv { window, group, .. } => {
            let (xi, w) = (x()?, need(ins, 1)?);
            if xi.shape.len() < 3 || w.shape.len() != xi.shape.len() {
                return Err(Error::Tensor(format!("Conv needs X [N,C,...] and W of equal rank, got X {:?} W {:?}", xi.shape, w.shape)));
            }
            let c = xi.shape[1];
            if *group == 0 || c % group != 0 || w.shape[1] * group != c || w.shape[0] % group != 0 {
                return Err(Error::Tensor(format!("channels do not match: X {:?}, W {:?}, group {group}", xi.shape, w.shape)));
            }
            if let Some(b) = ins.get(2).and_then(|b| b.as_ref()) {
                if b.shape != [w.shape[0]] {
                    return Err(Error::Tensor(format!("bias shape {:?} != [{}]", b.shape, w.shape[0])));
                }
            }
            let k = &w.shape[2..];
            let spatial = window_output(window, &xi.shape[2..], k, false)?;
            let mut s = vec![xi.shape[0], w.shape[0]];
            s.extend(spatial);
            vec![(xi.dtype, s)]
        }
        QLinearConv { window, group } | ConvInteger { window, group } => {
            // The Conv rule on (x, w), typed as the output zero point (int32 for ConvInteger).
            let conv = Node { name: node.name.clone(), op: Conv { window: window.clone(), group: *group, activation: None }, num_inputs: 2, outputs: vec![] };
            let integer = matches!(node.op, ConvInteger { .. });
            let (xq, wq) = (x()?, need(ins, if integer { 1 } else { 3 })?);
            let out_type = if integer { DType::I32 } else { need(ins, 7)?.dtype };
            let xf = In { dtype: DType::F32, shape: xq.shape, value: None };
            let wf = In { dtype: DType::F32, shape: wq.shape, value: None };
            let shape = rule(&conv, &[Some(xf), Some(wf)])?.remove(0).1;
            vec![(out_type, shape)]
        }
        Pool { window, kind } => {
            let xi = x()?;
            if xi.shape.len() < 3 {
                return Err(Error::Tensor(format!("pooling needs [N,C,...], got {:?}", xi.shape)));
            }
            let spatial = window_output(window, &xi.shape[2..], &window.kernel_shape, window.ceil_mode)?;
            let mut s = xi.shape[..2].to_vec();
            s.extend(spatial);
            let mut v = vec![(xi.dtype, s.clone())];
            if matches!(kind, PoolKind::Max) && node.outputs.len() > 1 {
                v.push((DType::I64, s));
            }
            v
        }
        GlobalPool { .. } => {
            let xi = x()?;
            if xi.shape.len() < 3 {
                return Err(Error::Tensor(format!("global pooling needs [N,C,...], got {:?}", xi.shape)));
            }
            let mut s = xi.shape[..2].to_vec();
            s.extend(std::iter::repeat_n(1, xi.shape.len() - 2));
            vec![(xi.dtype, s)]
        }
        BatchNorm { .. } => {
            let xi = x()?;
            let c = *xi.shape.get(1).ok_or_else(|| Error::Tensor("BatchNormalization needs rank >= 2".into()))?;
            for i in 1..5 {
                if need(ins, i)?.shape.iter().product::<usize>() != c {
                    return Err(Error::Tensor(format!("input {i} shape {:?} != [{c}]", need(ins, i)?.shape)));
                }
            }
            vec![(xi.dtype, xi.shape.to_vec())]
        }
        Gemm { trans_a, trans_b, .. } => {
            let (a, b) = (need(ins, 0)?, need(ins, 1)?);
            if a.shape.len() != 2 || b.shape.len() != 2 {
                return Err(Error::Tensor(format!("Gemm needs 2-D inputs, got {:?} and {:?}", a.shape, b.shape)));
            }
            let (m, ka) = if *trans_a { (a.shape[1], a.shape[0]) } else { (a.shape[0], a.shape[1]) };
            let (kb, n) = if *trans_b { (b.shape[1], b.shape[0]) } else { (b.shape[0], b.shape[1]) };
            if ka != kb {
                return Err(Error::Tensor(format!("inner dims differ: A {:?} B {:?} (transA {trans_a}, transB {trans_b})", a.shape, b.shape)));
            }
            if let Some(c) = ins.get(2).and_then(|c| c.as_ref()) {
                if broadcast_shapes(c.shape, &[m, n]).as_deref() != Some(&[m, n][..]) {
                    return Err(Error::Tensor(format!("C {:?} does not broadcast to [{m}, {n}]", c.shape)));
                }
            }
            vec![(a.dtype, vec![m, n])]
        }
        MatMul => {
            let (a, b) = (need(ins, 0)?, need(ins, 1)?);
            vec![(a.dtype, matmul_shape(a.shape, b.shape)?)]
        }
        MatMulInteger => {
            let (a, b) = (need(ins, 0)?, need(ins, 1)?);
            vec![(DType::I32, matmul_shape(a.shape, b.shape)?)]
        }
        QLinearMatMul => {
            let (a, b, yzp) = (need(ins, 0)?, need(ins, 3)?, need(ins, 7)?);
            vec![(yzp.dtype, matmul_shape(a.shape, b.shape)?)]
        }
        DynamicQuantizeLinear => vec![(DType::U8, x()?.shape.to_vec()), (DType::F32, vec![]), (DType::U8, vec![])],
        Flatten { axis } => {
            let xi = x()?;
            let r = xi.shape.len() as i64;
            let ax = if *axis < 0 { axis + r } else { *axis };
            if ax < 0 || ax > r {
                return Err(Error::Tensor(format!("axis {axis} out of range for rank {r}")));
            }
            let ax = ax as usize;
            vec![(xi.dtype, vec![xi.shape[..ax].iter().product(), xi.shape[ax..].iter().product()])]
        }
        Reshape { allowzero } => {
            let xi = x()?;
            let spec = const_ints(ins, 1, "shape")?.ok_or_else(|| Error::Tensor("missing shape input".into()))?;
            vec![(xi.dtype, reshape_shape(xi.shape, &spec, *allowzero)?)]
        }
        Transpose { perm } => {
            let xi = x()?;
            let r = xi.shape.len();
            let p = perm.clone().unwrap_or_else(|| (0..r).rev().collect());
            let mut seen = vec![false; r];
            if p.len() != r || p.iter().any(|&i| i >= r || std::mem::replace(&mut seen[i], true)) {
                return Err(Error::Tensor(format!("perm {p:?} is not a permutation of rank {r}")));
            }
            vec![(xi.dtype, p.iter().map(|&i| xi.shape[i]).collect())]
        }
        Concat { axis } => {
            let first = x()?;
            let ax = norm_axis(*axis, first.shape.len())?;
            let mut s = first.shape.to_vec();
            s[ax] = 0;
            for i in ins.iter().flatten() {
                let ok = i.shape.len() == s.len() && i.dtype == first.dtype && (0..s.len()).all(|d| d == ax || i.shape[d] == s[d]);
                if !ok {
                    return Err(Error::Tensor(format!("input {} {:?} does not match {} {:?} outside axis {ax}", i.dtype, i.shape, first.dtype, first.shape)));
                }
                s[ax] += i.shape[ax];
            }
            vec![(first.dtype, s)]
        }
        Squeeze { axes } => {
            let xi = x()?;
            let axes = match axes { Some(a) => Some(a.clone()), None => const_ints(ins, 1, "axes")? };
            let r = xi.shape.len();
            let drop: Vec<usize> = match axes {
                Some(a) => a.iter().map(|&a| norm_axis(a, r)).collect::<Result<_>>()?,
                None => (0..r).filter(|&d| xi.shape[d] == 1).collect(),
            };
            if let Some(&d) = drop.iter().find(|&&d| xi.shape[d] != 1) {
                return Err(Error::Tensor(format!("cannot squeeze axis {d} of shape {:?}", xi.shape)));
            }
            vec![(xi.dtype, (0..r).filter(|d| !drop.contains(d)).map(|d| xi.shape[d]).collect())]
        }
        Unsqueeze { axes } => {
            let xi = x()?;
            let axes = match axes { Some(a) => a.clone(), None => const_ints(ins, 1, "axes")?.ok_or_else(|| Error::Tensor("missing axes".into()))? };
            let r = xi.shape.len() + axes.len();
            let mut add: Vec<usize> = axes.iter().map(|&a| norm_axis(a, r)).collect::<Result<_>>()?;
            add.sort_unstable();
            add.dedup();
            if add.len() != axes.len() {
                return Err(Error::Tensor(format!("repeated axes {axes:?}")));
            }
            let mut it = xi.shape.iter();
            vec![(xi.dtype, (0..r).map(|d| if add.contains(&d) { 1 } else { *it.next().unwrap() }).collect())]
        }
        Slice => {
            let xi = x()?;
            let params = slice_params(xi.shape, ins)?;
            vec![(xi.dtype, params.iter().map(|p| p.len).collect())]
        }
        Cast { to } => vec![(*to, x()?.shape.to_vec())],
        AffineGrid { .. } => {
            let theta = x()?;
            let size = const_ints(ins, 1, "size")?.ok_or_else(|| Error::DataDependent("AffineGrid size is only known at run time".into()))?;
            let r = size.len().saturating_sub(2);
            if !(r == 2 || r == 3) || theta.shape != [size[0].max(0) as usize, r, r + 1] || size.iter().any(|&d| d < 0) {
                return Err(Error::Tensor(format!("AffineGrid needs theta [N, r, r+1] and size [N, C, spatial (r = 2 or 3)], got {:?} and {size:?}", theta.shape)));
            }
            let mut out: Vec<usize> = std::iter::once(size[0] as usize).chain(size[2..].iter().map(|&d| d as usize)).collect();
            out.push(r);
            vec![(theta.dtype, out)]
        }
        BitCast { to } => {
            let xi = x()?;
            if xi.dtype.size() != to.size() {
                return Err(Error::Unsupported { node: node.name.clone(), op: "BitCast".into(), what: format!("{} to {to} (different widths)", xi.dtype) });
            }
            vec![(*to, xi.shape.to_vec())]
        }
        SignalWindow { dtype, .. } => {
            let n = const_ints(ins, 0, "size")?.and_then(|v| v.first().copied()).ok_or_else(|| Error::Tensor("size must be a single value".into()))?;
            let n = usize::try_from(n).map_err(|_| Error::Tensor(format!("window size {n} is negative")))?;
            vec![(*dtype, vec![n])]
        }
        Shape { start, end } => {
            let (s, e) = shape_range(*start, *end, x()?.shape.len());
            vec![(DType::I64, vec![e - s])]
        }
        Size => vec![(DType::I64, vec![])],
        Gather { axis } => {
            let (d, idx) = (x()?, need(ins, 1)?);
            let ax = norm_axis(*axis, d.shape.len())?;
            let mut s = d.shape[..ax].to_vec();
            s.extend_from_slice(idx.shape);
            s.extend_from_slice(&d.shape[ax + 1..]);
            vec![(d.dtype, s)]
        }
        GatherElements { axis } => {
            let (d, idx) = (x()?, need(ins, 1)?);
            norm_axis(*axis, d.shape.len())?;
            if idx.shape.len() != d.shape.len() {
                return Err(Error::Tensor(format!("indices rank {} != data rank {}", idx.shape.len(), d.shape.len())));
            }
            vec![(d.dtype, idx.shape.to_vec())]
        }
        Reduce { axes, keepdims, noop_with_empty_axes, .. } => {
            let xi = x()?;
            let axes = match axes { Some(a) => Some(a.clone()), None => const_ints(ins, 1, "axes")? };
            let red = reduce_axes(xi.shape.len(), axes.as_deref(), *noop_with_empty_axes)?;
            vec![(xi.dtype, reduced_shape(xi.shape, &red, *keepdims))]
        }
        ArgExtreme { axis, keepdims, .. } => {
            let xi = x()?;
            let ax = norm_axis(*axis, xi.shape.len())?;
            vec![(DType::I64, reduced_shape(xi.shape, &[ax], *keepdims))]
        }
        ConstantOfShape { value } => {
            let s = const_ints(ins, 0, "shape")?.unwrap_or_default();
            if s.iter().any(|&d| d < 0) {
                return Err(Error::Tensor(format!("negative dim in shape {s:?}")));
            }
            vec![(value.dtype(), s.iter().map(|&d| d as usize).collect())]
        }
        Expand => {
            let xi = x()?;
            let s = const_ints(ins, 1, "shape")?.ok_or_else(|| Error::Tensor("missing shape".into()))?;
            if s.iter().any(|&d| d < 0) {
                return Err(Error::Tensor(format!("negative dim in shape {s:?}")));
            }
            let s: Vec<usize> = s.iter().map(|&d| d as usize).collect();
            vec![(xi.dtype, bcast(xi.shape, &s)?)]
        }
        Range => {
            let dt = x()?.dtype;
            let v: Vec<f64> = (0..3)
                .map(|i| match need(ins, i)?.value {
                    Some(t) => Ok(t.to_f64_vec().first().copied().unwrap_or(0.0)),
                    None => Err(Error::DataDependent("Range bounds are only known at run time".into())),
                })
                .collect::<Result<_>>()?;
            if v[2] == 0.0 {
                return Err(Error::Tensor("Range delta is 0".into()));
            }
            let n = ((v[1] - v[0]) / v[2]).ceil().max(0.0);
            vec![(dt, vec![n as usize])]
        }
        Where => {
            let (c, a, b) = (need(ins, 0)?, need(ins, 1)?, need(ins, 2)?);
            vec![(a.dtype, bcast(&bcast(c.shape, a.shape)?, b.shape)?)]
        }
        CastLike => vec![(need(ins, 1)?.dtype, x()?.shape.to_vec())],
        Shrink { .. } => vec![(x()?.dtype, x()?.shape.to_vec())],
        Prelu => {
            let (a, slope) = (x()?, need(ins, 1)?);
            vec![(a.dtype, bcast(a.shape, slope.shape)?)]
        }
        Loss { softmax, reduction, .. } => {
            let (xi, t) = (x()?, need(ins, 1)?);
            if xi.shape.len() < 2 || t.shape.len() != xi.shape.len() - 1 || t.shape[0] != xi.shape[0] || t.shape[1..] != xi.shape[2..] {
                return Err(Error::Tensor(format!("input {:?} and target {:?} do not match ([N, C, d...] vs [N, d...])", xi.shape, t.shape)));
            }
            let loss = if *reduction == super::LossReduction::None { t.shape.to_vec() } else { vec![] };
            let mut v = vec![(xi.dtype, loss)];
            if *softmax {
                v.push((xi.dtype, xi.shape.to_vec()));
            }
            v
        }
        Attention(at) => attention_shapes(at, ins)?,
        Recurrent(r) => {
            let xi = x()?;
            if xi.shape.len() != 3 {
                return Err(Error::Tensor(format!("X must be rank 3, got {:?}", xi.shape)));
            }
            let (seq, batch) = if r.batch_first { (xi.shape[1], xi.shape[0]) } else { (xi.shape[0], xi.shape[1]) };
            let (d, h) = (r.directions, r.hidden);
            let w = ins.get(1).and_then(|w| w.as_ref()).ok_or_else(|| Error::Tensor("W is required".into()))?;
            if w.shape != [d, r.kind.gates() * h, xi.shape[2]] {
                return Err(Error::Tensor(format!("W has shape {:?}, expected {:?}", w.shape, [d, r.kind.gates() * h, xi.shape[2]])));
            }
            let y = if r.batch_first { vec![batch, seq, d, h] } else { vec![seq, d, batch, h] };
            let state = if r.batch_first { vec![batch, d, h] } else { vec![d, batch, h] };
            vec![(xi.dtype, y), (xi.dtype, state.clone()), (xi.dtype, state)]
        }
        Rotary { .. } => vec![(x()?.dtype, x()?.shape.to_vec())],
        Unique { .. } => return Err(Error::DataDependent("Unique's size depends on values".into())),
        Einsum { equation } => {
            let shapes: Vec<&[usize]> = ins.iter().flatten().map(|i| i.shape).collect();
            let (_, out, dims) = crate::graph::einsum_labels::einsum_plan(equation, &shapes)?;
            vec![(x()?.dtype, out.iter().map(|c| dims[c]).collect())]
        }
        CenterCropPad { axes } => {
            let xi = x()?;
            let target = const_ints(ins, 1, "shape")?.ok_or_else(|| Error::Tensor("missing shape".into()))?;
            let ax = pad_axes(xi.shape.len(), axes.clone())?;
            if ax.len() != target.len() {
                return Err(Error::Tensor(format!("shape {target:?} does not match axes {ax:?}")));
            }
            let mut s = xi.shape.to_vec();
            for (&a, &t) in ax.iter().zip(&target) {
                s[a] = t.max(0) as usize;
            }
            vec![(xi.dtype, s)]
        }
        Resize(attrs) => {
            let xi = x()?;
            let scales = match ins.get(attrs.scales_input).and_then(|s| s.as_ref()) {
                Some(s) => Some(s.value.ok_or_else(|| Error::DataDependent("scales".into()))?.to_f64_vec()),
                None => None,
            };
            let sizes = if attrs.scales_input == 2 { const_ints(ins, 3, "sizes")? } else { None };
            let (out, _) = resize_plan(attrs, xi.shape, scales.as_deref(), sizes.as_deref())?;
            vec![(xi.dtype, out)]
        }
        Trilu { .. } | RmsNorm { .. } | Cumulative { .. } | Hardmax { .. } | LpNorm { .. } | ScatterNd { .. } | ScatterElements { .. }
        | InstanceNorm { .. } | GroupNorm { .. } | Lrn { .. } | ReverseSequence { .. } => vec![(x()?.dtype, x()?.shape.to_vec())],
        Split { axis, split } => {
            let xi = x()?;
            let ax = norm_axis(*axis, xi.shape.len())?;
            let sizes = split_sizes(xi.shape[ax], node.outputs.len(), split.clone().map(Some).map_or_else(|| const_ints(ins, 1, "split"), Ok)?)?;
            sizes.into_iter().map(|d| { let mut s = xi.shape.to_vec(); s[ax] = d; (xi.dtype, s) }).collect()
        }
        Pad { .. } => {
            let xi = x()?;
            let pads = const_ints(ins, 1, "pads")?.ok_or_else(|| Error::Tensor("missing pads".into()))?;
            let axes = pad_axes(xi.shape.len(), const_ints(ins, 3, "axes")?)?;
            if pads.len() != 2 * axes.len() {
                return Err(Error::Tensor(format!("pads {pads:?} needs {} entries", 2 * axes.len())));
            }
            let mut s: Vec<i64> = xi.shape.iter().map(|&d| d as i64).collect();
            for (i, &a) in axes.iter().enumerate() {
                s[a] += pads[i] + pads[i + axes.len()];
            }
            if s.iter().any(|&d| d < 0) {
                return Err(Error::Tensor(format!("pads {pads:?} make shape {s:?} negative")));
            }
            vec![(xi.dtype, s.into_iter().map(|d| d as usize).collect())]
        }
        TopK { axis, .. } => {
            let xi = x()?;
            let ax = norm_axis(*axis, xi.shape.len())?;
            let k = const_ints(ins, 1, "K")?.and_then(|v| v.first().copied()).ok_or_else(|| Error::Tensor("missing K".into()))?;
            if k < 0 || k as usize > xi.shape[ax] {
                return Err(Error::Tensor(format!("K {k} out of range for axis of size {}", xi.shape[ax])));
            }
            let mut s = xi.shape.to_vec();
            s[ax] = k as usize;
            vec![(xi.dtype, s.clone()), (DType::I64, s)]
        }
        OneHot { axis } => {
            let idx = x()?;
            let depth = match need(ins, 1)?.value {
                Some(t) => t.to_f64_vec().first().copied().unwrap_or(0.0) as i64,
                None => return Err(Error::DataDependent("depth".into())),
            };
            if depth < 0 {
                return Err(Error::Tensor(format!("depth {depth} < 0")));
            }
            let r = idx.shape.len() + 1;
            let ax = norm_axis(*axis, r)?;
            let mut s = idx.shape.to_vec();
            s.insert(ax, depth as usize);
            vec![(need(ins, 2)?.dtype, s)]
        }
        DepthToSpace { blocksize: b, .. } => {
            let xi = x()?;
            if xi.shape.len() != 4 || xi.shape[1] % (b * b) != 0 {
                return Err(Error::Tensor(format!("DepthToSpace needs [N, C, H, W] with C divisible by {}, got {:?}", b * b, xi.shape)));
            }
            vec![(xi.dtype, vec![xi.shape[0], xi.shape[1] / (b * b), xi.shape[2] * b, xi.shape[3] * b])]
        }
        SpaceToDepth { blocksize: b } => {
            let xi = x()?;
            if xi.shape.len() != 4 || xi.shape[2] % b != 0 || xi.shape[3] % b != 0 {
                return Err(Error::Tensor(format!("SpaceToDepth needs [N, C, H, W] with H, W divisible by {b}, got {:?}", xi.shape)));
            }
            vec![(xi.dtype, vec![xi.shape[0], xi.shape[1] * b * b, xi.shape[2] / b, xi.shape[3] / b])]
        }
        RoiAlign(at) => {
            let (xi, rois, idx) = (x()?, need(ins, 1)?, need(ins, 2)?);
            if xi.shape.len() != 4 || rois.shape.len() != 2 || rois.shape[1] != 4 || idx.shape != [rois.shape[0]] {
                return Err(Error::Tensor(format!("RoiAlign needs X [N,C,H,W], rois [R,4], batch_indices [R]; got {:?}, {:?}, {:?}", xi.shape, rois.shape, idx.shape)));
            }
            vec![(xi.dtype, vec![rois.shape[0], xi.shape[1], at.output_height, at.output_width])]
        }
        GridSample(_) => {
            let (xi, gi) = (x()?, need(ins, 1)?);
            let r = xi.shape.len().saturating_sub(2);
            if r == 0 || gi.shape.len() != r + 2 || gi.shape[0] != xi.shape[0] || gi.shape[r + 1] != r {
                return Err(Error::Tensor(format!("grid {:?} does not fit X {:?} (expected [N, out..., {r}])", gi.shape, xi.shape)));
            }
            let mut out = vec![xi.shape[0], xi.shape[1]];
            out.extend(&gi.shape[1..=r]);
            vec![(xi.dtype, out)]
        }
        NonMaxSuppression { .. } => {
            let (b, sc) = (x()?, need(ins, 1)?);
            if b.shape.len() != 3 || b.shape[2] != 4 || sc.shape.len() != 3 || sc.shape[0] != b.shape[0] || sc.shape[2] != b.shape[1] {
                return Err(Error::Tensor(format!("boxes {:?} and scores {:?} must be [B, N, 4] and [B, C, N]", b.shape, sc.shape)));
            }
            return Err(Error::DataDependent("the number of boxes kept depends on values".into()));
        }
        Compress { .. } | NonZero => {
            if ins.iter().flatten().any(|i| i.value.is_none()) {
                return Err(Error::DataDependent("output size depends on values".into()));
            }
            return Err(Error::DataDependent("computed when evaluated".into()));
        }
        GatherNd { batch_dims } => {
            let (d, idx) = (x()?, need(ins, 1)?);
            let m = *idx.shape.last().ok_or_else(|| Error::Tensor("indices must have rank >= 1".into()))?;
            if batch_dims + m > d.shape.len() {
                return Err(Error::Tensor(format!("indices {:?} too deep for data {:?}", idx.shape, d.shape)));
            }
            let mut s = idx.shape[..idx.shape.len() - 1].to_vec();
            s.extend_from_slice(&d.shape[batch_dims + m..]);
            vec![(d.dtype, s)]
        }
        EyeLike { dtype, .. } => {
            let xi = x()?;
            if xi.shape.len() != 2 {
                return Err(Error::Tensor(format!("EyeLike needs a 2-D input, got {:?}", xi.shape)));
            }
            vec![(dtype.unwrap_or(xi.dtype), xi.shape.to_vec())]
        }
        Tile => {
            let xi = x()?;
            let reps = const_ints(ins, 1, "repeats")?.ok_or_else(|| Error::Tensor("missing repeats".into()))?;
            if reps.len() != xi.shape.len() || reps.iter().any(|&r| r < 0) {
                return Err(Error::Tensor(format!("repeats {reps:?} do not fit shape {:?}", xi.shape)));
            }
            vec![(xi.dtype, xi.shape.iter().zip(&reps).map(|(&d, &r)| d * r as usize).collect())]
        }
        QuantizeLinear { to, .. } => {
            let dt = to.or_else(|| ins.get(2).and_then(|z| z.as_ref()).map(|z| z.dtype)).unwrap_or(DType::U8);
            vec![(dt, x()?.shape.to_vec())]
        }
        DequantizeLinear { .. } => vec![(need(ins, 1)?.dtype, x()?.shape.to_vec())],
        ConvTranspose { window, group, output_padding, output_shape } => {
            let (xi, w) = (x()?, need(ins, 1)?);
            if xi.shape.len() < 3 || w.shape.len() != xi.shape.len() || w.shape[0] != xi.shape[1] {
                return Err(Error::Tensor(format!("ConvTranspose needs X [N,C,...] and W [C, M/group, ...], got X {:?} W {:?}", xi.shape, w.shape)));
            }
            let nd = xi.shape.len() - 2;
            let mut s = vec![xi.shape[0], w.shape[1] * group];
            if !output_shape.is_empty() {
                s.extend(output_shape.iter().rev().take(nd).rev());
            } else {
                let pads = convtranspose_pads(window, &xi.shape[2..], &w.shape[2..], output_padding, &[])?;
                for i in 0..nd {
                    let (st, d) = (window.strides.get(i).copied().unwrap_or(1), window.dilations.get(i).copied().unwrap_or(1));
                    let full = st * (xi.shape[2 + i] - 1) + output_padding.get(i).copied().unwrap_or(0) + (w.shape[2 + i] - 1) * d + 1;
                    s.push(full.checked_sub(pads[i] + pads[i + nd]).ok_or_else(|| Error::Tensor("pads exceed the output".into()))?);
                }
            }
            vec![(xi.dtype, s)]
        }
        LayerNorm { axis, .. } => {
            let xi = x()?;
            let ax = norm_axis(*axis, xi.shape.len())?;
            let stat: Vec<usize> = (0..xi.shape.len()).map(|d| if d < ax { xi.shape[d] } else { 1 }).collect();
            vec![(xi.dtype, xi.shape.to_vec()), (DType::F32, stat.clone()), (DType::F32, stat)]
        }
    })
}

/// Resolves Slice's starts/ends/axes/steps inputs (which must be constants) against a shape.
fn slice_params(shape: &[usize], ins: &[Option<In>]) -> Result<Vec<SliceAxis>> {
    let starts = const_ints(ins, 1, "starts")?.ok_or_else(|| Error::Tensor("missing starts".into()))?;
    let ends = const_ints(ins, 2, "ends")?.ok_or_else(|| Error::Tensor("missing ends".into()))?;
    let axes = const_ints(ins, 3, "axes")?;
    let steps = const_ints(ins, 4, "steps")?;
    slice_axes(shape, &starts, &ends, axes.as_deref(), steps.as_deref())
}

/// Attention's output shapes: Y, present_key, present_value, qk_matmul_output.
fn attention_shapes(at: &super::AttentionAttrs, ins: &[Option<In>]) -> Result<Vec<(DType, Vec<usize>)>> {
    let (q, k, v) = (need(ins, 0)?, need(ins, 1)?, need(ins, 2)?);
    let past = ins.get(4).and_then(|p| p.as_ref());
    let g = attention_geometry(at, q.shape, k.shape, v.shape, past.map(|p| p.shape))?;
    let y = if q.shape.len() == 3 { vec![g.batch, g.q_seq, g.q_heads * g.v_size] } else { vec![g.batch, g.q_heads, g.q_seq, g.v_size] };
    Ok(vec![
        (q.dtype, y),
        (k.dtype, vec![g.batch, g.kv_heads, g.total_seq, g.head_size]),
        (v.dtype, vec![g.batch, g.kv_heads, g.total_seq, g.v_size]),
        (q.dtype, vec![g.batch, g.q_heads, g.q_seq, g.total_seq]),
    ])
}
