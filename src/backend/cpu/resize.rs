//! Resize (and Upsample): nearest, linear and cubic, every coordinate-transformation mode, with
//! antialiasing, exclude_outside and tf_crop_and_resize extrapolation. Applied one axis at a
//! time from per-output-position tap tables (index, weight).

use crate::error::Result;
use crate::graph::{ResizeAttrs, ResizeMode};
pub use crate::graph::infer::resize_plan;
use crate::tensor::{Data, DType, Tensor};
use crate::unsupported;

fn cubic(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// Taps for each output position along one axis; `None` marks a position outside the
/// tf_crop_and_resize box (it takes the extrapolation value).
fn axis_taps(attrs: &ResizeAttrs, in_len: usize, out_len: usize, scale: f64, roi: (f64, f64)) -> Result<Vec<Option<Vec<(usize, f64)>>>> {
    let n = in_len as f64;
    // Each position holds a small vector of (source, weight) taps: up to 4 per axis (cubic).
    let per = std::mem::size_of::<Option<Vec<(usize, f64)>>>() + 4 * std::mem::size_of::<(usize, f64)>();
    crate::budget::check_side_buffer((out_len as u64).saturating_mul(per as u64), "Resize's tap table")?;
    let mut all = crate::budget::try_with_capacity(out_len, "Resize tap table")?;
    for o in 0..out_len {
        let x = o as f64;
        let xo = match attrs.coord.as_str() {
            "half_pixel" => (x + 0.5) / scale - 0.5,
            "half_pixel_symmetric" => {
                let adj = out_len as f64 / (scale * n);
                let offset = n / 2.0 * (1.0 - adj);
                offset + (x + 0.5) / scale - 0.5
            }
            "pytorch_half_pixel" => if out_len > 1 { (x + 0.5) / scale - 0.5 } else { 0.0 },
            // The reference divides by the unrounded resized length (scale * n).
            "align_corners" => if out_len == 1 { 0.0 } else { x * (n - 1.0) / (scale * n - 1.0) },
            "asymmetric" => x / scale,
            "tf_crop_and_resize" => {
                let (s, e) = roi;
                let v = if out_len > 1 { s * (n - 1.0) + x * (e - s) * (n - 1.0) / (out_len as f64 - 1.0) } else { 0.5 * (s + e) * (n - 1.0) };
                if v < 0.0 || v > n - 1.0 {
                    all.push(None);
                    continue;
                }
                v
            }
            m => unsupported!("coordinate_transformation_mode {m}"),
        };
        let clamp = |i: i64| i.clamp(0, in_len as i64 - 1) as usize;
        let taps = match attrs.mode {
            ResizeMode::Nearest => {
                let f = xo.floor();
                let frac = xo - f;
                let i = match attrs.nearest.as_str() {
                    "round_prefer_floor" => if frac == 0.5 { f } else { xo.round() },
                    "round_prefer_ceil" => if frac == 0.5 { f + 1.0 } else { xo.round() },
                    "floor" => f,
                    "ceil" => xo.ceil(),
                    m => unsupported!("nearest_mode {m}"),
                };
                vec![(clamp(i as i64), 1.0)]
            }
            ResizeMode::Linear | ResizeMode::Cubic => {
                let s = if attrs.antialias && scale < 1.0 { scale } else { 1.0 };
                let base = xo.floor();
                let ratio = xo - base;
                let reach = if attrs.mode == ResizeMode::Linear { 1.0 } else { 2.0 };
                let start = (-reach / s).floor() as i64 + 1;
                let footprint = 2 - 2 * start;
                let mut t: Vec<(i64, f64)> = (start..start + footprint)
                    .map(|k| {
                        let arg = (k as f64 - ratio) * s;
                        let w = if attrs.mode == ResizeMode::Linear { (1.0 - arg.abs()).max(0.0) } else { cubic(arg, attrs.cubic_a) };
                        (base as i64 + k, w)
                    })
                    .collect();
                if attrs.exclude_outside {
                    t.iter_mut().for_each(|(i, w)| if *i < 0 || *i >= in_len as i64 { *w = 0.0 });
                }
                let sum: f64 = t.iter().map(|p| p.1).sum();
                t.into_iter().filter(|p| p.1 != 0.0).map(|(i, w)| (clamp(i), if sum != 0.0 { w / sum } else { w })).collect()
            }
        };
        all.push(Some(taps));
    }
    Ok(all)
}

/// Whether the resize leaves axis `d` alone.
fn untouched(attrs: &ResizeAttrs, in_len: usize, out_len: usize, scale: f64) -> bool {
    out_len == in_len && scale == 1.0 && attrs.coord != "tf_crop_and_resize"
}

/// The region of interest of axis `d` of a rank-`r` input (all of it without a roi).
fn axis_box(attrs: &ResizeAttrs, roi: Option<&[f64]>, r: usize, d: usize) -> Result<(f64, f64)> {
    Ok(match roi {
        Some(v) if !v.is_empty() => {
            let axes: Vec<usize> = match &attrs.axes {
                Some(a) => a.iter().map(|&v| crate::tensor::norm_axis(v, r)).collect::<Result<_>>()?,
                None => (0..r).collect(),
            };
            let k = axes.iter().position(|&a| a == d).unwrap_or(d);
            let na = v.len() / 2;
            (*v.get(k).unwrap_or(&0.0), *v.get(k + na).unwrap_or(&1.0))
        }
        _ => (0.0, 1.0),
    })
}

/// The tap table of each resized axis (`None` for axes left alone), for a device that applies
/// them one axis at a time: `(taps per position, [source, weight] pairs as f32)`, padded with
/// zero weights; a position outside the input (tf_crop_and_resize) has source -1 throughout.
pub fn axis_tables(attrs: &ResizeAttrs, roi: Option<&[f64]>, in_shape: &[usize], out_shape: &[usize], scales: &[f64]) -> Result<Vec<Option<(usize, Vec<f32>)>>> {
    let r = in_shape.len();
    let mut all = Vec::with_capacity(r);
    for d in 0..r {
        if untouched(attrs, in_shape[d], out_shape[d], scales[d]) {
            all.push(None);
            continue;
        }
        let taps = axis_taps(attrs, in_shape[d], out_shape[d], scales[d], axis_box(attrs, roi, r, d)?)?;
        let width = taps.iter().flatten().map(Vec::len).max().unwrap_or(1).max(1);
        let mut table = Vec::with_capacity(taps.len() * width * 2);
        for t in &taps {
            for k in 0..width {
                match t {
                    None => table.extend([-1.0, 0.0]),
                    Some(t) => table.extend(t.get(k).map_or([0.0, 0.0], |&(i, w)| [i as f32, w as f32])),
                }
            }
        }
        all.push(Some((width, table)));
    }
    Ok(all)
}

pub fn resize(x: &Tensor, attrs: &ResizeAttrs, roi: Option<&[f64]>, out_shape: &[usize], scales: &[f64]) -> Result<Tensor> {
    if x.dtype() == DType::F32 {
        return resize_f32(x, attrs, roi, out_shape, scales);
    }
    let r = x.rank();
    let mut cur: Vec<f64> = x.to_f64_vec();
    let mut shape = x.shape().to_vec();
    for d in 0..r {
        if untouched(attrs, shape[d], out_shape[d], scales[d]) {
            continue;
        }
        let taps = axis_taps(attrs, shape[d], out_shape[d], scales[d], axis_box(attrs, roi, r, d)?)?;
        let outer: usize = shape[..d].iter().product();
        let inner: usize = shape[d + 1..].iter().product();
        let mut next = crate::budget::try_filled(outer * out_shape[d] * inner, 0f64, "Resize")?;
        for o in 0..outer {
            for (j, t) in taps.iter().enumerate() {
                let dst = &mut next[(o * out_shape[d] + j) * inner..][..inner];
                match t {
                    None => dst.fill(attrs.extrapolation as f64),
                    Some(t) => {
                        for &(i, w) in t {
                            let src = &cur[(o * shape[d] + i) * inner..][..inner];
                            dst.iter_mut().zip(src).for_each(|(a, &b)| *a += w * b);
                        }
                    }
                }
            }
        }
        cur = next;
        shape[d] = out_shape[d];
    }
    let t = Tensor::new(shape, Data::F64(cur))?;
    if matches!(x.dtype(), DType::U8 | DType::I8 | DType::I32 | DType::I64) && attrs.mode != ResizeMode::Nearest {
        // Integer images round to nearest, as the reference does.
        let v: Vec<f64> = t.to_f64_vec().iter().map(|v| v.round()).collect();
        return super::elementwise::cast(&Tensor::new(t.shape().to_vec(), Data::F64(v))?, x.dtype());
    }
    super::elementwise::cast(&t, x.dtype())
}

/// f32 images, the common case: the same tap tables applied in f32, in parallel over the outer
/// rows; an axis with whole rows below it blends rows (vectorised), the last axis gathers.
fn resize_f32(x: &Tensor, attrs: &ResizeAttrs, roi: Option<&[f64]>, out_shape: &[usize], scales: &[f64]) -> Result<Tensor> {
    use rayon::prelude::*;
    let r = x.rank();
    let mut cur: Vec<f32> = x.as_f32()?.to_vec();
    let mut shape = x.shape().to_vec();
    // The last axis resized writes the output.
    let last = (0..r).rev().find(|&d| !untouched(attrs, shape[d], out_shape[d], scales[d]));
    for d in 0..r {
        if untouched(attrs, shape[d], out_shape[d], scales[d]) {
            continue;
        }
        let taps = axis_taps(attrs, shape[d], out_shape[d], scales[d], axis_box(attrs, roi, r, d)?)?;
        let taps: Vec<Option<Vec<(usize, f32)>>> = taps.into_iter().map(|t| t.map(|t| t.into_iter().map(|(i, w)| (i, w as f32)).collect())).collect();
        let (len, out_len) = (shape[d], out_shape[d]);
        let inner: usize = shape[d + 1..].iter().product();
        let n = shape[..d].iter().product::<usize>() * out_len * inner;
        let mut next = if Some(d) == last && super::arena::on_offer() { super::arena::output_zeroed(n) } else { crate::budget::try_filled(n, 0f32, "Resize")? };
        if cur.is_empty() || next.is_empty() {
            // Nothing to read from (or to write): the output keeps its zeros.
            (cur, shape[d]) = (next, out_len);
            continue;
        }
        let fill = attrs.extrapolation;
        let chunk = (out_len * inner).max(1);
        let min_len = super::conv::min_tasks(chunk * taps.iter().flatten().map(Vec::len).max().unwrap_or(1));
        next.par_chunks_mut(chunk).zip(cur.par_chunks(len * inner)).with_min_len(super::threads::min_len(min_len)).for_each(|(dst, src)| {
            for (t, row) in taps.iter().zip(dst.chunks_mut(inner.max(1))) {
                match t {
                    None => row.fill(fill),
                    Some(t) if inner == 1 => row[0] = t.iter().map(|&(i, w)| w * src[i]).sum(),
                    Some(t) => {
                        for &(i, w) in t {
                            super::simd::axpy(row, &src[i * inner..(i + 1) * inner], 1, w);
                        }
                    }
                }
            }
        });
        cur = next;
        shape[d] = out_len;
    }
    Tensor::from_f32(&shape, cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The f32 path (parallel, row blends and gathers) against the f64 one on the same values,
    /// over modes, coordinate transformations, up- and down-scaling, ragged sizes and a crop box
    /// with extrapolation.
    #[test]
    fn the_f32_path_matches_the_f64_path() {
        let mut rng = crate::test_values::Rng::new(2);
        let mut next = move || rng.uniform(-0.5, 0.5);
        let modes = [(ResizeMode::Nearest, "asymmetric", false), (ResizeMode::Linear, "half_pixel", false), (ResizeMode::Linear, "align_corners", false),
            (ResizeMode::Cubic, "pytorch_half_pixel", false), (ResizeMode::Linear, "half_pixel", true), (ResizeMode::Linear, "tf_crop_and_resize", false)];
        for (case, &(mode, coord, antialias)) in modes.iter().enumerate() {
            for (in_hw, out_hw) in [([7usize, 5usize], [15usize, 11usize]), ([9, 13], [4, 6]), ([3, 3], [3, 8])] {
                let in_shape = [2, 3, in_hw[0], in_hw[1]];
                let out_shape = [2, 3, out_hw[0], out_hw[1]];
                let scales: Vec<f64> = in_shape.iter().zip(&out_shape).map(|(&i, &o)| o as f64 / i as f64).collect();
                let attrs = ResizeAttrs { mode, coord: coord.into(), nearest: "round_prefer_floor".into(), cubic_a: -0.75, exclude_outside: false, extrapolation: 7.5,
                    antialias, axes: None, aspect: "stretch".into(), scales_input: 2 };
                let roi = [0.0, 0.0, 0.2, 0.1, 1.0, 1.0, 1.1, 0.8];
                let roi = (coord == "tf_crop_and_resize").then_some(&roi[..]);
                let x: Vec<f32> = (0..in_shape.iter().product()).map(|_| next()).collect();
                let got = resize(&Tensor::from_f32(&in_shape, x.clone()).unwrap(), &attrs, roi, &out_shape, &scales).unwrap();
                let wide = Tensor::new(in_shape.to_vec(), Data::F64(x.iter().map(|&v| v as f64).collect())).unwrap();
                let want = resize(&wide, &attrs, roi, &out_shape, &scales).unwrap().to_f64_vec();
                assert_eq!(got.shape(), &out_shape[..]);
                for (i, (g, w)) in got.as_f32().unwrap().iter().zip(&want).enumerate() {
                    assert!((*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()), "case {case} {mode:?} {coord} {in_hw:?} -> {out_hw:?} at {i}: got {g}, want {w}");
                }
            }
        }
    }
}
