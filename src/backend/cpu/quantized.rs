//! Operators of integer-quantised models: DynamicQuantizeLinear, MatMulInteger, QLinearMatMul,
//! QLinearConv and ConvInteger. Products accumulate in f64, which holds every int8 x int8 sum exactly (f32
//! does not past 2^24), so MatMulInteger's int32 results are exact.

use super::elementwise::cast;
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
    let (av, bv) = (shifted(a, azp, Side::Rows)?, shifted(b, bzp, Side::Columns)?);
    let y = matmul_f64(&av, a.shape(), &bv, b.shape())?;
    Tensor::new(out_shape.to_vec(), Data::I32(y.iter().map(|&v| v as i32).collect()))
}

/// Inputs a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp: dequantise both operands (scales
/// scalar or per row of A / column of B), multiply, requantise to y's type.
pub fn qlinear_matmul(inputs: &[Option<&Tensor>], out_type: &DType, out_shape: &[usize]) -> Result<Tensor> {
    let input = |i: usize| inputs.get(i).copied().flatten();
    let (Some(a), Some(asc), Some(b), Some(bsc), Some(ysc)) = (input(0), input(1), input(3), input(4), input(6)) else { bail!("a, b and the three scales are required") };
    let scaled = |t: &Tensor, scale: &Tensor, zp: Option<&Tensor>, side: Side| -> Result<Vec<f64>> {
        let mut v = shifted(t, zp, side)?;
        let s = per_index(t.shape(), scale, side)?;
        // Dequantised values are f32 in the reference; round through f32 to match.
        v.iter_mut().enumerate().for_each(|(i, e)| *e = (*e as f32 * s(i) as f32) as f64);
        Ok(v)
    };
    let av = scaled(a, asc, input(2), Side::Rows)?;
    let bv = scaled(b, bsc, input(5), Side::Columns)?;
    let y = matmul_f64(&av, a.shape(), &bv, b.shape())?;
    let (ys, yz) = (ysc.to_f64_vec(), input(7).map(|t| t.to_f64_vec()).unwrap_or_else(|| vec![0.0]));
    if ys.len() != 1 || yz.len() != 1 {
        bail!("y_scale and y_zero_point must be scalars");
    }
    let (lo, hi) = match out_type {
        DType::U8 => (0.0, 255.0),
        DType::I8 => (-128.0, 127.0),
        t => crate::unsupported!("QLinearMatMul to {t}"),
    };
    let q: Vec<f64> = y.iter().map(|&v| ((v as f32 / ys[0] as f32).round_ties_even() as f64 + yz[0]).clamp(lo, hi)).collect();
    cast(&Tensor::new(out_shape.to_vec(), Data::F64(q))?, *out_type)
}

#[derive(Clone, Copy)]
enum Side {
    /// Per-element parameters index the rows (second-last dim) of the operand.
    Rows,
    /// They index the columns (last dim).
    Columns,
}

/// For element `i` of a tensor of `shape`, its parameter from `p` (a scalar or a 1-D tensor
/// along `side`).
fn per_index<'a>(shape: &[usize], p: &'a Tensor, side: Side) -> Result<impl Fn(usize) -> f64 + 'a> {
    let v = p.to_f64_vec();
    let cols = *shape.last().unwrap_or(&1);
    let rows = if shape.len() >= 2 { shape[shape.len() - 2] } else { 1 };
    let along = match side {
        Side::Rows => rows,
        Side::Columns => cols,
    };
    if v.len() != 1 && v.len() != along {
        bail!("a quantisation parameter of shape {:?} fits neither a scalar nor {along} entries of {shape:?}", p.shape());
    }
    Ok(move |i: usize| match (v.len(), side) {
        (1, _) => v[0],
        (_, Side::Rows) => v[(i / cols) % rows],
        (_, Side::Columns) => v[i % cols],
    })
}

