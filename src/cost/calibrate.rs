//! Calibration: corrections fitted on real models' measured node times, stored in the profile:
//! per op class, then per class over the work's size, then per op type. Classes a model never
//! exercised keep factor 1 (the roofline and the micro-benchmarks' op factors alone).

use super::fidelity::ModelMeasurement;
use super::profile::log_interpolate;
use super::{DeviceProfile, OpClass, Roofline};
use std::collections::BTreeMap;

/// Factors are kept in this range: a fit outside it means a broken measurement, not a device.
const FACTOR_RANGE: (f64, f64) = (0.02, 50.0);

/// The share of all calibration time at which a class's own fit counts half.
const SHRINK_SHARE: f64 = 0.02;

/// Sizes within this ratio fall in one bin of a class's size fit.
const SIZE_BIN: f64 = 8.0;

/// One measured node: its class, op type, size (FLOPs or bytes, as its class's curve), measured
/// ms and the uncalibrated prediction.
struct Sample {
    class: OpClass,
    op_type: String,
    size: f64,
    measured: f64,
    predicted: f64,
}

fn samples(profile: &DeviceProfile, measurements: &[ModelMeasurement]) -> Vec<Sample> {
    let mut v = vec![];
    for m in measurements.iter().filter(|m| m.device == profile.device) {
        for n in &m.nodes {
            let Some(class) = n.work.class else { continue };
            let predicted = Roofline::base_ms(profile, &n.work, &n.op_type);
            if predicted <= 0.0 || n.measured_ms <= 0.0 {
                continue;
            }
            let size = if class.compute_bound() { n.work.flops } else { n.work.bytes };
            v.push(Sample { class, op_type: n.op_type.clone(), size, measured: n.measured_ms, predicted });
        }
    }
    v
}

/// Measured over predicted, shrunk toward 1 in log space by `m / (m + shrink)`.
fn shrunk_ratio(measured: f64, predicted: f64, shrink: f64) -> f64 {
    let trust = measured / (measured + shrink);
    ((measured / predicted).ln() * trust).exp().clamp(FACTOR_RANGE.0, FACTOR_RANGE.1)
}

/// One factor per op class: measured over predicted time summed over the class's nodes (so
/// the nodes that dominate a model's time dominate its fit). A class that took a sliver of the
/// calibration models' time is weak evidence for models where it dominates: its factor is
/// shrunk toward 1 in log space by w / (w + 2% of all).
fn fit_classes(samples: &[Sample]) -> BTreeMap<OpClass, f64> {
    let mut acc: BTreeMap<OpClass, (f64, f64)> = BTreeMap::new();
    for s in samples {
        let e = acc.entry(s.class).or_default();
        e.0 += s.measured;
        e.1 += s.predicted;
    }
    let total: f64 = acc.values().map(|(m, _)| m).sum();
    acc.into_iter().map(|(c, (m, p))| (c, shrunk_ratio(m, p, SHRINK_SHARE * total))).collect()
}

/// Per class, the residual after its factor over the work's size: nodes binned by size (a bin
/// spans a factor of [`SIZE_BIN`]), each bin's measured over predicted, shrunk toward 1 by the
/// bin's share of the class's time, placed at the bin's time-weighted mean size. Only classes
/// with two or more bins get points: one bin is what the class factor already says.
fn fit_sizes(samples: &[Sample], classes: &BTreeMap<OpClass, f64>) -> BTreeMap<OpClass, Vec<(f64, f64)>> {
    let mut by_class: BTreeMap<OpClass, Vec<&Sample>> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.size > 0.0) {
        by_class.entry(s.class).or_default().push(s);
    }
    let mut out = BTreeMap::new();
    for (class, mut v) in by_class {
        let f = classes.get(&class).copied().unwrap_or(1.0);
        v.sort_by(|a, b| a.size.total_cmp(&b.size));
        let class_total: f64 = v.iter().map(|s| s.measured).sum();
        let mut points = vec![];
        let mut i = 0;
        while i < v.len() {
            let start = v[i].size;
            let (mut m, mut p, mut log_size) = (0.0, 0.0, 0.0);
            while i < v.len() && v[i].size < start * SIZE_BIN {
                m += v[i].measured;
                p += v[i].predicted * f;
                log_size += v[i].measured * v[i].size.ln();
                i += 1;
            }
            points.push(((log_size / m).exp(), shrunk_ratio(m, p, SHRINK_SHARE * class_total)));
        }
        if points.len() >= 2 {
            out.insert(class, points);
        }
    }
    out
}

