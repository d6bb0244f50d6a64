//! Virtual devices, for partition experiments on hardware the user does not have:
//! `NAME:gflops=20000,gbps=900,launch_us=5,mem=16GiB,link_gbps=25,link_us=10`.
//! The cost model treats them like measured devices; their nodes run on the CPU's kernels.

use super::{Curve, DeviceProfile, Link, OpClass, ProfileKind};
use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// Every key a spec may set, its default and its meaning (`hetsched profile --help` prints it).
pub const KEYS: &[(&str, &str, &str)] = &[
    ("gflops", "10000", "compute rate of matrix products and convolutions, GFLOP/s"),
    ("depthwise_gflops", "gflops/8", "compute rate of grouped and depthwise convolutions, GFLOP/s"),
    ("gbps", "500", "memory bandwidth, GB/s (the roof for every op)"),
    ("launch_us", "5", "cost of one kernel launch, µs"),
    ("run_us", "10", "fixed cost of one run on the device (submit and wait), µs"),
    ("mem", "unlimited", "memory capacity (bytes, or with a unit: 16GiB, 512MB)"),
    ("link_gbps", "16", "host link bandwidth each way, GB/s"),
    ("link_us", "10", "host link latency each way, µs"),
    ("h2d_gbps", "link_gbps", "host-to-device bandwidth, GB/s"),
    ("d2h_gbps", "link_gbps", "device-to-host bandwidth, GB/s"),
    ("paced", "0", "1: running it holds each step to its predicted time"),
];

/// Parses a size: plain bytes or a number with B, KB, MB, GB, TB (powers of 1000) or KiB, MiB,
/// GiB, TiB (powers of 1024).
pub fn parse_bytes(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num.trim().parse().map_err(|_| format!("'{s}' is not a size (e.g. 4GiB, 512MB, 1000000)"))?;
    let mul = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0f64.powi(4),
        u => return Err(format!("unknown size unit '{u}' in '{s}' (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")),
    };
    let bytes = v * mul;
    if !(bytes.is_finite() && bytes >= 0.0 && bytes < 1.8e19) {
        return Err(format!("size '{s}' is out of range"));
    }
    Ok(bytes.round() as u64)
}

const REAL_DEVICES: [&str; 3] = ["cpu", "wgpu", "cuda"];

/// A virtual device's profile from its spec.
pub fn parse_spec(spec: &str) -> Result<DeviceProfile> {
    let bad = |m: String| Error::Profile(format!("virtual device '{spec}': {m}"));
    let (name, params) = spec.split_once(':').unwrap_or((spec, ""));
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(bad("the name (before ':') must be letters, digits, '_' or '-'".into()));
    }
    if REAL_DEVICES.contains(&name) {
        return Err(bad(format!("'{name}' is a real device's name; pick another (e.g. v{name})")));
    }
    let mut values: BTreeMap<&str, &str> = BTreeMap::new();
    for kv in params.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| bad(format!("'{kv}' is not KEY=VALUE")))?;
        let (k, v) = (k.trim(), v.trim());
        if !KEYS.iter().any(|(key, ..)| *key == k) {
            let known: Vec<&str> = KEYS.iter().map(|k| k.0).collect();
            return Err(bad(format!("unknown key '{k}' (known: {})", known.join(", "))));
        }
        if values.insert(k, v).is_some() {
            return Err(bad(format!("key '{k}' given twice")));
        }
    }
    let num = |k: &str, default: f64| -> Result<f64> {
        match values.get(k) {
            None => Ok(default),
            Some(v) => match v.parse::<f64>() {
                Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
                _ => Err(bad(format!("{k}={v}: expected a number ≥ 0"))),
            },
        }
    };
    let positive = |k: &str, default: f64| -> Result<f64> {
        let x = num(k, default)?;
        if x > 0.0 { Ok(x) } else { Err(bad(format!("{k} must be > 0"))) }
    };
    let gflops = positive("gflops", 10000.0)?;
    let depthwise = positive("depthwise_gflops", gflops / 8.0)?;
    let gbps = positive("gbps", 500.0)?;
    let link_gbps = positive("link_gbps", 16.0)?;
    let link_us = num("link_us", 10.0)?;
    let memory_bytes = match values.get("mem") {
        None => None,
        Some(v) => Some(parse_bytes(v).map_err(bad)?),
    };
    let paced = match values.get("paced").copied() {
        None | Some("0") | Some("false") => false,
        Some("1") | Some("true") => true,
        Some(v) => return Err(bad(format!("paced={v}: expected 0 or 1"))),
    };
    let mut rates = BTreeMap::new();
    for c in [OpClass::Gemm, OpClass::Conv, OpClass::Other] {
        rates.insert(c, Curve::flat(gflops * 1e9));
    }
    rates.insert(OpClass::Depthwise, Curve::flat(depthwise * 1e9));
    let p = DeviceProfile {
        version: super::profile::PROFILE_VERSION,
        device: name.into(),
        kind: ProfileKind::Virtual,
        fingerprint: None,
        launch_us: num("launch_us", 5.0)?,
        run_overhead_us: num("run_us", 10.0)?,
        timed_node_overhead_us: 0.0,
        rates,
        bandwidth: Curve::flat(gbps * 1e9),
        to_device: Link::new(link_us, positive("h2d_gbps", link_gbps)?),
        to_host: Link::new(link_us, positive("d2h_gbps", link_gbps)?),
        memory_bytes,
        im2col_workspace: false,
        calibration: BTreeMap::new(),
        op_calibration: BTreeMap::new(),
        op_factors: BTreeMap::new(),
        size_calibration: BTreeMap::new(),
        calibrated_on: vec![],
        executes_on: Some("cpu".into()),
        paced,
    };
    p.validate()?;
    Ok(p)
}

