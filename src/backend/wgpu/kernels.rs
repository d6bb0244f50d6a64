//! WGSL kernels: the sources in `shaders/wgsl`, the one place where they are specialised
//! (workgroup size, the element-wise expression), and the expressions for each op.

pub use crate::backend::gpu::{Elem, Kernel};
use crate::backend::gpu::{OpSpec, BLOCK};
use crate::error::{Error, Result};
use crate::graph::{BinaryOp, UnaryOp};

/// Threads per 1-D workgroup.
pub const WG: u32 = BLOCK;

const COMMON: &str = include_str!("../../../shaders/wgsl/common.wgsl");

fn body(kernel: Kernel) -> &'static str {
match kernel {
        Kernel::Copy => include_str!("../../../shaders/wgsl/copy.wgsl"),
        Kernel::Unary => include_str!("../../../shaders/wgsl/unary.wgsl"),
        Kernel::Binary => include_str!("../../../shaders/wgsl/binary.wgsl"),
        Kernel::Where => include_str!("../../../shaders/wgsl/where.wgsl"),
        Kernel::Matmul => include_str!("../../../shaders/wgsl/matmul.wgsl"),
        Kernel::Conv2d => include_str!("../../../shaders/wgsl/conv2d.wgsl"),
        Kernel::Pool => include_str!("../../../shaders/wgsl/pool.wgsl"),
        Kernel::Im2col => include_str!("../../../shaders/wgsl/im2col.wgsl"),
        Kernel::Rows => include_str!("../../../shaders/wgsl/rows.wgsl"),
        Kernel::Gather => include_str!("../../../shaders/wgsl/gather.wgsl"),
        Kernel::Taps => include_str!("../../../shaders/wgsl/taps.wgsl"),
        Kernel::Scan => include_str!("../../../shaders/wgsl/scan.wgsl"),
        Kernel::TopK => include_str!("../../../shaders/wgsl/topk.wgsl"),
        Kernel::Elements => include_str!("../../../shaders/wgsl/elements.wgsl"),
        Kernel::Nd => include_str!("../../../shaders/wgsl/nd.wgsl"),
        Kernel::GridSample => include_str!("../../../shaders/wgsl/grid_sample.wgsl"),
    }
}

/// Whether the kernel has an `{{OP}}` placeholder to fill.
fn templated(kernel: Kernel) -> bool {
    matches!(kernel, Kernel::Unary | Kernel::Binary)
}

/// Full WGSL source of `kernel` with `op` substituted for its `OP` placeholder and the element
/// type of each storage binding (`types[i]` for binding `i + 1`).
pub fn source(kernel: Kernel, op: &str, types: &[Elem]) -> String {
    let body = if templated(kernel) { body(kernel).replace("{{OP}}", op) } else { body(kernel).to_string() };
    let mut pre = String::new();
    if types.contains(&Elem::F16) {
        pre.push_str("enable f16;\n");
    }
    for i in 0..kernel.bindings() {
        let t = match types.get(i).copied().unwrap_or(Elem::F32) {
            Elem::F32 => "f32",
            Elem::F16 => "f16",
        };
        pre.push_str(&format!("alias B{} = {t};\n", i + 1));
    }
    format!("{pre}const WG: u32 = {WG}u;\n{COMMON}\n{body}")
}

