//! Einsum by direct summation over the index space (explicit or implicit output, ellipsis,
//! repeated labels for diagonals). Meant for correctness on small operands.

use super::elementwise::cast;
use crate::error::Result;
use crate::graph::einsum_labels::einsum_plan;
use crate::tensor::{checked_numel, strides_of, Data, Tensor};

pub fn einsum(equation: &str, inputs: &[&Tensor]) -> Result<Tensor> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    let (labels, out, dims) = einsum_plan(equation, &shapes)?;
    let all: Vec<char> = out.iter().copied().chain(dims.keys().copied().filter(|c| !out.contains(c))).collect();
    let sizes: Vec<usize> = all.iter().map(|c| dims[c]).collect();
    let out_shape: Vec<usize> = out.iter().map(|c| dims[c]).collect();
    let nout = checked_numel(&out_shape)?;
    let total = checked_numel(&sizes)?;
    let vals: Vec<Vec<f64>> = inputs.iter().map(|t| t.to_f64_vec()).collect();
    // For each operand, the stride of every label in `all` (0 where absent or broadcast).
    let strides: Vec<Vec<usize>> = labels
        .iter()
        .zip(inputs)
        .map(|(l, t)| {
            let st = strides_of(t.shape());
            all.iter().map(|c| l.iter().enumerate().filter(|(_, x)| *x == c).map(|(i, _)| if t.shape()[i] == 1 { 0 } else { st[i] }).sum()).collect()
        })
        .collect();
    let all_st = strides_of(&sizes);
    let inner = total / nout.max(1);
    let mut res = vec![0f64; nout];
    for (o, r) in res.iter_mut().enumerate() {
        for k in 0..inner {
            let flat = o * inner + k;
            let mut prod = 1.0;
            for (v, st) in vals.iter().zip(&strides) {
                let off: usize = (0..all.len()).map(|d| ((flat / all_st[d]) % sizes[d]) * st[d]).sum();
                prod *= v[off];
            }
            *r += prod;
        }
    }
    cast(&Tensor::new(out_shape, Data::F64(res))?, inputs[0].dtype())
}
