//! Einsum: f32 equations that are permutes around one batched GEMM ([`EinsumGemm`]: attention
//! scores, bilinear forms, batched products) run as such; everything else (diagonals, sums over
//! one operand, broadcasting, three or more operands, other dtypes) by direct summation over the
//! index space.

use super::elementwise::cast;
use super::gemm::matmul;
use super::layout::transpose;
use crate::error::Result;
use crate::graph::einsum_labels::{einsum_plan, EinsumGemm, GemmLabels};
use crate::tensor::{checked_numel, strides_of, DType, Data, Tensor};

pub fn einsum(equation: &str, inputs: &[&Tensor]) -> Result<Tensor> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    if inputs.iter().all(|t| t.dtype() == DType::F32) {
        if let Some(route) = EinsumGemm::new(equation, &shapes) {
            return by_gemm(&route, inputs);
        }
    }
    summed(equation, inputs, &shapes)
}

/// `x` (labelled `from`) laid out as `to`.
fn laid_out(route: &EinsumGemm, x: &Tensor, from: &[char], to: &[char]) -> Result<Tensor> {
    if from == to {
        return Ok(x.clone());
    }
    transpose(x, &EinsumGemm::perm(from, to), &route.shape(to))
}

fn by_gemm(route: &EinsumGemm, inputs: &[&Tensor]) -> Result<Tensor> {
    let Some(GemmLabels { batch, left, contract, right }) = route.roles() else {
        return laid_out(route, inputs[0], &route.labels[0], &route.out);
    };
    let (nb, m, k, n) = (route.size(&batch), route.size(&left), route.size(&contract), route.size(&right));
    let a = laid_out(route, inputs[0], &route.labels[0], &[&batch[..], &left, &contract].concat())?.reshaped(vec![nb, m, k])?;
    let b = laid_out(route, inputs[1], &route.labels[1], &[&batch[..], &contract, &right].concat())?.reshaped(vec![nb, k, n])?;
    let product: Vec<char> = [&batch[..], &left, &right].concat();
    let c = matmul(&a, &b)?.reshaped(route.shape(&product))?;
    laid_out(route, &c, &product, &route.out)
}

/// Direct summation: every output element sums the product of its operands over the labels
/// the output drops.
fn summed(equation: &str, inputs: &[&Tensor], shapes: &[&[usize]]) -> Result<Tensor> {
    let (labels, out, dims) = einsum_plan(equation, shapes)?;
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
