//! Operators of integer-quantised models: DynamicQuantizeLinear, MatMulInteger, QLinearMatMul,
//! QLinearConv and ConvInteger, on the scale / zero-point indexing and requantisation of
//! `norm.rs`. Matmul products accumulate in f64, which holds every int8 x int8 sum exactly (f32
//! does not past 2^24), so MatMulInteger's int32 results are exact.

use super::elementwise::cast;
use super::norm::{param_index, quantize_linear, quantized_range};
use crate::error::Result;
use crate::graph::geometry::matmul_shape;
use crate::graph::Window;
use crate::tensor::{broadcast_shapes, strides_of, DType, Data, Tensor};
use crate::bail;

/// `y = saturate(round(x / scale) + zp)` to u8 with scale and zero point from the data's range
/// (extended to include 0); rounding is half to even throughout.
pub fn dynamic_quantize_linear(x: &Tensor) -> Result<Vec<Tensor>> {
    let v = x.to_f64_vec();
    let v32: Vec<f32> = v.iter().map(|&e| e as f32).collect();
    let lo = v32.iter().copied().fold(0f32, f32::min);
    let hi = v32.iter().copied().fold(0f32, f32::max);
    let scale = (hi - lo) / 255.0;
    let zp = if scale == 0.0 { 0.0 } else { (0.0 - lo / scale).round_ties_even().clamp(0.0, 255.0) };
    let y: Vec<u8> = v32.iter().map(|&e| if scale == 0.0 { zp as u8 } else { ((e / scale).round_ties_even() + zp).clamp(0.0, 255.0) as u8 }).collect();
    Ok(vec![Tensor::new(x.shape().to_vec(), Data::U8(y))?, Tensor::from_f32(&[], vec![scale])?, Tensor::new(vec![], Data::U8(vec![zp as u8]))?])
}

/// `(a - a_zp) x (b - b_zp)` in int32; zero points are scalars, per row of A ([M]) or per
/// column of B ([N]).
pub fn matmul_integer(a: &Tensor, b: &Tensor, azp: Option<&Tensor>, bzp: Option<&Tensor>, out_shape: &[usize]) -> Result<Tensor> {
    let (av, bv) = (shifted(a, azp, ROWS)?, shifted(b, bzp, COLUMNS)?);
    let y = matmul_f64(&av, a.shape(), &bv, b.shape())?;
    Tensor::new(out_shape.to_vec(), Data::I32(y.iter().map(|&v| v as i32).collect()))
}

/// Inputs a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp: dequantise both operands (scales
/// scalar or per row of A / column of B), multiply, requantise to y's type.
pub fn qlinear_matmul(inputs: &[Option<&Tensor>], out_type: &DType, out_shape: &[usize]) -> Result<Tensor> {
    let input = |i: usize| inputs.get(i).copied().flatten();
    let (Some(a), Some(asc), Some(b), Some(bsc), Some(ysc)) = (input(0), input(1), input(3), input(4), input(6)) else { bail!("a, b and the three scales are required") };
    let scaled = |t: &Tensor, scale: &Tensor, zp: Option<&Tensor>, axis: i64| -> Result<Vec<f64>> {
        let mut v = shifted(t, zp, axis)?;
        let s = scale.to_f64_vec();
        let si = param_index(t, s.len(), axis)?;
        // Dequantised values are f32 in the reference; round through f32 to match.
        v.iter_mut().enumerate().for_each(|(i, e)| *e = (*e as f32 * s[si(i)] as f32) as f64);
        Ok(v)
    };
    let av = scaled(a, asc, input(2), ROWS)?;
    let bv = scaled(b, bsc, input(5), COLUMNS)?;
    let y = matmul_f64(&av, a.shape(), &bv, b.shape())?;
    let (ys, yz) = (ysc.to_f64_vec(), input(7).map(|t| t.to_f64_vec()).unwrap_or_else(|| vec![0.0]));
    if ys.len() != 1 || yz.len() != 1 {
        bail!("y_scale and y_zero_point must be scalars");
    }
    let Some((lo, hi)) = quantized_range(*out_type).filter(|_| matches!(out_type, DType::U8 | DType::I8)) else { crate::unsupported!("QLinearMatMul to {out_type}") };
    let q: Vec<f64> = y.iter().map(|&v| ((v as f32 / ys[0] as f32).round_ties_even() as f64 + yz[0]).clamp(lo, hi)).collect();
    cast(&Tensor::new(out_shape.to_vec(), Data::F64(q))?, *out_type)
}

/// Quantisation parameters of a matmul operand that vary along its rows (A) or columns (B).
const ROWS: i64 = -2;
const COLUMNS: i64 = -1;

/// `t - zp` as f64, the zero point a scalar or 1-D along `axis`.
fn shifted(t: &Tensor, zp: Option<&Tensor>, axis: i64) -> Result<Vec<f64>> {
    let mut v = t.to_f64_vec();
    if let Some(z) = zp {
        let z = z.to_f64_vec();
        let zi = param_index(t, z.len(), axis)?;
        v.iter_mut().enumerate().for_each(|(i, e)| *e -= z[zi(i)]);
    }
    Ok(v)
}