/// The WGSL expression (in `x`, params `a`, `b`) of a float unary op, if the device has it.
pub fn unary_expr(op: UnaryOp) -> Option<String> {
    Some(match op {
        UnaryOp::Relu => "nmax(x, 0.0)".into(),
        UnaryOp::Sigmoid => "1.0 / (1.0 + exp(-x))".into(),
        UnaryOp::Tanh => "tanh(x)".into(),
        UnaryOp::Erf => "erf_approx(x)".into(),
        UnaryOp::Exp => "exp(x)".into(),
        UnaryOp::Log => "log(x)".into(),
        UnaryOp::Sqrt => "sqrt(x)".into(),
        UnaryOp::Neg => "-x".into(),
        UnaryOp::Abs => "abs(x)".into(),
        UnaryOp::Reciprocal => "1.0 / x".into(),
        UnaryOp::Floor => "floor(x)".into(),
        UnaryOp::Ceil => "ceil(x)".into(),
        UnaryOp::Sin => "sin(x)".into(),
        UnaryOp::Cos => "cos(x)".into(),
        UnaryOp::Softsign => "x / (1.0 + abs(x))".into(),
        // log1p by its series where exp(-|x|) is tiny: log(1 + e) in f32 loses e's digits there.
        UnaryOp::Softplus => "softplus(x)".into(),
        UnaryOp::HardSwish => "x * nclamp(x / 6.0 + 0.5, 0.0, 1.0)".into(),
        UnaryOp::Swish(al) => format!("x / (1.0 + exp(-({al:?}) * x))"),
        UnaryOp::LeakyRelu(al) => format!("select(x, {al:?} * x, x < 0.0)"),
        UnaryOp::Elu(al) => format!("select(x, {al:?} * (exp(x) - 1.0), x < 0.0)"),
        UnaryOp::HardSigmoid { alpha, beta } => format!("nclamp({alpha:?} * x + {beta:?}, 0.0, 1.0)"),
        UnaryOp::Gelu { tanh: false } => "0.5 * x * (1.0 + erf_approx(x * 0.70710678))".into(),
        UnaryOp::Not => "select(0.0, 1.0, x == 0.0)".into(),
        // WGSL's round is half-to-even, as ONNX's Round.
        UnaryOp::Round => "round(x)".into(),
        UnaryOp::Sign => "select(select(x, -1.0, x < 0.0), 1.0, x > 0.0)".into(),
        UnaryOp::Tan => "tan(x)".into(),
        UnaryOp::Asin => "asin(x)".into(),
        UnaryOp::Acos => "acos(x)".into(),
        UnaryOp::Atan => "atan(x)".into(),
        UnaryOp::Sinh => "sinh(x)".into(),
        UnaryOp::Cosh => "cosh(x)".into(),
        UnaryOp::Asinh => "asinh(x)".into(),
        UnaryOp::Acosh => "acosh(x)".into(),
        UnaryOp::Atanh => "atanh(x)".into(),
        UnaryOp::Mish => "x * tanh(softplus(x))".into(),
        UnaryOp::Celu(a) => format!("nmax(x, 0.0) + nmin({a:?} * (exp(x / {a:?}) - 1.0), 0.0)"),
        UnaryOp::Selu { alpha, gamma } => format!("{gamma:?} * select({alpha:?} * (exp(x) - 1.0), x, x > 0.0)"),
        UnaryOp::ThresholdedRelu(a) => format!("select(0.0, x, x > {a:?})"),
        UnaryOp::Gelu { tanh: true } => "0.5 * x * (1.0 + tanh(0.7978846 * (x + 0.044715 * x * x * x)))".into(),
        UnaryOp::IsNaN => "select(0.0, 1.0, is_nan(x))".into(),
        UnaryOp::IsInf { negative, positive } => format!("select(0.0, 1.0, (bitcast<u32>(x) & 0x7fffffffu) == 0x7f800000u && select({negative}, {positive}, x > 0.0))"),
        _ => return None,
    })
}

