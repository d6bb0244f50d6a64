//! Device profiles: what the cost model knows of one device, measured by `hetsched profile` or
//! written by hand for a virtual device. Serialised as JSON; every field is checked on load.

use super::{Curve, Link, OpClass};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped when the meaning of a field changes; profiles of another version are re-measured.
pub const PROFILE_VERSION: u32 = 1;

/// Identifies the device and the build a profile was measured on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The device name plans use (`cpu`, `wgpu`, `cuda`).
    pub device: String,
    /// What the backend reports: processor or adapter name, driver, threads, ...
    pub details: BTreeMap<String, String>,
    /// hetsched's version and commit: kernels change between builds.
    pub build: String,
}

impl Fingerprint {
    /// A short stable hash, for cache file names.
    pub fn key(&self) -> String {
        // Over the canonical JSON form.
        let text = serde_json::to_string(self).unwrap_or_default();
        format!("{:016x}", crate::hash::fnv1a(text.bytes()))
    }

    /// What differs between two fingerprints, for messages.
    pub fn differences(&self, other: &Fingerprint) -> Vec<String> {
        let mut d = vec![];
        if self.device != other.device {
            d.push(format!("device {} vs {}", self.device, other.device));
        }
        if self.build != other.build {
            d.push(format!("build {} vs {}", self.build, other.build));
        }
        for (k, v) in &self.details {
            match other.details.get(k) {
                Some(w) if w == v => {}
                Some(w) => d.push(format!("{k} '{v}' vs '{w}'")),
                None => d.push(format!("{k} '{v}' vs none")),
            }
        }
        d
    }
}

