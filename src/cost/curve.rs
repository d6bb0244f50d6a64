//! Achieved throughput as a curve over problem size: small ops cannot fill many cores or a GPU,
//! so a device's rate rises with size until it reaches its roof.

use serde::{Deserialize, Serialize};

/// Measured `(size, rate)` points, sorted by size; rates between points are interpolated
/// linearly in log(size)–log(rate). Past the last point the rate holds (the device's roof);
/// below the first, the time holds: an op smaller than the smallest benchmark is assumed no
/// faster than it (fixed costs dominate there), so the rate falls in proportion to size.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    pub points: Vec<(f64, f64)>,
}

impl Curve {
    /// A curve from points in any order; points with a non-positive or non-finite size or rate
    /// are errors.
    pub fn new(mut points: Vec<(f64, f64)>) -> Result<Curve, String> {
        if let Some(p) = points.iter().find(|(s, r)| !(s.is_finite() && r.is_finite() && *s > 0.0 && *r > 0.0)) {
            return Err(format!("curve point {p:?}: size and rate must be positive and finite"));
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        points.dedup_by(|a, b| a.0 == b.0);
        Ok(Curve { points })
    }

    /// One rate at every size (from one unit up).
    pub fn flat(rate: f64) -> Curve {
        Curve { points: vec![(1.0, rate)] }
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The rate at `size` (None for an empty curve).
    pub fn rate(&self, size: f64) -> Option<f64> {
        let p = &self.points;
        let (first, last) = (p.first()?, p.last()?);
        if size <= first.0 {
            return Some(first.1 * size / first.0);
        }
        if size >= last.0 {
            return Some(last.1);
        }
        let i = p.partition_point(|q| q.0 <= size);
        let ((s0, r0), (s1, r1)) = (p[i - 1], p[i]);
        let t = (size.ln() - s0.ln()) / (s1.ln() - s0.ln());
        Some((r0.ln() + t * (r1.ln() - r0.ln())).exp())
    }

    /// Seconds to do `work` units at this curve's rate for that size.
    pub fn seconds(&self, work: f64) -> Option<f64> {
        if work <= 0.0 {
            return Some(0.0);
        }
        self.rate(work).map(|r| work / r)
    }

    pub fn validate(&self, what: &str) -> Result<(), String> {
        Curve::new(self.points.clone()).map(|_| ()).map_err(|e| format!("{what}: {e}"))?;
        if self.points.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(format!("{what}: sizes must be strictly increasing"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_in_log_log_and_clamps() {
        // Rate 1e9 at size 1e3, 1e11 at 1e5: halfway in log size (1e4) is 1e10.
        let c = Curve::new(vec![(1e5, 1e11), (1e3, 1e9)]).unwrap();
        assert!((c.rate(1e4).unwrap() - 1e10).abs() < 1e-3 * 1e10);
        // Below the first point the time holds: 1e3 units took 1e-6 s, so 10 units take as long.
        assert!((c.seconds(10.0).unwrap() - 1e-6).abs() < 1e-18);
        assert!((c.rate(10.0).unwrap() - 1e7).abs() < 1e-3);
        assert_eq!(c.rate(1e9), Some(1e11));
        // A quarter of the way: 10^(9 + 0.5) = 3.162e9.
        let q = c.rate(10f64.powf(3.5)).unwrap();
        assert!((q - 10f64.powf(9.5)).abs() < 1e-6 * q);
        // 2e4 units at the interpolated rate.
        let s = c.seconds(2e4).unwrap();
        assert!((s - 2e4 / c.rate(2e4).unwrap()).abs() < 1e-18);
        assert_eq!(c.seconds(0.0), Some(0.0));
    }

    #[test]
    fn bad_points_are_errors() {
        assert!(Curve::new(vec![(0.0, 1.0)]).is_err());
        assert!(Curve::new(vec![(1.0, f64::NAN)]).is_err());
        assert!(Curve::new(vec![(1.0, -2.0)]).is_err());
        assert_eq!(Curve::default().rate(5.0), None);
    }
}
