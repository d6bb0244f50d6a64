//! Sampling an image at computed positions: GridSample over any number of spatial dims: nearest, linear (2 taps per dim) and cubic
//! (4 taps per dim, Keys' a = -0.75), with zeros / border / reflection padding, following the
//! ONNX operator definition; AffineGrid, which makes such grids; and RoiAlign, bilinear samples averaged (or maxed) over the bins of
//! each region of interest.

use crate::error::Result;
use crate::graph::{GridInterp, GridPadding, GridSampleAttrs, RoiAlignAttrs};
use crate::tensor::{strides_of, Tensor};
use crate::bail;

pub fn grid_sample(x: &Tensor, grid: &Tensor, at: &GridSampleAttrs, out_shape: &[usize]) -> Result<Tensor> {
    let xs = x.shape();
    let r = xs.len() - 2;
    let dims = &xs[2..];
    if dims.iter().any(|&d| d == 0) && out_shape.iter().product::<usize>() > 0 {
        bail!("cannot sample an empty input {xs:?}");
    }
    let (xv, gv) = (x.as_f32()?, grid.as_f32()?);
    let (n, c) = (xs[0], xs[1]);
    let in_plane: usize = dims.iter().product();
    let out_sp = &out_shape[2..];
    let out_plane: usize = out_sp.iter().product();
    let st = strides_of(dims);
    // The sampling range per dim: pixel centres (align_corners) or pixel edges.
    let (lo, hi): (Vec<f32>, Vec<f32>) = dims.iter().map(|&d| if at.align_corners { (0.0, d as f32 - 1.0) } else { (-0.5, d as f32 - 0.5) }).unzip();
    let taps = match at.mode {
        GridInterp::Nearest => 1,
        GridInterp::Linear => 2,
        GridInterp::Cubic => 4,
    };
    if r > 6 {
        // taps^r reads per output element.
        crate::unsupported!("GridSample over {r} spatial dims");
    }
    let mut y = vec![0f32; out_shape.iter().product()];
    // Per output position: for each dim, the tap indices and weights.
    let mut idx = vec![0i64; r * taps];
    let mut wts = vec![0f32; r * taps];
    for b in 0..n {
        for o in 0..out_plane {
            let g = &gv[(b * out_plane + o) * r..(b * out_plane + o + 1) * r];
            for i in 0..r {
                // The grid lists coordinates innermost dim first (x, y, z).
                let norm = g[r - 1 - i];
                let d = dims[i] as f32;
                let mut v = if at.align_corners { (norm + 1.0) / 2.0 * (d - 1.0) } else { ((norm + 1.0) * d - 1.0) / 2.0 };
                if at.mode == GridInterp::Nearest {
                    // Half to even, as PyTorch's nearbyint (the suite's 3-D expectations agree,
                    // though the ONNX reference comments suggest rounding away from zero there).
                    v = v.round_ties_even();
                }
                if v < lo[i] || v > hi[i] {
                    v = match at.padding {
                        GridPadding::Border => v.clamp(0.0, d - 1.0),
                        GridPadding::Reflection => reflect(v, lo[i], hi[i]),
                        GridPadding::Zeros => v,
                    };
                }
                let (ti, tw) = (&mut idx[i * taps..(i + 1) * taps], &mut wts[i * taps..(i + 1) * taps]);
                match at.mode {
                    GridInterp::Nearest => {
                        ti[0] = v as i64;
                        tw[0] = 1.0;
                    }
                    GridInterp::Linear => {
                        let f = v.floor();
                        (ti[0], ti[1]) = (f as i64, f as i64 + 1);
                        (tw[0], tw[1]) = (1.0 - (v - f), v - f);
                    }
                    GridInterp::Cubic => {
                        let f = v.floor();
                        for (k, (t, w)) in ti.iter_mut().zip(tw.iter_mut()).enumerate() {
                            *t = f as i64 - 1 + k as i64;
                            *w = cubic_weight(v - f, k);
                        }
                    }
                }
            }
            for ch in 0..c {
                let src = &xv[(b * c + ch) * in_plane..(b * c + ch + 1) * in_plane];
                let mut acc = 0f32;
                // Every combination of one tap per dim (taps^r of them).
                for combo in 0..taps.pow(r as u32) {
                    let (mut w, mut off, mut rest) = (1f32, Some(0usize), combo);
                    for i in (0..r).rev() {
                        let k = rest % taps;
                        rest /= taps;
                        w *= wts[i * taps + k];
                        let at_dim = pixel_index(idx[i * taps + k], dims[i], lo[i], hi[i], at.padding);
                        off = match (off, at_dim) {
                            (Some(o), Some(p)) => Some(o + p * st[i]),
                            _ => None,
                        };
                    }
                    if let Some(o) = off {
                        acc += w * src[o];
                    }
                }
                y[((b * c + ch) * out_plane) + o] = acc;
            }
        }
    }
    Tensor::from_f32(out_shape, y)
}

