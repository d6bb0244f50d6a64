//! CPU pooling (Max / Average / Lp over a window, and the global forms), NCHW f32,
//! parallel over (image, channel) planes.

use crate::error::Result;
use crate::graph::infer::resolve_pads;
use crate::graph::{PoolKind, Window};
use crate::tensor::Tensor;
use crate::bail;
use rayon::prelude::*;

pub fn pool(x: &Tensor, kind: PoolKind, window: &Window, out_shape: &[usize]) -> Result<Tensor> {
    let xs = x.shape();
    let nd = xs.len() - 2;
    if nd > 2 {
        bail!("{nd}-D pooling is not supported on cpu yet");
    }
    let pads = resolve_pads(window, &xs[2..], &window.kernel_shape)?;
    let at = |v: &[usize], i: usize| v.get(i).copied().unwrap_or(1);
    // 1-D pooling runs as 2-D with a unit H axis.
    let (h, w, kh, kw, oh, ow, sh, sw, dh, dw, pt, pl) = if nd == 2 {
        let k = &window.kernel_shape;
        (xs[2], xs[3], k[0], k[1], out_shape[2], out_shape[3], at(&window.strides, 0), at(&window.strides, 1),
         at(&window.dilations, 0), at(&window.dilations, 1), pads[0], pads[1])
    } else {
        (1, xs[2], 1, window.kernel_shape[0], 1, out_shape[2], 1, at(&window.strides, 0), 1, at(&window.dilations, 0), 0, pads[0])
    };
    let (pb, pr) = if nd == 2 { (pads[2], pads[3]) } else { (0, pads[1]) };
    let xv = x.as_f32()?;
    let mut y = vec![0f32; out_shape.iter().product()];
    y.par_chunks_mut(oh * ow).enumerate().for_each(|(p, out)| {
        let src = &xv[p * h * w..(p + 1) * h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut acc, mut cnt) = (match kind { PoolKind::Max => f32::NEG_INFINITY, _ => 0.0 }, 0usize);
                let mut padded_cnt = 0usize;
                for ky in 0..kh {
                    let iy = (oy * sh + ky * dh) as isize - pt as isize;
                    for kx in 0..kw {
                        let ix = (ox * sw + kx * dw) as isize - pl as isize;
                        // Positions inside the explicit padding count for count_include_pad.
                        if iy < (h + pb) as isize && ix < (w + pr) as isize {
                            padded_cnt += 1;
                        }
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let v = src[iy as usize * w + ix as usize];
                        cnt += 1;
                        match kind {
                            PoolKind::Max => acc = if v > acc || v.is_nan() { v } else { acc },
                            PoolKind::Average { .. } => acc += v,
                            PoolKind::Lp { p } => acc += v.abs().powi(p as i32),
                        }
                    }
                }
                out[oy * ow + ox] = match kind {
                    PoolKind::Max => acc,
                    PoolKind::Average { count_include_pad: true } => acc / padded_cnt.max(1) as f32,
                    PoolKind::Average { count_include_pad: false } => acc / cnt.max(1) as f32,
                    PoolKind::Lp { p } => acc.powf(1.0 / p as f32),
                };
            }
        }
    });
    Tensor::from_f32(out_shape, y)
}

pub fn global_pool(x: &Tensor, kind: PoolKind, out_shape: &[usize]) -> Result<Tensor> {
    let xv = x.as_f32()?;
    let plane: usize = x.shape()[2..].iter().product();
    let planes = x.shape()[0] * x.shape()[1];
    let mut y = vec![0f32; planes];
    y.par_iter_mut().enumerate().for_each(|(p, out)| {
        let s = &xv[p * plane..(p + 1) * plane];
        *out = match kind {
            PoolKind::Max => s.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            PoolKind::Average { .. } => s.iter().sum::<f32>() / plane as f32,
            PoolKind::Lp { p } => s.iter().map(|v| v.abs().powi(p as i32)).sum::<f32>().powf(1.0 / p as f32),
        };
    });
    Tensor::from_f32(out_shape, y)
}