/// One factor per op type on top of the class and size corrections: measured over predicted
/// summed over the op type's nodes (an op type is specific evidence, so it is not shrunk).
fn fit_ops(samples: &[Sample], classes: &BTreeMap<OpClass, f64>, sizes: &BTreeMap<OpClass, Vec<(f64, f64)>>) -> BTreeMap<String, f64> {
    let mut acc: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for s in samples {
        let f = classes.get(&s.class).copied().unwrap_or(1.0) * sizes.get(&s.class).map(|p| log_interpolate(p, s.size)).unwrap_or(1.0);
        let e = acc.entry(s.op_type.clone()).or_default();
        e.0 += s.measured;
        e.1 += s.predicted * f;
    }
    acc.into_iter().filter(|(_, (m, p))| *p > 0.0 && *m > 0.0).map(|(op, (m, p))| (op, (m / p).clamp(FACTOR_RANGE.0, FACTOR_RANGE.1))).collect()
}

/// Fits and stores the corrections (replacing earlier ones for the classes and op types these
/// models exercise).
pub fn apply(profile: &mut DeviceProfile, measurements: &[ModelMeasurement]) {
    let samples = samples(profile, measurements);
    let classes = fit_classes(&samples);
    let sizes = fit_sizes(&samples, &classes);
    let ops = fit_ops(&samples, &classes, &sizes);
    profile.calibration.extend(classes);
    profile.size_calibration.extend(sizes);
    profile.op_calibration.extend(ops);
    for m in measurements.iter().filter(|m| m.device == profile.device) {
        let name = format!("{} (batch {})", m.model, m.batch);
        if !profile.calibrated_on.contains(&name) {
            profile.calibrated_on.push(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(class: OpClass, size: f64, measured: f64, predicted: f64) -> Sample {
        Sample { class, op_type: "Conv".into(), size, measured, predicted }
    }

    #[test]
    fn fits_by_hand() {
        // Conv: small nodes run 2x their prediction, large ones 0.5x; equal time in each.
        let s = vec![sample(OpClass::Conv, 1e6, 2.0, 1.0), sample(OpClass::Conv, 2e6, 2.0, 1.0), sample(OpClass::Conv, 1e9, 2.0, 4.0)];
        let classes = fit_classes(&s);
        // Summed: 6 measured over 6 predicted (the only class: no shrinking worth the name).
        let shrink = SHRINK_SHARE * 6.0;
        assert!((classes[&OpClass::Conv] - 1.0f64.powf(6.0 / (6.0 + shrink))).abs() < 1e-12);
        let sizes = fit_sizes(&s, &classes);
        let p = &sizes[&OpClass::Conv];
        assert_eq!(p.len(), 2, "1e6 and 2e6 share a bin, 1e9 is another: {p:?}");
        // First bin: 4 over 2, at the geometric mean of its sizes (equal weights).
        let expect = |ratio: f64, m: f64| (ratio.ln() * m / (m + shrink)).exp();
        assert!((p[0].0 - (2e12f64).sqrt()).abs() < 1e-3 && (p[0].1 - expect(2.0, 4.0)).abs() < 1e-12, "{p:?}");
        assert!((p[1].0 - 1e9).abs() < 1e-3 && (p[1].1 - expect(0.5, 2.0)).abs() < 1e-12, "{p:?}");
        // Between the bins the factor runs log–log; beyond them it holds.
        let mid = (p[0].0 * p[1].0).sqrt();
        assert!((log_interpolate(p, mid) - (p[0].1 * p[1].1).sqrt()).abs() < 1e-12);
        assert_eq!(log_interpolate(p, 1.0), p[0].1);
        assert_eq!(log_interpolate(p, 1e12), p[1].1);
        // A class seen at one size gets no size points.
        let one = vec![sample(OpClass::Pool, 1e6, 3.0, 1.0)];
        assert!(fit_sizes(&one, &fit_classes(&one)).is_empty());
    }
}
