//! Normalisations beyond Layer/BatchNorm: Instance, Group, RMS, Lp, LRN; and the linear
//! (de)quantisation ops. f32 compute, statistics in f64.

use super::elementwise::cast;
use crate::error::Result;
use crate::tensor::{norm_axis, DType, Data, Tensor};
use crate::{bail, unsupported};

/// Normalises each of `groups` contiguous blocks to zero mean / unit variance, then applies
/// `affine(channel_or_element_index, value)`.
fn normalize_blocks(v: &mut [f32], block: usize, eps: f32, mut affine: impl FnMut(usize, usize, f32) -> f32) {
    for (b, chunk) in v.chunks_mut(block.max(1)).enumerate() {
        let n = chunk.len() as f64;
        let mean = chunk.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = chunk.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for (i, e) in chunk.iter_mut().enumerate() {
            *e = affine(b, i, ((*e as f64 - mean) * inv) as f32);
        }
    }
}

pub fn instance_norm(x: &Tensor, scale: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
    let (s, b) = (scale.as_f32()?, bias.as_f32()?);
    let c = x.shape()[1];
    let plane: usize = x.shape()[2..].iter().product();
    let mut y = x.as_f32()?.to_vec();
    normalize_blocks(&mut y, plane, eps, |blk, _, v| v * s[blk % c] + b[blk % c]);
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
    let mut y = x.as_f32()?.to_vec();
    normalize_blocks(&mut y, per_group * plane, eps, |blk, i, v| {
        let ch = (blk % groups) * per_group + i / plane.max(1);
        v * s[ch] + b[ch]
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
