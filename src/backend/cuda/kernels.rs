//! CUDA C kernels (`shaders/cuda`), specialised in one place and compiled with NVRTC per
//! (source, architecture), cached in memory and on disk. Parameter layouts match the WGSL
//! kernels, so the GPU planner can serve both backends.

use crate::backend::gpu::{Elem, OpSpec};
use crate::error::{Error, Result};
use crate::graph::{BinaryOp, UnaryOp};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

const COMMON: &str = include_str!("../../../shaders/cuda/common.cuh");
const ELEMENTWISE: &str = include_str!("../../../shaders/cuda/elementwise.cu");
const NN: &str = include_str!("../../../shaders/cuda/nn.cu");

/// A kernel translation unit: which file, the expression for its unary or binary placeholder
/// (the other keeps a neutral expression), and the storage type of each buffer binding
/// (`B1`..`B4`, after the parameters).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Unit {
    pub file: &'static str,
    pub op: String,
    pub binary: bool,
    pub types: [Elem; 4],
}

impl Unit {
    /// `file` with no expression and the binding types `types` (missing ones f32).
    pub fn new(file: &'static str, op: String, binary: bool, types: &[Elem]) -> Unit {
        let mut t = [Elem::F32; 4];
        t[..types.len().min(4)].copy_from_slice(&types[..types.len().min(4)]);
        Unit { file, op, binary, types: t }
    }
}

/// Full CUDA source of a unit.
pub fn source(unit: &Unit) -> String {
    let body = match unit.file {
        "elementwise.cu" => {
            let (un, bin) = if unit.binary { ("x", unit.op.as_str()) } else { (unit.op.as_str(), "x + y") };
            ELEMENTWISE.replace("(UNARY_OP)", &format!("({})", if un.is_empty() { "x" } else { un })).replace("(BINARY_OP)", &format!("({bin})"))
        }
        _ => NN.to_string(),
    };
    let typedefs: String = unit.types.iter().enumerate().map(|(i, t)| format!("typedef {} B{};\n", if *t == Elem::F16 { "h16" } else { "float" }, i + 1)).collect();
    format!("{COMMON}\n{typedefs}{body}")
}

/// CUDA expression (in `x`, params `a`, `b`) of a float unary op.
pub fn unary_expr(op: UnaryOp) -> Option<String> {
    Some(match op {
        UnaryOp::Relu => "nmax(x, 0.0f)".into(),
        UnaryOp::Sigmoid => "1.0f / (1.0f + expf(-x))".into(),
        UnaryOp::Tanh => "tanhf(x)".into(),
        UnaryOp::Erf => "erff(x)".into(),
        UnaryOp::Exp => "expf(x)".into(),
        UnaryOp::Log => "logf(x)".into(),
        UnaryOp::Sqrt => "sqrtf(x)".into(),
        UnaryOp::Neg => "-x".into(),
        UnaryOp::Abs => "fabsf(x)".into(),
        UnaryOp::Reciprocal => "1.0f / x".into(),
        UnaryOp::Floor => "floorf(x)".into(),
        UnaryOp::Ceil => "ceilf(x)".into(),
        UnaryOp::Sin => "sinf(x)".into(),
        UnaryOp::Cos => "cosf(x)".into(),
        UnaryOp::Softsign => "x / (1.0f + fabsf(x))".into(),
        UnaryOp::Softplus => "softplus(x)".into(),
        UnaryOp::HardSwish => "x * nclamp(x / 6.0f + 0.5f, 0.0f, 1.0f)".into(),
        UnaryOp::Swish(al) => format!("x / (1.0f + expf(-({al:?}f) * x))"),
        UnaryOp::LeakyRelu(al) => format!("(x < 0.0f ? {al:?}f * x : x)"),
        UnaryOp::Elu(al) => format!("(x < 0.0f ? {al:?}f * (expf(x) - 1.0f) : x)"),
        UnaryOp::HardSigmoid { alpha, beta } => format!("nclamp({alpha:?}f * x + {beta:?}f, 0.0f, 1.0f)"),
        UnaryOp::Gelu { tanh: false } => "0.5f * x * (1.0f + erff(x * 0.70710678f))".into(),
        UnaryOp::Not => "(x == 0.0f ? 1.0f : 0.0f)".into(),
        UnaryOp::Round => "rintf(x)".into(),
        UnaryOp::Sign => "(x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x))".into(),
        UnaryOp::Tan => "tanf(x)".into(),
        UnaryOp::Asin => "asinf(x)".into(),
        UnaryOp::Acos => "acosf(x)".into(),
        UnaryOp::Atan => "atanf(x)".into(),
        UnaryOp::Sinh => "sinhf(x)".into(),
        UnaryOp::Cosh => "coshf(x)".into(),
        UnaryOp::Asinh => "asinhf(x)".into(),
        UnaryOp::Acosh => "acoshf(x)".into(),
        UnaryOp::Atanh => "atanhf(x)".into(),
        UnaryOp::Mish => "x * tanhf(softplus(x))".into(),
        UnaryOp::Celu(a) => format!("nmax(x, 0.0f) + nmin({a:?}f * (expf(x / {a:?}f) - 1.0f), 0.0f)"),
        UnaryOp::Selu { alpha, gamma } => format!("{gamma:?}f * (x > 0.0f ? x : {alpha:?}f * (expf(x) - 1.0f))"),
        UnaryOp::ThresholdedRelu(a) => format!("(x > {a:?}f ? x : 0.0f)"),
        UnaryOp::Gelu { tanh: true } => "0.5f * x * (1.0f + tanhf(0.7978846f * (x + 0.044715f * x * x * x)))".into(),
        UnaryOp::IsNaN => "(isnan(x) ? 1.0f : 0.0f)".into(),
        UnaryOp::IsInf { negative, positive } => format!("((isinf(x) && (x > 0.0f ? {positive} : {negative})) ? 1.0f : 0.0f)"),
        _ => return None,
    })
}