/// Numpy matmul in f64 (batch dims broadcast; 1-D operands promoted and squeezed as numpy does).
fn matmul_f64(av: &[f64], ash: &[usize], bv: &[f64], bsh: &[usize]) -> Result<Vec<f64>> {
    let out = matmul_shape(ash, bsh)?;
    let a2: Vec<usize> = if ash.len() == 1 { vec![1, ash[0]] } else { ash.to_vec() };
    let b2: Vec<usize> = if bsh.len() == 1 { vec![bsh[0], 1] } else { bsh.to_vec() };
    let (m, k, n) = (a2[a2.len() - 2], a2[a2.len() - 1], b2[b2.len() - 1]);
    let (abatch, bbatch) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
    let Some(batch) = broadcast_shapes(abatch, bbatch) else { bail!("batch dims {abatch:?} and {bbatch:?} do not broadcast") };
    let (sa, sb, bs) = (strides_of(abatch), strides_of(bbatch), strides_of(&batch));
    let nb: usize = batch.iter().product();
    let mut y = vec![0f64; nb * m * n];
    let offset = |dims: &[usize], strides: &[usize], bi: usize| -> usize {
        let lead = batch.len() - dims.len();
        dims.iter().enumerate().filter(|(_, &d)| d != 1).map(|(d, _)| ((bi / bs[lead + d]) % batch[lead + d]) * strides[d]).sum()
    };
    for bi in 0..nb {
        let (ia, ib) = (offset(abatch, &sa, bi), offset(bbatch, &sb, bi));
        let (am, bm) = (&av[ia * m * k..(ia + 1) * m * k], &bv[ib * k * n..(ib + 1) * k * n]);
        let ym = &mut y[bi * m * n..(bi + 1) * m * n];
        for i in 0..m {
            for p in 0..k {
                let x = am[i * k + p];
                for (o, &w) in ym[i * n..(i + 1) * n].iter_mut().zip(&bm[p * n..(p + 1) * n]) {
                    *o += x * w;
                }
            }
        }
    }
    debug_assert_eq!(y.len(), out.iter().product::<usize>());
    Ok(y)
}

/// Inputs x, x_scale, x_zp, w, w_scale, w_zp (both per output channel or scalar), y_scale, y_zp,
/// B (int32, in units of x_scale * w_scale): dequantise, convolve in f32 through the float
/// kernels, requantise to y's type.
pub fn qlinear_conv(inputs: &[Option<&Tensor>], window: &Window, group: usize, out_type: &DType, out_shape: &[usize]) -> Result<Tensor> {
    let input = |i: usize| inputs.get(i).copied().flatten();
    let (Some(x), Some(xs), Some(w), Some(ws), Some(ys)) = (input(0), input(1), input(3), input(4), input(6)) else { bail!("x, w and the three scales are required") };
    let m = w.shape()[0];
    let count = |t: Option<&Tensor>| t.map_or(1, Tensor::numel);
    if count(Some(xs)) != 1 || count(input(2)) != 1 || count(Some(ys)) != 1 || count(input(7)) != 1 || ![1, m].contains(&ws.numel()) || ![1, m].contains(&count(input(5))) {
        bail!("x and y scales and zero points must be scalars, w's scalar or one per output channel ({m})");
    }
    if !matches!(out_type, DType::U8 | DType::I8) {
        crate::unsupported!("QLinearConv to {out_type}");
    }
    let xs = xs.to_f64_vec()[0];
    let xf: Vec<f32> = shifted(x, input(2), 1)?.iter().map(|&v| (v * xs) as f32).collect();
    // Weights per output channel (axis 0).
    let wsv = ws.to_f64_vec();
    let wsi = param_index(w, wsv.len(), 0)?;
    let wf: Vec<f32> = shifted(w, input(5), 0)?.iter().enumerate().map(|(i, &v)| (v * wsv[wsi(i)]) as f32).collect();
    let per = w.numel() / m.max(1);
    let bias = input(8).map(|b| {
        let bv = b.to_f64_vec();
        Tensor::from_f32(&[m], (0..m).map(|ch| (bv[ch] * xs * wsv[wsi(ch * per)]) as f32).collect())
    });
    let bias = bias.transpose()?;
    let y = super::conv::conv(&Tensor::from_f32(x.shape(), xf)?, &Tensor::from_f32(w.shape(), wf)?, bias.as_ref(), window, group, None, out_shape)?;
    quantize_linear(&y, ys, input(7), 1, *out_type, true)
}

/// `conv(x - x_zp, w - w_zp)` in int32 (w_zp scalar or per output channel), through the f32
/// convolution when every partial sum provably stays below 2^24, where f32 is exact; larger
/// products are refused rather than rounded.
pub fn conv_integer(x: &Tensor, w: &Tensor, xzp: Option<&Tensor>, wzp: Option<&Tensor>, window: &Window, group: usize, out_shape: &[usize]) -> Result<Tensor> {
    let m = w.shape()[0];
    if xzp.is_some_and(|z| z.numel() != 1) || wzp.is_some_and(|z| z.numel() != 1 && z.numel() != m) {
        bail!("x_zero_point must be a scalar and w_zero_point a scalar or one per output channel ({m})");
    }
    let per = w.numel() / m.max(1);
    let (xv, wv) = (shifted(x, xzp, 1)?, shifted(w, wzp, 0)?);
    let max_abs = |v: &[f64]| v.iter().fold(0f64, |a, &b| a.max(b.abs()));
    if max_abs(&xv) * max_abs(&wv) * per as f64 >= (1u64 << 24) as f64 {
        crate::unsupported!("ConvInteger whose sums may exceed 2^24 (f32-exact range)");
    }
    let xf = Tensor::from_f32(x.shape(), xv.iter().map(|&v| v as f32).collect())?;
    let wf = Tensor::from_f32(w.shape(), wv.iter().map(|&v| v as f32).collect())?;
    let y = super::conv::conv(&xf, &wf, None, window, group, None, out_shape)?;
    Tensor::new(out_shape.to_vec(), Data::I32(y.as_f32()?.iter().map(|&v| v as i32).collect()))
}