/// The build identity stored in fingerprints.
pub fn build_id() -> String {
    format!("{} {}", env!("CARGO_PKG_VERSION"), env!("HETSCHED_BUILD_ID"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileKind {
    Measured,
    /// Described by parameters; its nodes execute on the device named in `executes_on`.
    Virtual,
}

/// One device as the cost model sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceProfile {
    pub version: u32,
    /// The name plans use for this device.
    pub device: String,
    pub kind: ProfileKind,
    /// Where and with what build it was measured (`None` for virtual devices).
    pub fingerprint: Option<Fingerprint>,
    /// Cost of one node's launch or dispatch, in µs, on top of its work.
    pub launch_us: f64,
    /// Fixed cost of one executable run (submit and wait), in µs.
    pub run_overhead_us: f64,
    /// What timing a node alone adds to its time (a submit and a wait on wgpu), in µs;
    /// subtracted from per-node measurements.
    pub timed_node_overhead_us: f64,
    /// Achieved rate per op class: FLOP/s over FLOPs for compute classes, bytes/s over bytes
    /// moved for the others.
    pub rates: BTreeMap<OpClass, Curve>,
    /// The memory roof: bytes/s over bytes moved, for every class.
    pub bandwidth: Curve,
    /// Host memory to this device.
    pub to_device: Link,
    /// This device to host memory.
    pub to_host: Link,
    /// Memory capacity, where known.
    pub memory_bytes: Option<u64>,
    /// Convolutions need an im2col workspace on this device (the vendor-GEMM route).
    #[serde(default)]
    pub im2col_workspace: bool,
    /// Multiplicative corrections per op class fitted on real models (1 where never calibrated).
    #[serde(default)]
    pub calibration: BTreeMap<OpClass, f64>,
    /// Per op class, how its correction changes with the work's size (FLOPs for compute
    /// classes, bytes for the others): `(size, factor)` points on top of `calibration`,
    /// interpolated in log–log and held beyond the ends. Fitted where calibration models ran
    /// the class at sizes a factor of 8 or more apart.
    #[serde(default)]
    pub size_calibration: BTreeMap<OpClass, Vec<(f64, f64)>>,
    /// Finer corrections per op type (as `inspect` names it: `Conv+Relu`, `Conv/grouped`,
    /// `Resize`), on top of the class's: fitted where calibration models ran that op.
    #[serde(default)]
    pub op_calibration: BTreeMap<String, f64>,
    /// Op types the micro-benchmarks timed on their own (their kernels run other loops than
    /// their class's benchmark: `Conv/3d`, `Resize`, `Softmax`, ...), keyed by the op type
    /// without fused activations: their work time over the class curve's at the benchmark's
    /// size. The roofline's prior for models never calibrated; calibration fits on top of it.
    #[serde(default)]
    pub op_factors: BTreeMap<String, f64>,
    /// The models the calibration was fitted on.
    #[serde(default)]
    pub calibrated_on: Vec<String>,
    /// For a virtual device: the real device whose kernels compute its outputs.
    #[serde(default)]
    pub executes_on: Option<String>,
    /// For a virtual device run in paced mode: hold each step to its predicted time.
    #[serde(default)]
    pub paced: bool,
}

/// The op families the profile's micro-benchmarks run on their classes' curves (see
/// `profiler::benches`): MatMul, Conv (1x1, kxk, depthwise), Relu, LayerNormalization, MaxPool,
/// Slice and Concat.
pub const BENCHMARKED_FAMILIES: [&str; 7] = ["MatMul", "Conv", "Relu", "LayerNormalization", "MaxPool", "Slice", "Concat"];

/// An op type's family: the op alone, without fused activations or variant (`Conv+Relu/grouped`
/// -> `Conv`).
pub fn family(op_type: &str) -> &str {
    op_type.split(['+', '/']).next().unwrap_or(op_type)
}

/// The micro-benchmarked op whose kernel an op's resembles: activations built on an
/// exponential run like Sigmoid, GELU like Erf, the recurrent layers like LSTM. Cheap
/// activations (Relu, Clip, HardSwish) have none.
pub fn benchmarked_twin(op: &str) -> Option<&'static str> {
    match op {
        "Sigmoid" | "Swish" | "Tanh" | "Elu" | "Selu" | "Celu" | "Softplus" | "Mish" => Some("Sigmoid"),
        "Gelu" | "Erf" => Some("Erf"),
        "LSTM" | "GRU" | "RNN" => Some("LSTM"),
        _ => None,
    }
}

/// An op type without its fused activations: `Conv+Relu/grouped` -> `Conv/grouped`.
pub fn unfused(op_type: &str) -> String {
    let (head, tail) = op_type.split_once('/').map(|(h, t)| (h, Some(t))).unwrap_or((op_type, None));
    let base = head.split('+').next().unwrap_or(head);
    match tail {
        Some(t) => format!("{base}/{t}"),
        None => base.to_string(),
    }
}

/// `points` (sorted by size) interpolated in log(size)–log(value), held beyond the ends; 1
/// when empty.
pub fn log_interpolate(points: &[(f64, f64)], size: f64) -> f64 {
    let (Some(first), Some(last)) = (points.first(), points.last()) else { return 1.0 };
    if size <= first.0 {
        return first.1;
    }
    if size >= last.0 {
        return last.1;
    }
    let i = points.partition_point(|q| q.0 <= size);
    let ((s0, f0), (s1, f1)) = (points[i - 1], points[i]);
    let t = (size.ln() - s0.ln()) / (s1.ln() - s0.ln());
    (f0.ln() + t * (f1.ln() - f0.ln())).exp()
}

impl DeviceProfile {
    /// Whether the device shares the host's memory (tensors need no copy to reach it).
    pub fn is_host(&self) -> bool {
        self.device == "cpu"
    }

    pub fn calibration(&self, class: OpClass) -> f64 {
        self.calibration.get(&class).copied().unwrap_or(1.0)
    }

    /// The micro-benchmarks' factor for an op type (`Conv+Relu/3d` reads `Conv/3d`'s; a fused
    /// form never timed itself, such as Gelu, reads the op its arithmetic resembles).
    pub fn op_factor(&self, op_type: &str) -> f64 {
        let key = unfused(op_type);
        self.op_factors.get(&key).or_else(|| benchmarked_twin(&key).and_then(|t| self.op_factors.get(t))).copied().unwrap_or(1.0)
    }

    /// What the activations fused into `op_type` (`Conv+Swish`) add, in passes of a plain
    /// elementwise op over its output: a standalone activation's factor beyond the pass it
    /// costs anyway. An epilogue saves that pass over memory but not the arithmetic, so
    /// `Relu` or `Clip` add nothing and `Swish` nearly a pass (its exponential).
    pub fn epilogue_passes(&self, op_type: &str) -> f64 {
        let head = op_type.split('/').next().unwrap_or(op_type);
        head.split('+').skip(1).filter_map(benchmarked_twin).map(|t| (self.op_factors.get(t).copied().unwrap_or(1.0) - 1.0).max(0.0)).sum()
    }

    /// The correction of a node doing `work`: its class's factor at the work's size times its
    /// op type's. A class's fit carries over to op families the calibration models never ran,
    /// except to families the micro-benchmarks timed themselves (on the class curve, or with an
    /// op factor): for those a measurement of their own kernel beats a correction learnt on other
    /// kernels. (On lavapipe the CNNs' 1x1 convolutions run 2.8x slower than the GEMM curve; a
    /// transformer's MatMuls, which that curve times, do not.)
    pub fn correction(&self, class: OpClass, op_type: &str, work: &super::Work) -> f64 {
        let op = self.op_calibration.get(op_type).copied().unwrap_or(1.0);
        let fam = family(op_type);
        let seen = self.op_calibration.keys().any(|k| family(k) == fam);
        let benchmarked = BENCHMARKED_FAMILIES.contains(&fam) || self.op_factors.keys().any(|k| family(k) == fam);
        if benchmarked && !seen {
            return op;
        }
        let size = if class.compute_bound() { work.flops } else { work.bytes };
        let by_size = self.size_calibration.get(&class).map(|p| log_interpolate(p, size)).unwrap_or(1.0);
        self.calibration(class) * by_size * op
    }

    /// Checks every number, so a hand-edited or truncated profile is an error, not a wrong plan.
    pub fn validate(&self) -> Result<()> {
        let err = |m: String| Error::Profile(format!("device '{}': {m}", self.device));
        if self.version != PROFILE_VERSION {
            return Err(err(format!("profile version {} (this build reads {PROFILE_VERSION}); measure it again with `hetsched profile`", self.version)));
        }
        if self.device.is_empty() || !self.device.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(err("the device name must be letters, digits, '_' or '-'".into()));
        }
        for (what, v) in [("launch_us", self.launch_us), ("run_overhead_us", self.run_overhead_us), ("timed_node_overhead_us", self.timed_node_overhead_us)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(err(format!("{what} must be a finite number ≥ 0, got {v}")));
            }
        }
        self.bandwidth.validate("bandwidth").map_err(err)?;
        if self.bandwidth.is_empty() {
            return Err(err("bandwidth curve is empty".into()));
        }
        for (c, curve) in &self.rates {
            curve.validate(&format!("rates.{}", c.name())).map_err(err)?;
        }
        self.to_device.validate("to_device").map_err(err)?;
        self.to_host.validate("to_host").map_err(err)?;
        for (c, f) in &self.calibration {
            if !(f.is_finite() && *f > 0.0 && *f < 1e4) {
                return Err(err(format!("calibration.{} must be a positive factor, got {f}", c.name())));
            }
        }
        for (c, points) in &self.size_calibration {
            if points.iter().any(|(s, f)| !(s.is_finite() && *s > 0.0 && f.is_finite() && *f > 0.0 && *f < 1e4)) || points.windows(2).any(|w| w[0].0 >= w[1].0) {
                return Err(err(format!("size_calibration.{}: points must be (size > 0, factor > 0) with sizes increasing", c.name())));
            }
        }
        for (what, map) in [("op_calibration", &self.op_calibration), ("op_factors", &self.op_factors)] {
            for (op, f) in map {
                if !(f.is_finite() && *f > 0.0 && *f < 1e4) {
                    return Err(err(format!("{what}.{op} must be a positive factor, got {f}")));
                }
            }
        }
        if self.kind == ProfileKind::Virtual && self.executes_on.is_none() {
            return Err(err("a virtual device needs `executes_on` (the device that computes its outputs)".into()));
        }
        if self.kind == ProfileKind::Measured && self.fingerprint.is_none() {
            return Err(err("a measured profile needs its fingerprint".into()));
        }
        Ok(())
    }
}