/// CUDA expression (in `x`, `y`) of a binary op on f32 carriers.
pub fn binary_expr(op: BinaryOp) -> Option<&'static str> {
    Some(match op {
        BinaryOp::Add => "x + y",
        BinaryOp::Sub => "x - y",
        BinaryOp::Mul => "x * y",
        BinaryOp::Div => "x / y",
        BinaryOp::Pow => "powf(x, y)",
        BinaryOp::Mod { fmod: true } => "fmodf(x, y)",
        BinaryOp::Mod { fmod: false } => "mod_floor(x, y)",
        BinaryOp::Max => "nmax(x, y)",
        BinaryOp::Min => "nmin(x, y)",
        BinaryOp::Equal => "(x == y ? 1.0f : 0.0f)",
        BinaryOp::Less => "(x < y ? 1.0f : 0.0f)",
        BinaryOp::LessOrEqual => "(x <= y ? 1.0f : 0.0f)",
        BinaryOp::Greater => "(x > y ? 1.0f : 0.0f)",
        BinaryOp::GreaterOrEqual => "(x >= y ? 1.0f : 0.0f)",
        BinaryOp::And => "((x != 0.0f && y != 0.0f) ? 1.0f : 0.0f)",
        BinaryOp::Or => "((x != 0.0f || y != 0.0f) ? 1.0f : 0.0f)",
        BinaryOp::Xor => "(((x != 0.0f) != (y != 0.0f)) ? 1.0f : 0.0f)",
        _ => return None,
    })
}

/// The conversion a Cast to `to` needs on f32 carriers.
pub fn cast_expr(to: crate::tensor::DType) -> &'static str {
    use crate::tensor::DType;
    match to {
        DType::F32 | DType::F16 | DType::F64 => EXTRA_UNARY[3],
        DType::BF16 => EXTRA_UNARY[4],
        DType::Bool => EXTRA_UNARY[2],
        _ => EXTRA_UNARY[1],
    }
}

/// Expressions for Clip and the Casts on f32 carriers (the last rounds to the nearest bfloat16,
/// ties to even, as wgpu::kernels::CAST_BF16).
pub const EXTRA_UNARY: [&str; 5] = [
    "nclamp(x, a, b)",
    "truncf(x)",
    "(x != 0.0f ? 1.0f : 0.0f)",
    "x",
    "__uint_as_float((__float_as_uint(x) + 0x7FFFu + ((__float_as_uint(x) >> 16) & 1u)) & 0xFFFF0000u)",
];

