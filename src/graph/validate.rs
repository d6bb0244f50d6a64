//! Input checks that shape inference runs before an op's shape rule: the ONNX spec's
//! constraints on ranks and on how an op's inputs fit each other, in one place for every device,
//! so kernels never see inputs they would index out of bounds. Values known only at run time
//! (indices, lengths, positions) are the kernels' to check.

use super::infer::In;
use super::{Node, Op};
use crate::error::{Error, Result};

fn bad(msg: String) -> Result<()> {
    Err(Error::Tensor(msg))
}

fn input<'a, 'b>(ins: &'a [Option<In<'b>>], i: usize) -> Option<&'a In<'b>> {
    ins.get(i).and_then(|x| x.as_ref())
}

/// A per-channel vector (scale, bias) of length `c`.
fn per_channel(ins: &[Option<In>], i: usize, what: &str, c: usize) -> Result<()> {
    match input(ins, i) {
        Some(v) if v.shape.len() != 1 || v.shape[0] != c => bad(format!("{what} has shape {:?}, expected [{c}] (one per channel)", v.shape)),
        _ => Ok(()),
    }
}

/// Whether `small` broadcasts to `full` in one direction (numpy rules, `small` not growing).
fn broadcasts_to(small: &[usize], full: &[usize]) -> bool {
    small.len() <= full.len() && small.iter().rev().zip(full.iter().rev()).all(|(&s, &f)| s == 1 || s == f)
}

fn min_rank(x: &In, rank: usize, what: &str) -> Result<()> {
    if x.shape.len() < rank {
        return bad(format!("{what} needs an input of rank >= {rank}, got shape {:?}", x.shape));
    }
    Ok(())
}

/// A one-element parameter (an axis, a count, a bound) given as input `i`.
fn scalar(ins: &[Option<In>], i: usize, what: &str) -> Result<()> {
    match input(ins, i) {
        Some(v) if v.shape.iter().product::<usize>() != 1 => bad(format!("{what} (input {i}) must hold one value, got shape {:?}", v.shape)),
        _ => Ok(()),
    }
}