/// Where tap `i` of a dim of size `d` reads under the padding mode; `None` reads a zero.
fn pixel_index(i: i64, d: usize, lo: f32, hi: f32, padding: GridPadding) -> Option<usize> {
    match padding {
        GridPadding::Zeros => (i >= 0 && (i as usize) < d).then_some(i as usize),
        GridPadding::Border => Some(i.clamp(0, d as i64 - 1) as usize),
        GridPadding::Reflection => Some((reflect(i as f32, lo, hi) as i64).clamp(0, d as i64 - 1) as usize),
    }
}

/// Reflects `x` off the nearer border of `[lo, hi]` until it lies inside.
fn reflect(x: f32, lo: f32, hi: f32) -> f32 {
    let range = hi - lo;
    if range <= 0.0 {
        return lo;
    }
    let (dx, from_lo) = if x < lo { (lo - x, true) } else if x > hi { (x - hi, false) } else { return x };
    let flips = (dx / range).floor();
    let rem = dx - flips * range;
    // An even number of whole flips leaves the point on the side it left from.
    if (flips as i64 % 2 == 0) == from_lo { lo + rem } else { hi - rem }
}

/// Keys' cubic convolution weight of tap `k` (at offsets -1, 0, 1, 2) for fraction `t`.
fn cubic_weight(t: f32, k: usize) -> f32 {
    const A: f32 = -0.75;
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    match k {
        0 => far(t + 1.0),
        1 => near(t),
        2 => near(1.0 - t),
        _ => far(2.0 - t),
    }
}

/// RoiAlign: X [N, C, H, W], rois [R, 4] as (x1, y1, x2, y2) in input coordinates (times
/// `spatial_scale`), batch_indices [R]; output [R, C, output_height, output_width].
pub fn roi_align(x: &Tensor, rois: &Tensor, batch_indices: &Tensor, at: &RoiAlignAttrs, out_shape: &[usize]) -> Result<Tensor> {
    let xs = x.shape();
    let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
    let (xv, rv, bi) = (x.as_f32()?, rois.to_f64_vec(), batch_indices.to_i64_vec()?);
    let (oh, ow) = (at.output_height, at.output_width);
    let mut y = vec![0f32; out_shape.iter().product()];
    let offset = if at.half_pixel { 0.5 } else { 0.0 };
    for (r, &b) in bi.iter().enumerate() {
        if b < 0 || b as usize >= n {
            bail!("batch index {b} of roi {r} is outside the {n} images");
        }
        let roi = &rv[r * 4..r * 4 + 4];
        let s = at.spatial_scale as f64;
        let (x0, y0) = (roi[0] * s - offset, roi[1] * s - offset);
        let (mut rw, mut rh) = (roi[2] * s - offset - x0, roi[3] * s - offset - y0);
        if !at.half_pixel {
            (rw, rh) = (rw.max(1.0), rh.max(1.0));
        }
        let (bw, bh) = (rw / ow as f64, rh / oh as f64);
        let gh = if at.sampling_ratio > 0 { at.sampling_ratio } else { bh.ceil().max(0.0) as usize };
        let gw = if at.sampling_ratio > 0 { at.sampling_ratio } else { bw.ceil().max(0.0) as usize };
        if gh.saturating_mul(gw) > 1 << 16 {
            bail!("roi {r} {roi:?} asks for {gh} x {gw} samples per bin (more than 65536)");
        }
        let count = (gh * gw).max(1) as f32;
        for ch in 0..c {
            let plane = &xv[(b as usize * c + ch) * h * w..(b as usize * c + ch + 1) * h * w];
            for py in 0..oh {
                for px in 0..ow {
                    let mut acc: Option<f32> = None;
                    for iy in 0..gh {
                        let sy = y0 + py as f64 * bh + (iy as f64 + 0.5) * bh / gh as f64;
                        for ix in 0..gw {
                            let sx = x0 + px as f64 * bw + (ix as f64 + 0.5) * bw / gw as f64;
                            let taps = bilinear_taps(sy, sx, h, w);
                            let v = if at.avg {
                                taps.iter().map(|&(i, wt)| wt * plane[i]).sum::<f32>()
                            } else {
                                taps.iter().map(|&(i, wt)| wt * plane[i]).fold(f32::NEG_INFINITY, f32::max)
                            };
                            acc = Some(match acc {
                                None => v,
                                Some(a) if at.avg => a + v,
                                Some(a) => a.max(v),
                            });
                        }
                    }
                    let v = acc.unwrap_or(0.0);
                    y[((r * c + ch) * oh + py) * ow + px] = if at.avg { v / count } else { v };
                }
            }
        }
    }
    Tensor::from_f32(out_shape, y)
}

