//! The transfer model: a copy of N bytes over a link costs its latency plus N / bandwidth.
//! A device's host link has one [`Link`] per direction; between two non-host devices a tensor
//! goes through host memory (two hops).

use super::Curve;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub latency_us: f64,
    /// Bandwidth in GB/s (1e9 bytes per second); 0 means the link is free (the host itself).
    pub gbps: f64,
    /// Measured bandwidth (bytes/s) over copy size, where the achieved rate depends on size
    /// (caches, staging-buffer reuse); replaces `gbps` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curve: Option<Curve>,
}

impl Link {
    /// The link of a device that shares the host's memory: free.
    pub const LOCAL: Link = Link { latency_us: 0.0, gbps: 0.0, curve: None };

    pub fn new(latency_us: f64, gbps: f64) -> Link {
        Link { latency_us, gbps, curve: None }
    }

    pub fn ms(&self, bytes: u64) -> f64 {
        let lat = self.latency_us * 1e-3;
        if let Some(rate) = self.curve.as_ref().and_then(|c| c.rate(bytes as f64)) {
            return lat + bytes as f64 / rate * 1e3;
        }
        if self.gbps <= 0.0 {
            return lat;
        }
        lat + bytes as f64 / (self.gbps * 1e9) * 1e3
    }

    /// [`Link::fit`], then a size curve through the samples: each copy's bandwidth once the
    /// fitted latency is taken off. The samples are first made non-decreasing in size
    /// ([`monotone`]): a larger copy never takes less time, and a small copy measured below
    /// a smaller one is timer noise.
    pub fn fit_with_curve(samples: &[(u64, f64)]) -> Option<Link> {
        let samples = &monotone(samples);
        let mut l = Link::fit(samples)?;
        let pts: Vec<(f64, f64)> = samples.iter().filter(|(b, t)| *b > 0 && *t > 0.0).map(|&(b, t)| (b as f64, b as f64 / ((t - l.latency_us * 1e-3).max(0.05 * t) * 1e-3))).collect();
        l.curve = Curve::new(pts).ok().filter(|c| !c.is_empty());
        Some(l)
    }

