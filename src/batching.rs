//! How a session treats the batch dimension. Dynamic (the default): every batch size binds its
//! own graph and gets its own plan, cached. Static: one plan for a preset batch; a smaller
//! request is padded to it (with copies of its first sample) and its outputs cut back, a larger
//! one refused: what a server wants when planning (or a device's compile) is costly and batch
//! sizes vary. Plans say which they were made under. Micro-batching (either mode) splits a large
//! request into chunks that follow each other through a plan's pipeline stages, and joins their
//! outputs.

use crate::error::{Error, Result};
use crate::graph::{Bindings, Dim, Graph};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Batching {
    /// One plan per bound batch size.
    #[default]
    Dynamic,
    /// One plan for this batch; smaller requests padded to it.
    Static { batch: usize },
}

/// The batch-like symbolic dims of the graph's inputs (`session::is_batch_dim`).
fn batch_dims(graph: &Graph) -> Vec<String> {
    let mut v: Vec<String> = graph.inputs.iter().flat_map(|i| i.shape.iter()).filter_map(|d| if let Dim::Sym(s) = d { crate::session::is_batch_dim(s).then(|| s.clone()) } else { None }).collect();
    v.sort();
    v.dedup();
    v
}

/// The request's batch under `bindings`, when the model has a batch dim.
pub fn request_batch(graph: &Graph, bindings: &Bindings) -> Option<usize> {
    batch_dims(graph).iter().filter_map(|d| bindings.get(d).copied()).max()
}

/// Each output's batch axis: the first dim that doubles from batch 1 to batch 2.
pub fn output_batch_axes(graph: &Graph) -> Result<Vec<Option<usize>>> {
    let bound = |b| crate::session::bind(graph, &crate::session::default_bindings(graph, b, 16, &Default::default()));
    let (one, two) = (bound(1)?, bound(2)?);
    Ok((0..graph.outputs.len())
        .map(|k| {
            let shape = |g: &Graph| g.g[g.outputs[k].node].outputs[g.outputs[k].slot].shape.clone().unwrap_or_default();
            let (a, b) = (shape(&one), shape(&two));
            (a.len() == b.len()).then(|| (0..a.len()).find(|&d| b[d] == 2 * a[d] && a[d] > 0)).flatten()
        })
        .collect())
}

/// `rows` of `t` along `axis` (indices may repeat).
fn pick(t: &Tensor, axis: usize, rows: &[i64]) -> Result<Tensor> {
    let mut shape = t.shape().to_vec();
    shape[axis] = rows.len();
    let idx = Tensor::from_i64(&[rows.len()], rows.to_vec())?;
    crate::backend::cpu::layout::gather(t, &idx, axis as i64, &shape)
}

/// Pads every input whose dims name a batch symbol from `have` to `want` along those axes.
pub fn pad_inputs(graph: &Graph, inputs: Vec<(String, Tensor)>, have: usize, want: usize) -> Result<Vec<(String, Tensor)>> {
    if have > want {
        return Err(Error::Input(format!("batch {have} is above the session's static batch {want} (SessionOptions::batching)")));
    }
    if have == want || have == 0 {
        return Ok(inputs);
    }
    let batch = batch_dims(graph);
    let rows: Vec<i64> = (0..want as i64).map(|i| if i < have as i64 { i } else { 0 }).collect();
    inputs
        .into_iter()
        .map(|(name, t)| {
            let Some(gi) = graph.inputs.iter().find(|i| i.name == name) else { return Ok((name, t)) };
            let mut t = t;
            for (axis, d) in gi.shape.iter().enumerate() {
                if matches!(d, Dim::Sym(s) if batch.contains(s)) {
                    t = pick(&t, axis, &rows)?;
                }
            }
            Ok((name, t))
        })
        .collect()
}