/// Checks `node`'s inputs (those known; `None` where absent or unknown).
pub fn check(node: &Node, ins: &[Option<In>]) -> Result<()> {
    match &node.op {
        Op::Cumulative { .. } => scalar(ins, 1, "axis")?,
        Op::TopK { .. } => scalar(ins, 1, "k")?,
        Op::Trilu { .. } => scalar(ins, 1, "k")?,
        Op::Range => (0..3).try_for_each(|i| scalar(ins, i, ["start", "limit", "delta"][i]))?,
        Op::OneHot { .. } => scalar(ins, 1, "depth")?,
        _ => {}
    }
    let Some(x) = input(ins, 0) else { return Ok(()) };
    match &node.op {
        Op::Conv { window, .. } | Op::ConvTranspose { window, .. } => {
            let Some(w) = input(ins, 1) else { return Ok(()) };
            let what = node.op.name();
            min_rank(x, 3, &what)?;
            if w.shape.len() != x.shape.len() {
                return bad(format!("weights {:?} must have the input's rank {} ({:?})", w.shape, x.shape.len(), x.shape));
            }
            check_window(window, x.shape.len() - 2)?;
            if !window.kernel_shape.is_empty() && window.kernel_shape.as_slice() != &w.shape[2..] {
                return bad(format!("kernel_shape {:?} contradicts the weights {:?}", window.kernel_shape, w.shape));
            }
            if let Some(k) = w.shape[2..].iter().position(|&k| k == 0) {
                return bad(format!("weights {:?} have an empty kernel on spatial axis {k}", w.shape));
            }
            if let (Op::ConvTranspose { group, .. }, Some(b)) = (&node.op, input(ins, 2)) {
                let out = w.shape[1] * group;
                if b.shape != [out] {
                    return bad(format!("bias {:?} != [{out}] (the output channels)", b.shape));
                }
            }
            if let Op::ConvTranspose { group, .. } = &node.op {
                if *group == 0 || w.shape[0] != x.shape[1] || x.shape[1] % group != 0 {
                    return bad(format!("weights {:?} do not fit input {:?} with group {group} (ConvTranspose weights are [C, M/group, ...])", w.shape, x.shape));
                }
            }
            Ok(())
        }
        Op::Pool { window, .. } => {
            min_rank(x, 3, "pooling")?;
            check_window(window, x.shape.len() - 2)?;
            if window.kernel_shape.len() != x.shape.len() - 2 || window.kernel_shape.contains(&0) {
                return bad(format!("kernel_shape {:?} must give a positive size for each of the {} spatial axes", window.kernel_shape, x.shape.len() - 2));
            }
            Ok(())
        }
        Op::InstanceNorm { .. } => {
            min_rank(x, 3, "InstanceNormalization")?;
            per_channel(ins, 1, "scale", x.shape[1])?;
            per_channel(ins, 2, "bias", x.shape[1])
        }
        Op::GroupNorm { groups, .. } => {
            min_rank(x, 3, "GroupNormalization")?;
            let c = x.shape[1];
            if *groups == 0 || c % groups != 0 {
                return bad(format!("num_groups {groups} does not divide the {c} channels"));
            }
            per_channel(ins, 1, "scale", c)?;
            per_channel(ins, 2, "bias", c)
        }
        Op::RmsNorm { axis, .. } | Op::LayerNorm { axis, .. } => {
            let ax = crate::tensor::norm_axis(*axis, x.shape.len())?;
            if x.shape.is_empty() {
                return bad("normalisation of a rank-0 tensor".into());
            }
            let normalized = &x.shape[ax..];
            for (i, what) in [(1, "scale"), (2, "bias")] {
                if let Some(v) = input(ins, i) {
                    if !broadcasts_to(v.shape, normalized) {
                        return bad(format!("{what} {:?} does not broadcast to the normalised dims {normalized:?}", v.shape));
                    }
                }
            }
            Ok(())
        }
        Op::Lrn { size, .. } => {
            min_rank(x, 3, "LRN")?;
            if *size == 0 {
                return bad("size must be >= 1".into());
            }
            Ok(())
        }
        Op::ReverseSequence { batch_axis, time_axis } => {
            min_rank(x, 2, "ReverseSequence")?;
            if *batch_axis > 1 || *time_axis > 1 || batch_axis == time_axis {
                return bad(format!("batch_axis {batch_axis} and time_axis {time_axis} must be 0 and 1 in some order"));
            }
            let batch = x.shape[*batch_axis];
            match input(ins, 1) {
                Some(l) if l.shape != [batch] => bad(format!("sequence_lens has shape {:?}, expected [{batch}] (one per batch entry)", l.shape)),
                Some(l) => match l.value {
                    Some(v) => check_lengths(&v.to_i64_vec()?, x.shape[*time_axis]),
                    None => Ok(()),
                },
                None => Ok(()),
            }
        }
        Op::ScatterElements { axis, .. } => {
            let (Some(idx), Some(upd)) = (input(ins, 1), input(ins, 2)) else { return Ok(()) };
            let ax = crate::tensor::norm_axis(*axis, x.shape.len())?;
            if x.shape.is_empty() {
                return bad("scatter into a rank-0 tensor".into());
            }
            if idx.shape.len() != x.shape.len() {
                return bad(format!("indices {:?} must have the data's rank {} ({:?})", idx.shape, x.shape.len(), x.shape));
            }
            if idx.shape != upd.shape {
                return bad(format!("indices {:?} and updates {:?} must have the same shape", idx.shape, upd.shape));
            }
            if let Some(d) = (0..x.shape.len()).find(|&d| d != ax && idx.shape[d] > x.shape[d]) {
                return bad(format!("indices {:?} exceed the data {:?} on axis {d}", idx.shape, x.shape));
            }
            Ok(())
        }
        Op::GatherNd { batch_dims } => {
            let Some(idx) = input(ins, 1) else { return Ok(()) };
            let (q, r, b) = (idx.shape.len(), x.shape.len(), *batch_dims);
            if q == 0 || b >= q || b >= r || idx.shape[..b] != x.shape[..b] {
                return bad(format!("indices {:?} do not fit data {:?} with batch_dims {b} (the first {b} dims must agree, indices need rank > {b})", idx.shape, x.shape));
            }
            let k = idx.shape[q - 1];
            if k == 0 || k > r - b {
                return bad(format!("index tuples of {k} for data {:?} with batch_dims {b}", x.shape));
            }
            Ok(())
        }
        Op::ScatterNd { .. } => {
            let (Some(idx), Some(upd)) = (input(ins, 1), input(ins, 2)) else { return Ok(()) };
            let Some(&k) = idx.shape.last() else { return bad("indices must have rank >= 1".into()) };
            if k == 0 || k > x.shape.len() {
                return bad(format!("index tuples of {k} for a rank-{} tensor", x.shape.len()));
            }
            let want: Vec<usize> = idx.shape[..idx.shape.len() - 1].iter().chain(&x.shape[k..]).copied().collect();
            if upd.shape != want.as_slice() {
                return bad(format!("updates have shape {:?}, expected {want:?} (indices {:?}, data {:?})", upd.shape, idx.shape, x.shape));
            }
            Ok(())
        }
        Op::Attention(_) => {
            let (Some(k), Some(v)) = (input(ins, 1), input(ins, 2)) else { return Ok(()) };
            let seq_axis = if k.shape.len() == 3 { 1 } else { 2 };
            if k.shape.len() != v.shape.len() || k.shape.len() < 3 || k.shape[0] != v.shape[0] || k.shape[seq_axis] != v.shape[seq_axis] {
                return bad(format!("keys {:?} and values {:?} must agree on batch and sequence length", k.shape, v.shape));
            }
            Ok(())
        }
        Op::Resize(_) => {
            if let Some(s) = input(ins, 2).and_then(|s| s.value) {
                let s = s.to_f64_vec();
                if let Some(v) = s.iter().find(|v| !v.is_finite() || **v <= 0.0) {
                    return bad(format!("scales {s:?}: {v} is not a positive finite number"));
                }
            }
            Ok(())
        }
        Op::Unique { axis: Some(_), .. } | Op::ArgExtreme { .. } | Op::Gather { .. } | Op::Split { .. } | Op::GatherElements { .. } | Op::Cumulative { .. } | Op::Hardmax { .. } | Op::TopK { .. } | Op::Concat { .. } | Op::Softmax { .. } => {
            if x.shape.is_empty() {
                return bad(format!("{} of a rank-0 tensor (it needs an axis)", node.op.name()));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Strides and dilations positive, one per spatial axis where given; pads two per axis.
fn check_window(w: &super::op::Window, spatial: usize) -> Result<()> {
    for (name, v) in [("strides", &w.strides), ("dilations", &w.dilations)] {
        if !v.is_empty() && (v.len() != spatial || v.contains(&0)) {
            return bad(format!("{name} {v:?} must hold a positive value for each of the {spatial} spatial axes"));
        }
    }
    if !w.pads.is_empty() && w.pads.len() != 2 * spatial {
        return bad(format!("pads {:?} must hold {} values (begins, then ends)", w.pads, 2 * spatial));
    }
    Ok(())
}

/// [`check`] on concrete tensors: what a run checks for nodes whose shapes were only known then.
pub fn check_tensors(node: &Node, inputs: &[Option<&crate::tensor::Tensor>]) -> Result<()> {
    let ins: Vec<Option<In>> = inputs.iter().map(|t| t.map(|t| In { dtype: t.dtype(), shape: t.shape(), value: Some(t) })).collect();
    check(node, &ins)
}

/// ReverseSequence's lengths: each in 0..=time.
pub fn check_lengths(lens: &[i64], time: usize) -> Result<()> {
    match lens.iter().find(|&&l| l < 0 || l as usize > time) {
        Some(l) => bad(format!("sequence length {l} is outside 0..={time} (the time axis)")),
        None => Ok(()),
    }
}

/// Resize of an axis with no elements to one with some: nothing to sample from.
pub fn check_resize_axes(input: &[usize], output: &[usize]) -> Result<()> {
    match input.iter().zip(output).position(|(&i, &o)| i == 0 && o > 0) {
        Some(a) => bad(format!("axis {a} is empty ({input:?}) and cannot be resized to {}", output[a])),
        None => Ok(()),
    }
}
