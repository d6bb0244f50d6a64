//! Normalisations beyond Layer/BatchNorm: Instance, Group, RMS, Lp, LRN; and the linear
//! (de)quantisation ops. f32 compute.

use super::elementwise::cast;
use super::reduce::lane_sum;
use rayon::prelude::*;
use crate::error::Result;
use crate::tensor::{norm_axis, DType, Data, Tensor};
use crate::{bail, unsupported};

/// Normalises each contiguous block of `block` elements to zero mean and unit variance, then
/// applies the affine `(scale, bias)` that `affine(block, part)` gives each `part`-long piece of
/// it (a channel's plane). Blocks run in parallel; the statistics take two passes (mean, then
/// centred squares) in eight f32 lanes, vectorised. Both passes work on the offsets from the
/// block's first element: those are exact where values lie close together, so a mean far from
/// zero against a small spread (1000 +- 0.01) keeps its precision, as it would in f64.
fn normalize_blocks(v: &mut [f32], block: usize, part: usize, eps: f32, affine: impl Fn(usize, usize) -> (f32, f32) + Sync) {
    let (block, part) = (block.max(1), part.max(1));
    let normalise = |(b, chunk): (usize, &mut [f32])| {
        let n = chunk.len() as f32;
        let pivot = chunk[0];
        let mean = lane_sum(chunk, |x| x - pivot) / n;
        let var = lane_sum(chunk, |x| (x - pivot - mean) * (x - pivot - mean)) / n;
        let inv = 1.0 / (var + eps).sqrt();
        for (i, piece) in chunk.chunks_mut(part).enumerate() {
            let (s, bias) = affine(b, i);
            let k = inv * s;
            piece.iter_mut().for_each(|e| *e = (*e - pivot - mean) * k + bias);
        }
    };
    if v.len() >= 1 << 15 {
        v.par_chunks_mut(block).enumerate().with_min_len((1 << 13) / block + 1).for_each(normalise);
    } else {
        v.chunks_mut(block).enumerate().for_each(normalise);
    }
}

pub fn instance_norm(x: &Tensor, scale: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
    let (s, b) = (scale.as_f32()?, bias.as_f32()?);
    let c = x.shape()[1];
    let plane: usize = x.shape()[2..].iter().product();
    let mut y = super::arena::output_copy(x.as_f32()?);
    normalize_blocks(&mut y, plane, plane, eps, |blk, _| (s[blk % c], b[blk % c]));
    Tensor::from_f32(x.shape(), y)
}

pub fn group_norm(x: &Tensor, scale: &Tensor, bias: &Tensor, groups: usize, eps: f32) -> Result<Tensor> {
    let (s, b) = (scale.as_f32()?, bias.as_f32()?);
    let c = x.shape()[1];
    if c % groups != 0 {
        bail!("{c} channels do not split into {groups} groups");
    }
    let plane: usize = x.shape()[2..].iter().product();
    let per_group = c / groups;
    let mut y = super::arena::output_copy(x.as_f32()?);
    normalize_blocks(&mut y, per_group * plane, plane, eps, |blk, i| {
        let ch = (blk % groups) * per_group + i;
        (s[ch], b[ch])
    });
    Tensor::from_f32(x.shape(), y)
}

pub fn rms_norm(x: &Tensor, scale: &Tensor, axis: i64, eps: f32) -> Result<Tensor> {
    let ax = norm_axis(axis, x.rank())?;
    let block: usize = x.shape()[ax..].iter().product();
    let xf = cast(x, DType::F32)?;
    let sf = cast(scale, DType::F32)?;
    let s = sf.as_f32()?;
    let mut y = xf.as_f32()?.to_vec();
    for chunk in y.chunks_mut(block.max(1)) {
        let ms = chunk.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / block as f64;
        let inv = (1.0 / (ms + eps as f64).sqrt()) as f32;
        // scale broadcasts against the normalised trailing dims.
        for (i, e) in chunk.iter_mut().enumerate() {
            *e *= inv * s[i % s.len().max(1)];
        }
    }
    cast(&Tensor::from_f32(x.shape(), y)?, x.dtype())
}

pub fn lp_norm(x: &Tensor, axis: i64, p: i64) -> Result<Tensor> {
    let ax = norm_axis(axis, x.rank())?;
    let v = x.to_f64_vec();
    let dim = x.shape()[ax];
    let inner: usize = x.shape()[ax + 1..].iter().product();
    let outer: usize = x.shape()[..ax].iter().product();
    let mut out = v.clone();
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * dim + k) * inner + i;
            let norm = match p {
                1 => (0..dim).map(|k| v[at(k)].abs()).sum::<f64>(),
                2 => (0..dim).map(|k| v[at(k)].powi(2)).sum::<f64>().sqrt(),
                _ => unsupported!("LpNormalization with p = {p}"),
            };
            for k in 0..dim {
                out[at(k)] = if norm == 0.0 { 0.0 } else { v[at(k)] / norm };
            }
        }
    }
    cast(&Tensor::new(x.shape().to_vec(), Data::F64(out))?, x.dtype())
}