/// `t - zp` as f64.
fn shifted(t: &Tensor, zp: Option<&Tensor>, side: Side) -> Result<Vec<f64>> {
    let mut v = t.to_f64_vec();
    if let Some(z) = zp {
        let z = per_index(t.shape(), z, side)?;
        v.iter_mut().enumerate().for_each(|(i, e)| *e -= z(i));
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
    let (xs, ws, ys) = (xs.to_f64_vec(), ws.to_f64_vec(), ys.to_f64_vec());
    let m = w.shape()[0];
    let xz = input(2).map(|t| t.to_f64_vec()).unwrap_or_else(|| vec![0.0]);
    let wz = input(5).map(|t| t.to_f64_vec()).unwrap_or_else(|| vec![0.0]);
    let yz = input(7).map(|t| t.to_f64_vec()).unwrap_or_else(|| vec![0.0]);
    if xs.len() != 1 || xz.len() != 1 || ys.len() != 1 || yz.len() != 1 || (ws.len() != 1 && ws.len() != m) || (wz.len() != 1 && wz.len() != m) {
        bail!("x and y scales and zero points must be scalars, w's scalar or one per output channel ({m})");
    }
    let per_m = |v: &[f64], ch: usize| if v.len() == 1 { v[0] } else { v[ch] };
    let xf: Vec<f32> = x.to_f64_vec().iter().map(|&v| ((v - xz[0]) * xs[0]) as f32).collect();
    let per = w.numel() / m.max(1);
    let wf: Vec<f32> = w.to_f64_vec().iter().enumerate().map(|(i, &v)| ((v - per_m(&wz, i / per)) * per_m(&ws, i / per)) as f32).collect();
    let bias = input(8).map(|b| {
        let bv = b.to_f64_vec();
        Tensor::from_f32(&[m], (0..m).map(|ch| (bv[ch] * xs[0] * per_m(&ws, ch)) as f32).collect())
    });
    let bias = bias.transpose()?;
    let y = super::conv::conv(&Tensor::from_f32(x.shape(), xf)?, &Tensor::from_f32(w.shape(), wf)?, bias.as_ref(), window, group, None, out_shape)?;
    let (lo, hi) = match out_type {
        DType::U8 => (0.0, 255.0),
        DType::I8 => (-128.0, 127.0),
        t => crate::unsupported!("QLinearConv to {t}"),
    };
    let q: Vec<f64> = y.as_f32()?.iter().map(|&v| ((v as f64 / ys[0]).round_ties_even() + yz[0]).clamp(lo, hi)).collect();
    cast(&Tensor::new(out_shape.to_vec(), Data::F64(q))?, *out_type)
}

/// `conv(x - x_zp, w - w_zp)` in int32 (w_zp scalar or per output channel), through the f32
/// convolution when every partial sum provably stays below 2^24, where f32 is exact; larger
/// products are refused rather than rounded.
pub fn conv_integer(x: &Tensor, w: &Tensor, xzp: Option<&Tensor>, wzp: Option<&Tensor>, window: &Window, group: usize, out_shape: &[usize]) -> Result<Tensor> {
    let m = w.shape()[0];
    let xz = xzp.map(|t| t.to_f64_vec()).unwrap_or_else(|| vec![0.0]);
    let wz = wzp.map(|t| t.to_f64_vec()).unwrap_or_else(|| vec![0.0]);
    if xz.len() != 1 || (wz.len() != 1 && wz.len() != m) {
        bail!("x_zero_point must be a scalar and w_zero_point a scalar or one per output channel ({m})");
    }
    let per = w.numel() / m.max(1);
    let xv: Vec<f64> = x.to_f64_vec().iter().map(|&v| v - xz[0]).collect();
    let wv: Vec<f64> = w.to_f64_vec().iter().enumerate().map(|(i, &v)| v - if wz.len() == 1 { wz[0] } else { wz[i / per] }).collect();
    let max_abs = |v: &[f64]| v.iter().fold(0f64, |a, &b| a.max(b.abs()));
    if max_abs(&xv) * max_abs(&wv) * per as f64 >= (1u64 << 24) as f64 {
        crate::unsupported!("ConvInteger whose sums may exceed 2^24 (f32-exact range)");
    }
    let xf = Tensor::from_f32(x.shape(), xv.iter().map(|&v| v as f32).collect())?;
    let wf = Tensor::from_f32(w.shape(), wv.iter().map(|&v| v as f32).collect())?;
    let y = super::conv::conv(&xf, &wf, None, window, group, None, out_shape)?;
    Tensor::new(out_shape.to_vec(), Data::I32(y.as_f32()?.iter().map(|&v| v as i32).collect()))
}