/// Every unit the backend builds, for compile checks without a device.
pub fn all_units() -> Vec<Unit> {
    // One unit per op the GPU lowering can emit (gpu::all_ops), plus the Clip and Cast forms.
    let mut v: Vec<Unit> = vec![];
    for op in crate::backend::gpu::all_ops() {
        match op {
            OpSpec::Unary(u) => v.push(Unit::new("elementwise.cu", unary_expr(u).expect("every GPU unary op has a CUDA expression"), false, &[])),
            OpSpec::Binary(b) => v.push(Unit::new("elementwise.cu", binary_expr(b).expect("every GPU binary op has a CUDA expression").into(), true, &[])),
            _ => {}
        }
    }
    v.extend(EXTRA_UNARY.iter().map(|s| Unit::new("elementwise.cu", s.to_string(), false, &[])));
    // f16 storage, and f16 data beside f32 (integer indices and conditions stay f32).
    v.push(Unit::new("elementwise.cu", "x".into(), false, &[Elem::F16; 4]));
    v.push(Unit::new("elementwise.cu", "x + y".into(), true, &[Elem::F32, Elem::F16, Elem::F16, Elem::F32]));
    v.push(Unit::new("nn.cu", String::new(), false, &[]));
    v.push(Unit::new("nn.cu", String::new(), false, &[Elem::F16; 4]));
    v.push(Unit::new("nn.cu", String::new(), false, &[Elem::F16, Elem::F32, Elem::F16, Elem::F32]));
    v
}

static MEMORY: Mutex<Option<HashMap<(String, &'static str), String>>> = Mutex::new(None);

/// Where compiled PTX is kept between runs: `$HETSCHED_CACHE_DIR`, else `~/.cache/hetsched`.
fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("HETSCHED_CACHE_DIR").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/hetsched"))).map(|d| d.join("cuda"))
}

/// `major.minor` of the loaded NVRTC.
fn nvrtc_version() -> String {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: two out-parameters; the library was probed before any kernel is compiled.
    unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    format!("{major}.{minor}")
}

/// PTX for `unit` on `arch` (e.g. `compute_90`), from memory, the disk cache, or NVRTC. The
/// caller must have checked that libnvrtc loads ([`super::probe_libraries`]): cudarc panics
/// otherwise.
pub fn ptx(unit: &Unit, arch: &'static str) -> Result<String> {
    let src = source(unit);
    let key = (src.clone(), arch);
    if let Some(p) = MEMORY.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashMap::new).get(&key) {
        return Ok(p.clone());
    }
    // The NVRTC version is part of the key: PTX from a newer NVRTC than the driver knows does
    // not load, and a cache may outlive an upgrade or downgrade.
    let file = cache_dir().map(|d| d.join(format!("{:016x}-{arch}-nvrtc{}.ptx", crate::hash::fnv1a(src.bytes()), nvrtc_version())));
    let ptx = match file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
        Some(p) => p,
        None => {
            let opts = cudarc::nvrtc::CompileOptions { arch: Some(arch), use_fast_math: Some(false), ..Default::default() };
            let p = cudarc::nvrtc::compile_ptx_with_opts(&src, opts)
                .map_err(|e| Error::Tensor(format!("NVRTC failed on {} [{}] for {arch}: {e:?}", unit.file, unit.op)))?
                .to_src();
            if let Some(f) = &file {
                // The cache is an optimisation: a read-only home just means compiling again. Written
                // aside and renamed, so a process reading it concurrently never sees half a file.
                let tmp = f.with_extension(format!("{}.tmp", std::process::id()));
                let _ = std::fs::create_dir_all(f.parent().unwrap()).and_then(|_| std::fs::write(&tmp, &p)).and_then(|_| std::fs::rename(&tmp, f));
            }
            p
        }
    };
    MEMORY.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashMap::new).insert(key, ptx.clone());
    Ok(ptx)
}