pub fn lrn(x: &Tensor, size: usize, alpha: f32, beta: f32, bias: f32) -> Result<Tensor> {
    let v = x.as_f32()?;
    let c = x.shape()[1];
    let plane: usize = x.shape()[2..].iter().product();
    // Window [c - floor((size-1)/2), c + ceil((size-1)/2)], clipped to the channels.
    let (lo, hi) = ((size - 1) / 2, size / 2);
    let mut y = vec![0f32; v.len()];
    for n in 0..x.shape()[0] {
        for ch in 0..c {
            let (a, b) = (ch.saturating_sub(lo), (ch + hi).min(c - 1));
            for p in 0..plane {
                let sq: f32 = (a..=b).map(|k| v[(n * c + k) * plane + p].powi(2)).sum();
                let i = (n * c + ch) * plane + p;
                y[i] = v[i] / (bias + alpha / size as f32 * sq).powf(beta);
            }
        }
    }
    Tensor::from_f32(x.shape(), y)
}

/// Per-element parameter index for a scale / zero point that is a scalar or 1-D along `axis`.
pub(super) fn param_index(x: &Tensor, param_len: usize, axis: i64) -> Result<impl Fn(usize) -> usize> {
    let (inner, dim) = if param_len <= 1 {
        (1, 1)
    } else {
        let ax = norm_axis(axis, x.rank())?;
        if x.shape()[ax] != param_len {
            bail!("scale of {param_len} elements does not match axis {ax} of {:?}", x.shape());
        }
        (x.shape()[ax + 1..].iter().product::<usize>(), param_len)
    };
    Ok(move |i: usize| (i / inner) % dim)
}

/// The values a quantised integer type saturates to.
pub(super) fn quantized_range(to: DType) -> Option<(f64, f64)> {
    Some(match to {
        DType::U8 => (0.0, 255.0),
        DType::I8 => (-128.0, 127.0),
        DType::U16 => (0.0, 65535.0),
        DType::I16 => (-32768.0, 32767.0),
        DType::I32 => (i32::MIN as f64, i32::MAX as f64),
        _ => return None,
    })
}

pub fn quantize_linear(x: &Tensor, scale: &Tensor, zp: Option<&Tensor>, axis: i64, to: DType, saturate: bool) -> Result<Tensor> {
    let Some((lo, hi)) = quantized_range(to) else { unsupported!("QuantizeLinear to {to}") };
    let _ = saturate;
    let s = scale.to_f64_vec();
    let z = zp.map(|z| z.to_f64_vec()).unwrap_or_else(|| vec![0.0]);
    let pi = param_index(x, s.len(), axis)?;
    let v = x.to_f64_vec();
    let out: Vec<f64> = v
        .iter()
        .enumerate()
        .map(|(i, &e)| {
            let k = pi(i);
            let q = (e / s[k]).round_ties_even() + z[k.min(z.len() - 1)];
            q.clamp(lo, hi)
        })
        .collect();
    cast(&Tensor::new(x.shape().to_vec(), Data::F64(out))?, to)
}

pub fn dequantize_linear(x: &Tensor, scale: &Tensor, zp: Option<&Tensor>, axis: i64) -> Result<Tensor> {
    let s = scale.to_f64_vec();
    let z = zp.map(|z| z.to_f64_vec()).unwrap_or_else(|| vec![0.0]);
    let pi = param_index(x, s.len(), axis)?;
    let out: Vec<f64> = x
        .to_f64_vec()
        .iter()
        .enumerate()
        .map(|(i, &e)| {
            let k = pi(i);
            (e - z[k.min(z.len() - 1)]) * s[k]
        })
        .collect();
    cast(&Tensor::new(x.shape().to_vec(), Data::F64(out))?, scale.dtype())
}

