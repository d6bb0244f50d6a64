//! Calibration: per-op-class corrections fitted on real models' measured node times, stored in
//! the profile. Classes a model never exercised keep factor 1 (the roofline alone).

use super::fidelity::ModelMeasurement;
use super::{DeviceProfile, OpClass, Roofline};
use std::collections::BTreeMap;

/// Factors are kept in this range: a fit outside it means a broken measurement, not a device.
const FACTOR_RANGE: (f64, f64) = (0.02, 50.0);

/// Fits one factor per op class: measured over predicted time summed over the class's nodes
/// (so the calibration models' per-class totals, and their whole times, come out exact, and
/// the nodes that dominate a model's time dominate its fit), with the roofline's uncalibrated
/// predictions.
pub fn fit(profile: &DeviceProfile, measurements: &[ModelMeasurement]) -> BTreeMap<OpClass, f64> {
    let mut acc: BTreeMap<OpClass, (f64, f64)> = BTreeMap::new();
    for m in measurements.iter().filter(|m| m.device == profile.device) {
        for n in &m.nodes {
            let Some(class) = n.work.class else { continue };
            let predicted = Roofline::work_ms(profile, &n.work);
            if predicted <= 0.0 || n.measured_ms <= 0.0 {
                continue;
            }
            let e = acc.entry(class).or_default();
            e.0 += n.measured_ms;
            e.1 += predicted;
        }
    }
    // A class that took a sliver of the calibration models' time is weak evidence for models
    // where it dominates: its factor is shrunk toward 1 in log space by w / (w + 2% of all).
    let total: f64 = acc.values().map(|(m, _)| m).sum();
    acc.into_iter()
        .filter(|(_, (_, p))| *p > 0.0)
        .map(|(c, (m, p))| {
            let trust = m / (m + SHRINK_SHARE * total);
            (c, ((m / p).ln() * trust).exp().clamp(FACTOR_RANGE.0, FACTOR_RANGE.1))
        })
        .collect()
}

/// The share of all calibration time at which a class's own fit counts half.
const SHRINK_SHARE: f64 = 0.02;

/// Fits one factor per op type on top of `class_factors`: measured over predicted summed over
/// the op type's nodes (an op type is specific evidence, so it is not shrunk).
pub fn fit_ops(profile: &DeviceProfile, class_factors: &BTreeMap<OpClass, f64>, measurements: &[ModelMeasurement]) -> BTreeMap<String, f64> {
    let mut acc: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for m in measurements.iter().filter(|m| m.device == profile.device) {
        for n in &m.nodes {
            let Some(class) = n.work.class else { continue };
            let predicted = Roofline::work_ms(profile, &n.work) * class_factors.get(&class).copied().unwrap_or(1.0);
            if predicted <= 0.0 || n.measured_ms <= 0.0 {
                continue;
            }
            let e = acc.entry(n.op_type.clone()).or_default();
            e.0 += n.measured_ms;
            e.1 += predicted;
        }
    }
    acc.into_iter().filter(|(_, (m, p))| *p > 0.0 && *m > 0.0).map(|(op, (m, p))| (op, (m / p).clamp(FACTOR_RANGE.0, FACTOR_RANGE.1))).collect()
}

/// Fits and stores the factors (replacing earlier ones for the classes and op types these
/// models exercise).
pub fn apply(profile: &mut DeviceProfile, measurements: &[ModelMeasurement]) {
    let factors = fit(profile, measurements);
    let ops = fit_ops(profile, &factors, measurements);
    profile.calibration.extend(factors);
    profile.op_calibration.extend(ops);
    for m in measurements.iter().filter(|m| m.device == profile.device) {
        let name = format!("{} (batch {})", m.model, m.batch);
        if !profile.calibrated_on.contains(&name) {
            profile.calibrated_on.push(name);
        }
    }
}
