//! Calibration: per-op-class corrections fitted on real models' measured node times, stored in
//! the profile. Classes a model never exercised keep factor 1 (the roofline alone).

use super::fidelity::ModelMeasurement;
use super::{DeviceProfile, OpClass, Roofline};
use std::collections::BTreeMap;

/// Factors are kept in this range: a fit outside it means a broken measurement, not a device.
const FACTOR_RANGE: (f64, f64) = (0.02, 50.0);

/// Fits one factor per op class: the time-weighted geometric mean of measured / predicted over
/// the measurements' nodes (so the nodes that dominate a model's time dominate its fit), with
/// the roofline's uncalibrated predictions.
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
            e.0 += n.measured_ms * (n.measured_ms / predicted).ln();
            e.1 += n.measured_ms;
        }
    }
    acc.into_iter().filter(|(_, (_, w))| *w > 0.0).map(|(c, (s, w))| (c, (s / w).exp().clamp(FACTOR_RANGE.0, FACTOR_RANGE.1))).collect()
}

/// Fits and stores the factors (replacing earlier ones for the classes these models exercise).
pub fn apply(profile: &mut DeviceProfile, measurements: &[ModelMeasurement]) {
    let factors = fit(profile, measurements);
    profile.calibration.extend(factors);
    for m in measurements.iter().filter(|m| m.device == profile.device) {
        let name = format!("{} (batch {})", m.model, m.batch);
        if !profile.calibrated_on.contains(&name) {
            profile.calibrated_on.push(name);
        }
    }
}
