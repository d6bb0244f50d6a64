//! Scaled dot-product Attention (ONNX opset 23): 3-D or 4-D inputs, grouped-query heads,
//! past key/value concatenation, boolean or additive masks, causal masking, softcap, and the
//! optional QK-matmul output. Computed in f32.

use super::fastmath::exp;
use super::elementwise::cast;
use super::layout::{concat, transpose};
use crate::error::Result;
use crate::graph::geometry::RotaryGeometry;
use crate::graph::infer::attention_geometry;
use crate::graph::AttentionAttrs;
use crate::tensor::{broadcast_shapes, strides_of, DType, Tensor};
use crate::bail;

/// [B, S, H*D] -> [B, H, S, D].
fn to_heads(t: &Tensor, heads: usize) -> Result<Tensor> {
    let s = t.shape();
    let r = t.clone().reshaped(vec![s[0], s[1], heads, s[2] / heads])?;
    let shape = vec![s[0], heads, s[1], s[2] / heads];
    transpose(&r, &[0, 2, 1, 3], &shape)
}

pub fn attention(at: &AttentionAttrs, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
    let get = |i: usize| inputs.get(i).copied().flatten();
    let (Some(q), Some(k), Some(v)) = (get(0), get(1), get(2)) else { bail!("Attention needs Q, K and V") };
    let dtype = q.dtype();
    let f = |t: &Tensor| cast(t, DType::F32);
    let g = attention_geometry(at, q.shape(), k.shape(), v.shape(), get(4).map(|p| p.shape()))?;
    let three_d = q.rank() == 3;
    let (q4, k4, v4) = if three_d { (to_heads(&f(q)?, g.q_heads)?, to_heads(&f(k)?, g.kv_heads)?, to_heads(&f(v)?, g.kv_heads)?) } else { (f(q)?, f(k)?, f(v)?) };
    let present = |past: Option<&Tensor>, cur: &Tensor| -> Result<Tensor> {
        match past {
            Some(p) => {
                let p = f(p)?;
                let mut s = cur.shape().to_vec();
                s[2] += p.shape()[2];
                concat(&[&p, cur], 2, &s)
            }
            None => Ok(cur.clone()),
        }
    };
    let (pk, pv) = (present(get(4), &k4)?, present(get(5), &v4)?);
    let (qv, kv, vv) = (q4.as_f32()?, pk.as_f32()?, pv.as_f32()?);
    let (b, hq, sq, d, hk, st, dv) = (g.batch, g.q_heads, g.q_seq, g.head_size, g.kv_heads, g.total_seq, g.v_size);
    let scale = at.scale.unwrap_or(1.0 / (d as f32).sqrt());
    // Additive bias from the mask, broadcast to [B, Hq, Sq, St].
    let full = [b, hq, sq, st];
    let mask = match get(3) {
        None => None,
        Some(m) => {
            let mlen = *m.shape().last().unwrap_or(&st);
            let want = [b, hq, sq, mlen.min(st)];
            let Some(bs) = broadcast_shapes(m.shape(), &want) else { bail!("mask {:?} does not broadcast to {full:?}", m.shape()) };
            if bs != want {
                bail!("mask {:?} does not broadcast to {full:?}", m.shape());
            }
            let add: Vec<f32> = match m.dtype() {
                DType::Bool => m.to_f64_vec().iter().map(|&x| if x != 0.0 { 0.0 } else { f32::NEG_INFINITY }).collect(),
                _ => f(m)?.as_f32()?.to_vec(),
            };
            let ms: Vec<usize> = std::iter::repeat_n(1, 4 - m.rank()).chain(m.shape().iter().copied()).collect();
            let mst = strides_of(&ms);
            let eff: Vec<usize> = (0..4).map(|i| if ms[i] == 1 { 0 } else { mst[i] }).collect();
            Some((add, eff, mlen))
        }
    };
    // External cache: valid key count per batch (keys past it are padding).
    let nonpad = get(6).map(|t| t.to_i64_vec()).transpose()?;
    if nonpad.as_ref().is_some_and(|n| n.len() != b) {
        bail!("nonpad_kv_seqlen must have one entry per batch ({b})");
    }
    let mut y = vec![0f32; b * hq * sq * dv];
    let mut qk_out = vec![0f32; b * hq * sq * st];
    let mut row = vec![0f32; st];
    for bi in 0..b {
        for h in 0..hq {
            let kh = h / (hq / hk);
            for i in 0..sq {
                let qrow = &qv[((bi * hq + h) * sq + i) * d..][..d];
                for (j, r) in row.iter_mut().enumerate() {
                    let krow = &kv[((bi * hk + kh) * st + j) * d..][..d];
                    *r = qrow.iter().zip(krow).map(|(a, c)| a * c).sum::<f32>() * scale;
                }
                let out = &mut qk_out[((bi * hq + h) * sq + i) * st..][..st];
                // Order as the ONNX reference: softcap the logits, then add the bias (mask,
                // causal, sliding window); a row whose bias is all -inf attends to nothing.
                if at.softcap > 0.0 {
                    row.iter_mut().for_each(|r| *r = at.softcap * (*r / at.softcap).tanh());
                }
                // Modes: 0 and 1 expose the (softcapped) logits, 2 adds the bias, 3 the probabilities.
                if at.qk_matmul_output_mode <= 1 {
                    out.copy_from_slice(&row);
                }
                let mut all_masked = true;
                for (j, r) in row.iter_mut().enumerate() {
                    let mut bias = 0.0f32;
                    if let Some((m, e, mlen)) = &mask {
                        // A mask shorter than the keys is padded with "masked".
                        bias += if j < *mlen { m[bi * e[0] + h * e[1] + i * e[2] + j * e[3]] } else { f32::NEG_INFINITY };
                    }
                    // Causal and window masks align each query to its absolute position.
                    let offset = match (&nonpad, g.past_seq) {
                        (Some(n), 0) => n[bi] - sq as i64,
                        _ => g.past_seq as i64,
                    };
                    let diff = i as i64 + offset - j as i64;
                    if nonpad.as_ref().is_some_and(|n| j as i64 >= n[bi]) {
                        bias = f32::NEG_INFINITY;
                    }
                    if at.hides(diff) {
                        bias = f32::NEG_INFINITY;
                    }
                    all_masked &= bias == f32::NEG_INFINITY;
                    *r += bias;
                }
                if at.qk_matmul_output_mode == 2 {
                    out.copy_from_slice(&row);
                }
                if all_masked {
                    row.fill(0.0);
                } else {
                    let mx = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0.0;
                    row.iter_mut().for_each(|r| {
                        *r = exp(*r - mx);
                        sum += *r;
                    });
                    row.iter_mut().for_each(|r| *r /= sum);
                }
                if at.qk_matmul_output_mode == 3 {
                    out.copy_from_slice(&row);
                }
                let yrow = &mut y[((bi * hq + h) * sq + i) * dv..][..dv];
                for (j, &p) in row.iter().enumerate() {
                    let vrow = &vv[((bi * hk + kh) * st + j) * dv..][..dv];
                    yrow.iter_mut().zip(vrow).for_each(|(o, &x)| *o += p * x);
                }
            }
        }
    }
    let mut yt = Tensor::from_f32(&[b, hq, sq, dv], y)?;
    if three_d {
        yt = transpose(&yt, &[0, 2, 1, 3], &[b, sq, hq, dv])?.reshaped(vec![b, sq, hq * dv])?;
    }
    let back = |t: Tensor| cast(&t, dtype);
    Ok(vec![back(yt)?, back(pk)?, back(pv)?, back(Tensor::from_f32(&[b, hq, sq, st], qk_out)?)?])
}