/// NegativeLogLikelihoodLoss over log-probabilities `x` [N, C, d...] and class targets [N, d...];
/// SoftmaxCrossEntropyLoss first takes log-softmax over C and also returns it.
pub fn loss(x: &Tensor, target: &Tensor, weight: Option<&Tensor>, softmax: bool, reduction: crate::graph::LossReduction, ignore: Option<i64>) -> Result<Vec<Tensor>> {
    use crate::graph::LossReduction;
    let logp = if softmax { Some(super::reduce::softmax(&cast(x, DType::F32)?, 1, true, false)?) } else { None };
    let xv = logp.as_ref().map(|l| l.to_f64_vec()).unwrap_or_else(|| x.to_f64_vec());
    let t = target.to_i64_vec()?;
    let w = weight.map(|w| w.to_f64_vec());
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let inner: usize = x.shape()[2..].iter().product();
    let mut losses = vec![0f64; n * inner];
    let mut wsum = 0.0;
    for i in 0..n {
        for p in 0..inner {
            let cls = t[i * inner + p];
            if Some(cls) == ignore {
                continue;
            }
            if cls < 0 || cls as usize >= c {
                bail!("target {cls} out of range for {c} classes");
            }
            let wt = w.as_ref().map(|w| w[cls as usize]).unwrap_or(1.0);
            losses[i * inner + p] = -xv[(i * c + cls as usize) * inner + p] * wt;
            wsum += wt;
        }
    }
    let out = match reduction {
        LossReduction::None => Tensor::new(target.shape().to_vec(), Data::F64(losses))?,
        LossReduction::Sum => Tensor::new(vec![], Data::F64(vec![losses.iter().sum()]))?,
        LossReduction::Mean => Tensor::new(vec![], Data::F64(vec![if wsum == 0.0 { 0.0 } else { losses.iter().sum::<f64>() / wsum }]))?,
    };
    let mut v = vec![cast(&out, x.dtype())?];
    if let Some(l) = logp {
        v.push(cast(&l, x.dtype())?);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeded values around `offset` with spread `spread`.
    fn values(len: usize, seed: u64, offset: f32, spread: f32) -> Vec<f32> {
        crate::test_values::values(len, seed as u32 + 1, offset - spread / 2.0, offset + spread / 2.0)
    }

    /// The definition in f64: per group, (x - mean) / sqrt(var + eps), then per channel affine.
    fn reference(x: &[f32], n: usize, c: usize, plane: usize, groups: usize, s: &[f32], b: &[f32], eps: f64) -> Vec<f32> {
        let per = c / groups * plane;
        let mut y = vec![0f32; x.len()];
        for blk in 0..n * groups {
            let v = &x[blk * per..(blk + 1) * per];
            let mean = v.iter().map(|&e| e as f64).sum::<f64>() / per as f64;
            let var = v.iter().map(|&e| (e as f64 - mean).powi(2)).sum::<f64>() / per as f64;
            for (i, &e) in v.iter().enumerate() {
                let ch = (blk % groups) * (c / groups) + i / plane;
                y[blk * per + i] = (((e as f64 - mean) / (var + eps).sqrt()) * s[ch] as f64 + b[ch] as f64) as f32;
            }
        }
        y
    }

    #[test]
    fn instance_and_group_norm_match_the_definition_on_ragged_shapes() {
        // Ragged planes, a large batch (the parallel path), and a mean far from zero against a
        // small spread (where folding the mean into the offset would cancel).
        for (case, &(n, c, groups, plane, offset, spread)) in
            [(1, 3, 3, 1, 0.0, 1.0), (2, 6, 3, 37, 0.5, 2.0), (3, 4, 2, 1031, 1000.0, 0.01), (8, 16, 4, 531, -3.0, 10.0), (1, 5, 1, 7, 0.0, 0.0)].iter().enumerate()
        {
            let x = values(n * c * plane, case as u64, offset, spread);
            let (s, b) = (values(c, 100 + case as u64, 1.0, 1.0), values(c, 200 + case as u64, 0.0, 1.0));
            let shape = [n, c, plane];
            let t = |v: &[f32], sh: &[usize]| Tensor::from_f32(sh, v.to_vec()).unwrap();
            let eps = 1e-5f32;
            let checks: Vec<(&str, Tensor, Vec<f32>)> = {
                let mut v = vec![("GroupNormalization", group_norm(&t(&x, &shape), &t(&s, &[c]), &t(&b, &[c]), groups, eps).unwrap(), reference(&x, n, c, plane, groups, &s, &b, eps as f64))];
                if groups == c {
                    v.push(("InstanceNormalization", instance_norm(&t(&x, &shape), &t(&s, &[c]), &t(&b, &[c]), eps).unwrap(), reference(&x, n, c, plane, c, &s, &b, eps as f64)));
                }
                v
            };
            for (op, got, want) in checks {
                for (i, (g, w)) in got.as_f32().unwrap().iter().zip(&want).enumerate() {
                    assert!((g - w).abs() <= 2e-5 * (1.0 + w.abs()), "{op} case {case} {shape:?} at {i}: got {g}, want {w}");
                }
            }
        }
    }
}