    /// Fits latency and bandwidth to measured `(bytes, ms)` copies, minimising relative error
    /// (weights 1/t², so a 4 KiB copy counts as much as a 64 MiB one, but no copy below 10 µs
    /// weighs more than one of 10 µs: timer noise). Latency is kept ≥ 0, bandwidth ≤ 10 TB/s.
    pub fn fit(samples: &[(u64, f64)]) -> Option<Link> {
        let pts: Vec<(f64, f64)> = samples.iter().filter(|(_, t)| *t > 0.0 && t.is_finite()).map(|&(b, t)| (b as f64, t)).collect();
        if pts.len() < 2 {
            return None;
        }
        // Weighted least squares of t = a + b·x with weights w = 1/t².
        let (mut sw, mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for &(x, t) in &pts {
            let w = 1.0 / t.max(0.01).powi(2);
            sw += w;
            sx += w * x;
            sy += w * t;
            sxx += w * x * x;
            sxy += w * x * t;
        }
        let det = sw * sxx - sx * sx;
        let (mut a, mut b) = if det.abs() > 0.0 { ((sy * sxx - sx * sxy) / det, (sw * sxy - sx * sy) / det) } else { (0.0, 0.0) };
        if a < 0.0 || b <= 0.0 {
            // Refit through the origin: t = b·x.
            a = 0.0;
            let w = |t: f64| 1.0 / t.max(0.01).powi(2);
            b = pts.iter().map(|&(x, t)| w(t) * x * t).sum::<f64>() / pts.iter().map(|&(x, t)| w(t) * x * x).sum::<f64>();
        }
        if !(b > 0.0 && b.is_finite()) {
            return None;
        }
        let b = b.max(1.0 / 1e10); // bytes per ms: at most 10 TB/s
        // t [ms] = a + b·bytes  =>  latency a ms, bandwidth 1/b bytes per ms.
        Some(Link::new(a * 1e3, 1.0 / b / 1e6))
    }

    pub fn validate(&self, what: &str) -> Result<(), String> {
        if !(self.latency_us.is_finite() && self.latency_us >= 0.0) {
            return Err(format!("{what}: latency_us must be a finite number ≥ 0, got {}", self.latency_us));
        }
        if !(self.gbps.is_finite() && self.gbps >= 0.0) {
            return Err(format!("{what}: gbps must be a finite number ≥ 0, got {}", self.gbps));
        }
        if let Some(c) = &self.curve {
            c.validate(&format!("{what}.curve"))?;
        }
        Ok(())
    }
}

/// `(bytes, ms)` samples sorted by size with their times made non-decreasing: adjacent samples
/// out of order are pooled into their mean until none is (pool adjacent violators, the least
/// squares fit under that order).
pub fn monotone(samples: &[(u64, f64)]) -> Vec<(u64, f64)> {
    let mut sorted = samples.to_vec();
    sorted.sort_by_key(|s| s.0);
    // Blocks of (sum of times, count), each block's mean no less than the one before.
    let mut blocks: Vec<(f64, usize)> = vec![];
    for &(_, t) in &sorted {
        blocks.push((t, 1));
        while blocks.len() > 1 {
            let (b, a) = (blocks[blocks.len() - 1], blocks[blocks.len() - 2]);
            if a.0 / a.1 as f64 <= b.0 / b.1 as f64 {
                break;
            }
            blocks.pop();
            *blocks.last_mut().unwrap() = (a.0 + b.0, a.1 + b.1);
        }
    }
    let times = blocks.iter().flat_map(|&(sum, n)| std::iter::repeat_n(sum / n as f64, n));
    sorted.iter().zip(times).map(|(&(b, _), t)| (b, t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_out_of_order_are_pooled() {
        // 16 KiB and 64 KiB measured below 4 KiB: the three become their mean, 0.003 ms.
        let got = monotone(&[(65536, 0.0005), (4096, 0.008), (16384, 0.0005), (262144, 0.01)]);
        let want = [(4096, 0.003), (16384, 0.003), (65536, 0.003), (262144, 0.01)];
        for (g, w) in got.iter().zip(want) {
            assert!(g.0 == w.0 && (g.1 - w.1).abs() < 1e-12, "{got:?}");
        }
        let ordered = [(1, 1.0), (2, 2.0), (4, 2.0)];
        assert_eq!(monotone(&ordered), ordered.to_vec());
    }

    #[test]
    fn latency_plus_bytes_over_bandwidth() {
        // 10 µs + 25 MB at 25 GB/s = 0.01 ms + 1 ms.
        let l = Link::new(10.0, 25.0);
        assert!((l.ms(25_000_000) - 1.01).abs() < 1e-12);
        assert_eq!(Link::LOCAL.ms(1 << 30), 0.0);
    }

    #[test]
    fn fit_recovers_the_parameters() {
        let truth = Link::new(40.0, 3.5);
        let samples: Vec<(u64, f64)> = (12..=26).step_by(2).map(|p| (1u64 << p, truth.ms(1 << p))).collect();
        let f = Link::fit(&samples).unwrap();
        assert!((f.latency_us - 40.0).abs() < 1e-6, "{f:?}");
        assert!((f.gbps - 3.5).abs() < 1e-9, "{f:?}");
        assert!(Link::fit(&samples[..1]).is_none());
    }

    #[test]
    fn size_curve_reproduces_the_samples() {
        // Bandwidth falls from 8 GB/s to 2 GB/s past a cache: one line cannot follow both.
        let samples: Vec<(u64, f64)> = (12..=26).step_by(2).map(|p| {
            let b = 1u64 << p;
            (b, 0.005 + b as f64 / if p <= 20 { 8e6 } else { 2e6 })
        }).collect();
        let l = Link::fit_with_curve(&samples).unwrap();
        for &(b, t) in &samples {
            assert!((l.ms(b) - t).abs() <= 1e-9 * t.max(1.0), "{b}: {} vs {t}", l.ms(b));
        }
    }
}