/// Cuts padded outputs back to the request's `batch` rows along their batch axes.
pub fn cut_outputs(outputs: Vec<(String, Tensor)>, axes: &[Option<usize>], batch: usize) -> Result<Vec<(String, Tensor)>> {
    let rows: Vec<i64> = (0..batch as i64).collect();
    outputs
        .into_iter()
        .zip(axes)
        .map(|((name, t), axis)| match axis {
            Some(a) if *a < t.rank() && t.shape()[*a] != batch => Ok((name, pick(&t, *a, &rows)?)),
            _ => Ok((name, t)),
        })
        .collect()
}

/// Splits a request of `batch` rows into chunks of at most `micro` rows along every batch axis of
/// the inputs (inputs without one go whole to every chunk).
pub fn split_inputs(graph: &Graph, inputs: &[(String, Tensor)], batch: usize, micro: usize) -> Result<Vec<Vec<(String, Tensor)>>> {
    if micro == 0 {
        return Err(Error::Input("micro-batch size must be at least 1".into()));
    }
    let dims = batch_dims(graph);
    (0..batch)
        .step_by(micro)
        .map(|start| {
            let rows: Vec<i64> = (start as i64..(start + micro).min(batch) as i64).collect();
            inputs
                .iter()
                .map(|(name, t)| {
                    let Some(gi) = graph.inputs.iter().find(|i| &i.name == name) else { return Ok((name.clone(), t.clone())) };
                    let mut t = t.clone();
                    for (axis, d) in gi.shape.iter().enumerate() {
                        if matches!(d, Dim::Sym(s) if dims.contains(s)) {
                            t = pick(&t, axis, &rows)?;
                        }
                    }
                    Ok((name.clone(), t))
                })
                .collect()
        })
        .collect()
}

/// Joins the chunks' outputs along each output's batch axis (an output without one is the first
/// chunk's).
pub fn join_outputs(parts: Vec<Vec<(String, Tensor)>>, axes: &[Option<usize>]) -> Result<Vec<(String, Tensor)>> {
    let Some(first) = parts.first() else { return Ok(vec![]) };
    let mut joined = Vec::with_capacity(first.len());
    for (k, (name, t)) in first.iter().enumerate() {
        let out = match axes.get(k).copied().flatten().filter(|&a| a < t.rank()) {
            Some(axis) => {
                let pieces: Vec<&Tensor> = parts.iter().map(|p| &p[k].1).collect();
                let mut shape = t.shape().to_vec();
                shape[axis] = pieces.iter().map(|p| p.shape().get(axis).copied().unwrap_or(0)).sum();
                crate::backend::cpu::layout::concat(&pieces, axis, &shape)?
            }
            None => t.clone(),
        };
        joined.push((name.clone(), out));
    }
    Ok(joined)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::builder::ModelBuilder;

    #[test]
    fn split_and_join_restore_the_request() {
        let mut b = ModelBuilder::new();
        b.input("x", 1, &["batch", "2"]).input("w", 1, &["2"]).output("y").node("Mul", &["x", "w"], &["y"], vec![]);
        let g = crate::onnx::load_model_bytes(&b.bytes()).unwrap();
        let x = Tensor::from_f32(&[5, 2], (0..10).map(|v| v as f32).collect()).unwrap();
        let w = Tensor::from_f32(&[2], vec![1.0, 2.0]).unwrap();
        let parts = split_inputs(&g, &[("x".into(), x.clone()), ("w".into(), w.clone())], 5, 2).unwrap();
        assert_eq!(parts.iter().map(|p| p[0].1.shape()[0]).collect::<Vec<_>>(), vec![2, 2, 1]);
        assert!(parts.iter().all(|p| p[1].1 == w), "inputs without a batch axis go whole");
        let outs: Vec<Vec<(String, Tensor)>> = parts.into_iter().map(|p| vec![("y".to_string(), p[0].1.clone())]).collect();
        assert_eq!(join_outputs(outs, &[Some(0)]).unwrap()[0].1, x);
        assert!(split_inputs(&g, &[("x".into(), x)], 5, 0).is_err());
    }
}