/// The WGSL expression (in `x`, `y`) of a binary op on f32 carriers.
pub fn binary_expr(op: BinaryOp) -> Option<&'static str> {
    Some(match op {
        BinaryOp::Add => "x + y",
        BinaryOp::Sub => "x - y",
        BinaryOp::Mul => "x * y",
        BinaryOp::Div => "x / y",
        // WGSL's pow is exp2(y * log2(x)): undefined for x < 0 and for 0^0. A negative base
        // with an integral exponent takes the sign of the odd powers, as C's powf does.
        BinaryOp::Pow => "select(select(pow(x, y), pow(abs(x), y) * select(1.0, -1.0, abs(y) % 2.0 == 1.0), x < 0.0 && trunc(y) == y), 1.0, y == 0.0)",
        BinaryOp::Mod { fmod: true } => "fmod_c(x, y)",
        BinaryOp::Mod { fmod: false } => "mod_floor(x, y)",
        BinaryOp::Max => "nmax(x, y)",
        BinaryOp::Min => "nmin(x, y)",
        BinaryOp::Equal => "select(0.0, 1.0, x == y)",
        BinaryOp::Less => "select(0.0, 1.0, x < y)",
        BinaryOp::LessOrEqual => "select(0.0, 1.0, x <= y)",
        BinaryOp::Greater => "select(0.0, 1.0, x > y)",
        BinaryOp::GreaterOrEqual => "select(0.0, 1.0, x >= y)",
        BinaryOp::And => "select(0.0, 1.0, x != 0.0 && y != 0.0)",
        BinaryOp::Or => "select(0.0, 1.0, x != 0.0 || y != 0.0)",
        BinaryOp::Xor => "select(0.0, 1.0, (x != 0.0) != (y != 0.0))",
        _ => return None,
    })
}

/// The WGSL expression of a launch's op ("" for kernels without one).
pub fn op_expr(op: OpSpec) -> Result<String> {
    let missing = || Error::Tensor(format!("{op:?} has no WGSL expression"));
    Ok(match op {
        OpSpec::None => String::new(),
        OpSpec::Unary(u) => unary_expr(u).ok_or_else(missing)?,
        OpSpec::Clip => CLIP.into(),
        OpSpec::Cast(to) => cast_expr(to).into(),
        OpSpec::Binary(b) => binary_expr(b).ok_or_else(missing)?.into(),
    })
}

/// Every (kernel, op) specialisation the backend can build, for validation without a device.
pub fn all_specialisations() -> Vec<(Kernel, String)> {
    let mut v = vec![];
    for k in Kernel::ALL {
        match k {
            Kernel::Unary => v.extend(crate::backend::gpu::all_ops().into_iter().filter(|o| !matches!(o, OpSpec::Binary(_))).map(|o| (k, op_expr(o).expect("every GPU unary op has an expression")))),
            Kernel::Binary => v.extend(crate::backend::gpu::all_ops().into_iter().filter(|o| matches!(o, OpSpec::Binary(_))).map(|o| (k, op_expr(o).expect("every GPU binary op has an expression")))),
            _ => v.push((k, String::new())),
        }
    }
    v
}

pub const CLIP: &str = "nclamp(x, a, b)";

/// The conversion a Cast to `to` needs on f32 carriers.
pub fn cast_expr(to: crate::tensor::DType) -> &'static str {
    use crate::tensor::DType;
    match to {
        DType::F32 | DType::F16 | DType::F64 => IDENTITY,
        DType::BF16 => CAST_BF16,
        DType::Bool => CAST_BOOL,
        _ => CAST_TRUNC,
    }
}
/// Rounds to the nearest bfloat16 (ties to even) on its f32 carrier: bfloat16 is the upper half
/// of an f32 (infinities and NaNs stay as they are).
pub const CAST_BF16: &str = "bitcast<f32>((bitcast<u32>(x) + 0x7FFFu + ((bitcast<u32>(x) >> 16u) & 1u)) & 0xFFFF0000u)";
pub const CAST_TRUNC: &str = "trunc(x)";
pub const CAST_BOOL: &str = "select(0.0, 1.0, x != 0.0)";
pub const IDENTITY: &str = "x";

/// Element-type assignments worth validating for a kernel: all f32, all f16, and f16 data with
/// f32 carriers (integer indices, masks) in the second binding.
pub fn type_variants(kernel: Kernel) -> Vec<Vec<Elem>> {
    let n = kernel.bindings();
    let mut mixed = vec![Elem::F16; n];
    if n > 1 {
        mixed[1] = Elem::F32;
    }
    vec![vec![Elem::F32; n], vec![Elem::F16; n], mixed]
}