/// Several devices' profiles: what `hetsched profile --out` writes and `--profile` reads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileSet {
    pub devices: Vec<DeviceProfile>,
}

impl ProfileSet {
    pub fn get(&self, device: &str) -> Option<&DeviceProfile> {
        self.devices.iter().find(|p| p.device == device)
    }

    /// Adds or replaces the profile of `p.device`.
    pub fn insert(&mut self, p: DeviceProfile) {
        self.devices.retain(|q| q.device != p.device);
        self.devices.push(p);
    }

    pub fn from_json(text: &str, origin: &str) -> Result<ProfileSet> {
        // One profile alone is accepted too.
        let set = match serde_json::from_str::<ProfileSet>(text) {
            Ok(s) => s,
            Err(e) => match serde_json::from_str::<DeviceProfile>(text) {
                Ok(p) => ProfileSet { devices: vec![p] },
                Err(_) => return Err(Error::Profile(format!("{origin}: not a profile: {e}"))),
            },
        };
        for p in &set.devices {
            p.validate().map_err(|e| Error::Profile(format!("{origin}: {e}")))?;
        }
        Ok(set)
    }

    pub fn load(path: &std::path::Path) -> Result<ProfileSet> {
        let meta = std::fs::metadata(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        if meta.len() > 64 << 20 {
            return Err(Error::Profile(format!("{}: {} bytes is too large for a profile", path.display(), meta.len())));
        }
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        ProfileSet::from_json(&text, &path.display().to_string())
    }

    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.display().to_string(), source })?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Profile(e.to_string()))?;
        std::fs::write(path, text).map_err(|source| Error::Io { path: path.display().to_string(), source })
    }
}