/// The spec keys as help text.
pub fn keys_help() -> String {
    KEYS.iter().map(|(k, d, m)| format!("  {k:<17} {m} (default {d})")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::{CostModel, ProfileSet, Roofline, Work};

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("16GiB").unwrap(), 16 << 30);
        assert_eq!(parse_bytes("4 GB").unwrap(), 4_000_000_000);
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("-1GB").is_err());
        assert!(parse_bytes("GB").is_err());
    }

    #[test]
    fn predictions_follow_the_parameters_exactly() {
        let p = parse_spec("fastgpu:gflops=20000,gbps=900,launch_us=5,mem=16GiB,link_gbps=25,link_us=10").unwrap();
        assert_eq!(p.memory_bytes, Some(16 << 30));
        // 40 GFLOP over 9 MB: 2 ms compute vs 0.01 ms memory, + 5 µs.
        let w = Work { flops: 40e9, bytes: 9e6, class: Some(crate::cost::OpClass::Conv), ..Default::default() };
        assert!((Roofline::work_ms(&p, &w) - 2.005).abs() < 1e-9);
        // 90 MB elementwise at 900 GB/s: 0.1 ms + 5 µs.
        let e = Work { flops: 0.0, bytes: 90e6, class: Some(crate::cost::OpClass::Elementwise), ..Default::default() };
        assert!((Roofline::work_ms(&p, &e) - 0.105).abs() < 1e-9);
        let mut cpu = p.clone();
        cpu.device = "cpu".into();
        let m = Roofline::new(ProfileSet { devices: vec![cpu, p] });
        // 25 MB over 25 GB/s + 10 µs each way.
        assert!((m.transfer_ms("cpu", "fastgpu", 25_000_000).unwrap() - 1.01).abs() < 1e-9);
        assert!((m.transfer_ms("fastgpu", "cpu", 25_000_000).unwrap() - 1.01).abs() < 1e-9);
        assert_eq!(m.capacity_bytes("fastgpu"), Some(16 << 30));
    }

    #[test]
    fn defaults_and_errors() {
        let p = parse_spec("vgpu").unwrap();
        assert_eq!(p.launch_us, 5.0);
        assert_eq!(p.to_device, Link::new(10.0, 16.0));
        for (spec, says) in [
            ("cpu:gflops=1", "real device"),
            ("v:gflops=fast", "gflops=fast"),
            ("v:flops=1", "unknown key 'flops'"),
            ("v:gflops=0", "gflops must be > 0"),
            ("v:mem=3 bananas", "unknown size unit"),
            ("v:gflops", "not KEY=VALUE"),
            ("v:gbps=1,gbps=2", "twice"),
            ("a b:gflops=1", "name"),
            ("v:link_us=-3", "expected a number"),
        ] {
            let e = parse_spec(spec).unwrap_err().to_string();
            assert!(e.contains(says), "{spec}: {e}");
        }
    }
}