/// The four (index, weight) taps of a bilinear sample at (y, x), as RoiAlign defines them:
/// zero weights beyond one pixel outside the image, coordinates clamped at the far edge.
fn bilinear_taps(y: f64, x: f64, h: usize, w: usize) -> [(usize, f32); 4] {
    if y < -1.0 || y > h as f64 || x < -1.0 || x > w as f64 || h == 0 || w == 0 {
        return [(0, 0.0); 4];
    }
    let axis = |v: f64, size: usize| -> (usize, usize, f64) {
        let v = v.max(0.0);
        let lo = v as usize;
        if lo >= size - 1 { (size - 1, size - 1, 0.0) } else { (lo, lo + 1, v - lo as f64) }
    };
    let ((y0, y1, ly), (x0, x1, lx)) = (axis(y, h), axis(x, w));
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    [(y0 * w + x0, (hy * hx) as f32), (y0 * w + x1, (hy * lx) as f32), (y1 * w + x0, (ly * hx) as f32), (y1 * w + x1, (ly * lx) as f32)]
}

/// AffineGrid: theta [N, r, r + 1] maps each output position's normalised coordinates
/// (x, y[, z], 1) to a sampling position; output [N, spatial..., r] (r = 2 or 3).
pub fn affine_grid(theta: &Tensor, align_corners: bool, out_shape: &[usize]) -> Result<Tensor> {
    let r = out_shape.len() - 2;
    let spatial = &out_shape[1..=r];
    let tv = theta.as_f32()?;
    // Normalised coordinate of index i along an axis of `size` points.
    let coord = |i: usize, size: usize| -> f32 {
        if align_corners {
            if size > 1 { -1.0 + 2.0 * i as f32 / (size - 1) as f32 } else { -1.0 }
        } else {
            -1.0 + (2 * i + 1) as f32 / size as f32
        }
    };
    let positions: usize = spatial.iter().product();
    let st = strides_of(spatial);
    let mut y = Vec::with_capacity(out_shape.iter().product());
    for b in 0..out_shape[0] {
        let t = &tv[b * r * (r + 1)..(b + 1) * r * (r + 1)];
        for p in 0..positions {
            // Homogeneous base point, innermost axis first (x, y, z, 1).
            let mut base: Vec<f32> = (0..r).map(|k| { let d = r - 1 - k; coord((p / st[d]) % spatial[d], spatial[d]) }).collect();
            base.push(1.0);
            for row in t.chunks(r + 1) {
                y.push(row.iter().zip(&base).map(|(a, b)| a * b).sum());
            }
        }
    }
    Tensor::from_f32(out_shape, y)
}
