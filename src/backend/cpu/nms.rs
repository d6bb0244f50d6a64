//! NonMaxSuppression: per batch and class, the boxes above the score threshold in descending
//! score order, each kept unless its IoU with a box already kept exceeds the threshold.

use crate::error::Result;
use crate::tensor::Tensor;
use crate::bail;

/// Returns `[kept, 3]` int64 rows of (batch, class, box index), batch-major, then class, then
/// the order of selection.
pub fn non_max_suppression(boxes: &Tensor, scores: &Tensor, max_per_class: Option<&Tensor>, iou: Option<&Tensor>, score_min: Option<&Tensor>, center_point_box: bool) -> Result<Tensor> {
    let (bs, ss) = (boxes.shape(), scores.shape());
    let (batches, n, classes) = (bs[0], bs[1], ss[1]);
    let scalar = |t: Option<&Tensor>, what: &str| -> Result<Option<f64>> {
        match t {
            None => Ok(None),
            Some(t) if t.numel() == 1 => Ok(Some(t.to_f64_vec()[0])),
            Some(t) => bail!("{what} must be a single value, has shape {:?}", t.shape()),
        }
    };
    let max_per_class = scalar(max_per_class, "max_output_boxes_per_class")?.unwrap_or(0.0).max(0.0) as usize;
    let iou_threshold = scalar(iou, "iou_threshold")?.unwrap_or(0.0) as f32;
    let score_threshold = scalar(score_min, "score_threshold")?.map(|s| s as f32);
    let (bv, sv) = (boxes.as_f32()?, scores.as_f32()?);
    let corners = |i: usize| -> [f32; 4] {
        let b = &bv[i * 4..i * 4 + 4];
        if center_point_box {
            let (cx, cy, w, h) = (b[0], b[1], b[2], b[3]);
            [cy - h / 2.0, cx - w / 2.0, cy + h / 2.0, cx + w / 2.0]
        } else {
            // Any diagonal pair of corners, in either order.
            [b[0].min(b[2]), b[1].min(b[3]), b[0].max(b[2]), b[1].max(b[3])]
        }
    };
    let iou_of = |a: [f32; 4], b: [f32; 4]| -> f32 {
        let area = |c: [f32; 4]| (c[2] - c[0]) * (c[3] - c[1]);
        let ih = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
        let iw = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
        let inter = ih * iw;
        let union = area(a) + area(b) - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    };
    let mut out: Vec<i64> = Vec::new();
    for b in 0..batches {
        for c in 0..classes {
            if max_per_class == 0 {
                break;
            }
            let row = &sv[(b * classes + c) * n..(b * classes + c + 1) * n];
            let mut order: Vec<usize> = (0..n).filter(|&i| score_threshold.is_none_or(|t| row[i] > t)).collect();
            // Descending score; ties keep the lower index first.
            order.sort_by(|&i, &j| row[j].total_cmp(&row[i]).then(i.cmp(&j)));
            let mut kept: Vec<[f32; 4]> = Vec::new();
            for i in order {
                let bx = corners(b * n + i);
                if kept.iter().all(|&k| iou_of(k, bx) <= iou_threshold) {
                    kept.push(bx);
                    out.extend([b as i64, c as i64, i as i64]);
                    if kept.len() == max_per_class {
                        break;
                    }
                }
            }
        }
    }
    Tensor::from_i64(&[out.len() / 3, 3], out)
}