/// RotaryEmbedding (opset 23): rotates the first `rotary_dim` features of every head by the
/// cached cos/sin of its position, in halves or interleaved pairs.
pub fn rotary_embedding(x: &Tensor, cos: &Tensor, sin: &Tensor, positions: Option<&Tensor>, interleaved: bool, rotary_dim: usize, num_heads: usize) -> Result<Tensor> {
    let dtype = x.dtype();
    let xf = cast(x, DType::F32)?;
    let (cf, sf) = (cast(cos, DType::F32)?, cast(sin, DType::F32)?);
    let (xv, cv, sv) = (xf.as_f32()?, cf.as_f32()?, sf.as_f32()?);
    let s = x.shape();
    let RotaryGeometry { batch: b, heads: h, seq: sq, head: d, half, heads_first: four_d } = RotaryGeometry::new(s, cos.shape(), rotary_dim, num_heads)?;
    let pos = positions.map(|p| p.to_i64_vec()).transpose()?;
    let mut y = xv.to_vec();
    for bi in 0..b {
        for hi in 0..h {
            for t in 0..sq {
                let base = if four_d { ((bi * h + hi) * sq + t) * d } else { ((bi * sq + t) * h + hi) * d };
                let row = match &pos {
                    Some(p) => {
                        let q = p[bi * sq + t];
                        if q < 0 || (q as usize + 1) * half > cv.len() {
                            bail!("position {q} outside the cos/sin cache {:?}", cos.shape());
                        }
                        q as usize
                    }
                    None => bi * sq + t,
                };
                let (c, sn) = (&cv[row * half..][..half], &sv[row * half..][..half]);
                for i in 0..half {
                    let (a, bidx) = if interleaved { (base + 2 * i, base + 2 * i + 1) } else { (base + i, base + i + half) };
                    let (x1, x2) = (xv[a], xv[bidx]);
                    y[a] = x1 * c[i] - x2 * sn[i];
                    y[bidx] = x2 * c[i] + x1 * sn[i];
                }
            }
        }
    }
    cast(&Tensor::from_f32(s, y)?, dtype)
}
