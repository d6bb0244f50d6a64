//! What the GPU backends share: the kernel set and its parameter layouts, the device-neutral
//! lowering of a bound graph to buffers and launches ([`lower::lower`]), launch geometry, and
//! which nodes the kernels cover ([`support`]). Each backend (wgpu, CUDA) only creates the
//! resources and issues the launches.

pub mod arena;
pub mod layout;
pub mod lower;

use super::Support;
use crate::graph::geometry::RotaryGeometry;
use crate::graph::{BinaryOp, Graph, Op, PoolKind, UnaryOp};
use crate::tensor::{DType, Tensor};
use petgraph::stable_graph::NodeIndex;
use std::sync::Arc;

/// The longest lane TopK runs on the GPU (its ranks cost a pass over the lane per element).
pub const TOPK_MAX_LEN: usize = 16384;

/// Threads per 1-D workgroup / thread block.
pub const BLOCK: u32 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Copy,
    Unary,
    Binary,
    Where,
    Matmul,
    Conv2d,
    /// Max / average pooling over up to 3 spatial axes.
    Pool,
    Rows,
    Gather,
    /// Weighted sums of taps along one axis from a (source, weight) table: Resize, Pad.
    Taps,
    /// Cumulative sums and products along one axis.
    Scan,
    /// The k best elements along one axis and their indices, by ranks.
    TopK,
    /// GatherElements / ScatterElements (an index per element along one axis).
    Elements,
    /// GatherND / ScatterND (index tuples picking slices).
    Nd,
    /// GridSample over 2 spatial dims.
    GridSample,
    /// Convolution windows unfolded into GEMM columns, zero outside the image.
    Im2col,
}

impl Kernel {
    pub const ALL: [Kernel; 16] = [Kernel::Copy, Kernel::Unary, Kernel::Binary, Kernel::Where, Kernel::Matmul, Kernel::Conv2d, Kernel::Pool, Kernel::Rows, Kernel::Gather, Kernel::Taps, Kernel::Scan, Kernel::TopK, Kernel::Elements, Kernel::Nd, Kernel::GridSample, Kernel::Im2col];

    /// Storage bindings after the parameters (their element types are `B1`, `B2`, ...).
    pub fn bindings(self) -> usize {
        match self {
            Kernel::Copy | Kernel::Unary | Kernel::Pool | Kernel::Im2col | Kernel::Scan => 2,
            Kernel::Taps | Kernel::GridSample | Kernel::TopK => 3,
            // The indexed kernels' and Binary's fourth buffer is the plan's check flag (see `RunCheck`).
            Kernel::Where | Kernel::Matmul | Kernel::Conv2d | Kernel::Rows | Kernel::Gather | Kernel::Elements | Kernel::Nd | Kernel::Binary => 4,
        }
    }
}

/// Element type of a device buffer. Kernels compute in f32 and convert at loads and stores, so
/// f16 halves memory and bandwidth without f16 accumulation error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Elem {
    F32,
    F16,
}

impl Elem {
    pub fn bytes(self) -> usize {
        match self {
            Elem::F32 => 4,
            Elem::F16 => 2,
        }
    }
}

/// The element-wise expression a Unary or Binary launch computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OpSpec {
    None,
    Unary(UnaryOp),
    /// clamp(x, a, b) with the bounds in the parameters.
    Clip,
    /// Cast to this dtype on f32 carriers.
    Cast(DType),
    Binary(BinaryOp),
}

/// A device buffer to create: its length, element type and, for constants, its contents.
#[derive(Clone, Debug)]
pub struct BufferSpec {
    pub len: usize,
    pub elem: Elem,
    pub init: Option<Arc<Tensor>>,
}

/// One kernel launch: parameters (u32 words) and the buffers bound after them, in order.
#[derive(Clone, Debug)]
pub struct Launch {
    pub kernel: Kernel,
    pub op: OpSpec,
    pub params: Vec<u32>,
    pub bufs: Vec<usize>,
    pub grid: [u32; 3],
}

#[derive(Clone, Debug)]
pub struct PlanInput {
    pub buffer: usize,
    pub name: String,
    pub shape: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct PlanOutput {
    pub buffer: usize,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

/// Values only a run reveals, checked on the device: every Gather/Elements/Nd launch (an index
/// outside its axis) and every integer Add/Sub/Mul (a result beyond 2^24, which the f32 carrier
/// cannot hold exactly) gets a check id (a parameter word) and the plan's one-element flag
/// buffer; a thread that meets such a value writes its launch's id there. The plan's first
/// launch zeroes the flag and its last output is the flag, which [`RunCheck::take`] removes
/// after a run and turns into an error for the node it names.
#[derive(Clone, Debug)]
pub struct RunCheck {
    pub flag: usize,
    /// Check id − 1 -> (node, op, what the check refuses).
    pub nodes: Vec<(String, String, &'static str)>,
}

/// What a failed index check says.
pub const INDEX_OUT_OF_RANGE: &str = "an index out of range for the axis it indexes";
/// What a failed integer check says.
pub const INTEGER_BEYOND_F32: &str = "an integer result beyond ±2^24, which this device's f32 arithmetic cannot hold exactly";
/// The largest integer magnitude f32 carriers hold exactly (every integer up to it).
pub const EXACT_INTEGER: f64 = 16_777_216.0;

impl RunCheck {
    /// Pops the flag (the last output) and fails the run if a check failed.
    pub fn take(check: &Option<RunCheck>, outputs: &mut Vec<Tensor>, device: &str) -> crate::error::Result<()> {
        let Some(c) = check else { return Ok(()) };
        let flag = outputs.pop().map(|t| t.to_f64_vec().first().copied().unwrap_or(0.0)).unwrap_or(0.0);
        if flag == 0.0 {
            return Ok(());
        }
        let (node, op, what) = c.nodes.get(flag as usize - 1).cloned().unwrap_or(("?".into(), "?".into(), "a device check failed"));
        Err(crate::error::Error::Tensor(format!("{what} (checked on {device})")).in_node(&node, &op))
    }
}

/// Integer inputs ride on f32 carriers: a value beyond ±2^24 would be rounded on upload, so it
/// is refused instead.
pub fn check_exact_integers(t: &Tensor, name: &str, device: &str) -> crate::error::Result<()> {
    match beyond_exact_integer(t) {
        Some(v) => Err(crate::error::Error::Input(format!("input '{name}' holds {v}, beyond ±2^24: {device} carries integers as f32, which would round it"))),
        None => Ok(()),
    }
}

/// The first value of an integer tensor that an f32 carrier cannot hold exactly (beyond
/// ±2^24); None for float and bool tensors and for integers that fit.
pub fn beyond_exact_integer(t: &Tensor) -> Option<f64> {
    if t.dtype().is_float() || t.dtype() == DType::Bool {
        return None;
    }
    t.to_f64_vec().into_iter().find(|v| v.abs() > EXACT_INTEGER)
}

/// A bound graph as buffers and launches, in execution order.
#[derive(Clone, Debug)]
pub struct GpuPlan {
    pub buffers: Vec<BufferSpec>,
    pub launches: Vec<Launch>,
    pub inputs: Vec<PlanInput>,
    /// The graph's outputs, then the index check's flag where there is one.
    pub outputs: Vec<PlanOutput>,
    pub run_check: Option<RunCheck>,
    /// Which launches each node became, in order (for timing nodes one by one).
    pub spans: Vec<NodeSpan>,
}

/// The launches one graph node was lowered to (none where another node's launch absorbed it).
#[derive(Clone, Debug)]
pub struct NodeSpan {
    pub time: crate::backend::NodeTime,
    pub launches: std::ops::Range<usize>,
}

/// Unary ops every GPU backend implements (each backend's expression table covers these).
pub fn unary_supported(op: UnaryOp) -> bool {
    use UnaryOp::*;
    matches!(
        op,
        Relu | Sigmoid | Tanh | Erf | Exp | Log | Sqrt | Neg | Abs | Reciprocal | Floor | Ceil | Round | Sign | Sin | Cos | Tan | Asin | Acos | Atan | Sinh | Cosh | Asinh | Acosh | Atanh
            | Softsign | Softplus | HardSwish | Mish | Swish(_) | LeakyRelu(_) | Elu(_) | Celu(_) | Selu { .. } | ThresholdedRelu(_) | HardSigmoid { .. } | Gelu { .. } | IsNaN | IsInf { .. } | Not
    )
}

/// Binary ops every GPU backend implements.
pub fn binary_supported(op: BinaryOp) -> bool {
    use BinaryOp::*;
    matches!(op, Add | Sub | Mul | Div | Pow | Max | Min | Mod { .. } | Equal | Less | LessOrEqual | Greater | GreaterOrEqual | And | Or | Xor)
}

/// Ops whose f32 arithmetic is exact on integer carriers (below 2^24, where f32 holds every
/// integer): integer tensors may use them. Division is not (it truncates).
fn integer_exact(op: &Op) -> bool {
    use BinaryOp::*;
    match op {
        Op::Binary(b) => matches!(b, Add | Sub | Mul | Max | Min | Mod { .. }) || b.is_comparison() || b.is_logical(),
        Op::Unary(u) => matches!(u, UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Sign | UnaryOp::Not),
        _ => false,
    }
}

/// Every (unary or binary) op the GPU kernels are specialised for.
pub fn all_ops() -> Vec<OpSpec> {
    use BinaryOp::*;
    use UnaryOp::*;
    let unary = [
        Relu, Sigmoid, Tanh, Erf, Exp, Log, Sqrt, Neg, Abs, Reciprocal, Floor, Ceil, Round, Sign, Sin, Cos, Tan, Asin, Acos, Atan, Sinh, Cosh, Asinh, Acosh, Atanh, Softsign, Softplus,
        HardSwish, Mish, Swish(1.0), LeakyRelu(0.1), Elu(1.0), Celu(1.0), Selu { alpha: 1.67, gamma: 1.05 }, ThresholdedRelu(1.0), HardSigmoid { alpha: 0.2, beta: 0.5 },
        Gelu { tanh: false }, Gelu { tanh: true }, IsNaN, IsInf { negative: true, positive: false }, Not,
    ];
    let binary = [Add, Sub, Mul, Div, Pow, Max, Min, Mod { fmod: true }, Mod { fmod: false }, Equal, Less, LessOrEqual, Greater, GreaterOrEqual, And, Or, Xor];
    let mut v: Vec<OpSpec> = unary.into_iter().map(OpSpec::Unary).collect();
    v.extend([OpSpec::Clip, OpSpec::Cast(DType::F32), OpSpec::Cast(DType::I64), OpSpec::Cast(DType::Bool), OpSpec::Cast(DType::BF16)]);
    v.extend(binary.into_iter().map(OpSpec::Binary));
    v
}

/// Whether the GPU kernels cover `n` with its inferred types (static shapes, rank <= 6,
/// f32 data; integer and bool tensors only where f32 carries them exactly).
pub fn support(graph: &Graph, n: NodeIndex, stores_f16: bool) -> Support {
    let node = &graph.g[n];
    if matches!(node.op, Op::Input | Op::Constant { .. }) || node.outputs.iter().all(|v| v.value.is_some()) {
        return Support::Yes;
    }
    let ins: Vec<Option<&crate::graph::Value>> = (0..node.num_inputs).map(|i| graph.input_value(n, i)).collect();
    if node.outputs.iter().chain(ins.iter().flatten().copied()).any(|v| v.shape.is_none()) {
        return Support::No("shapes known only at run time".into());
    }
    if node.outputs.iter().chain(ins.iter().flatten().copied()).any(|v| v.shape.as_ref().is_some_and(|s| s.len() > 6)) {
        return Support::No("rank above 6".into());
    }
    let dt = |i: usize| ins.get(i).copied().flatten().and_then(|v| v.dtype);
    // Integer constants are parameters (axes, shapes), not data the kernels read.
    // f16 tensors live in f16 buffers (the kernels compute in f32 and convert on load and store)
    // where the device stores f16.
    // bfloat16 tensors ride on f32 carriers (computed in f32, rounded back at Casts and outputs).
    let float = |d: Option<DType>| matches!(d, Some(DType::F32 | DType::BF16)) || (stores_f16 && d == Some(DType::F16));
    let all_float = ins.iter().flatten().filter(|v| v.value.is_none() || v.dtype.is_some_and(|d| d.is_float())).all(|v| float(v.dtype));
    let carried = |d: Option<DType>| float(d) || matches!(d, Some(DType::I64 | DType::I32 | DType::Bool | DType::I8 | DType::U8));
    let in_shape = |i: usize| ins.get(i).copied().flatten().and_then(|v| v.shape.as_deref());
    let rank = in_shape(0).map_or(0, |s| s.len());
    let constant_or_absent = |i: usize| graph.source(n, i).is_none() || graph.input_const(n, i).is_some();
    let index = |d: Option<DType>| matches!(d, Some(DType::I64 | DType::I32));
    let extra_outputs_unused = node.outputs.iter().skip(1).all(|v| v.name.is_empty());
    let ok = match &node.op {
        Op::Identity | Op::Flatten { .. } | Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } | Op::Transpose { .. } | Op::Slice | Op::Expand | Op::Concat { .. } => carried(dt(0)),
        Op::Unary(u) => unary_supported(*u) && (all_float || (integer_exact(&node.op) && carried(dt(0)))),
        Op::Binary(b) => binary_supported(*b) && (all_float || (integer_exact(&node.op) && carried(dt(0)))),
        Op::Where => dt(0) == Some(DType::Bool) && carried(dt(1)),
        Op::Clip { .. } => all_float && (1..3).all(|i| ins.get(i).copied().flatten().is_none_or(|v| v.value.is_some())),
        Op::Cast { to } => carried(dt(0)) && carried(Some(*to)),
        Op::CastLike => carried(dt(0)) && carried(dt(1)),
        Op::ArgExtreme { .. } => all_float,
        Op::RmsNorm { .. } => all_float && layout::rms_len(graph, n).is_some(),
        // 3-D convolutions run as im2col + GEMM: grouped ones one GEMM per group, from constant
        // weights (and bias) sliced at lowering.
        Op::Conv { group, .. } => all_float && (matches!(rank, 3 | 4) || (rank == 5 && (*group == 1 || (1..3).all(constant_or_absent) && graph.input_const(n, 1).is_some()))),
        Op::Pool { kind, .. } => all_float && !matches!(kind, PoolKind::Lp { .. }) && matches!(rank, 3..=5),
        Op::GlobalPool { kind } => all_float && !matches!(kind, PoolKind::Lp { .. }),
        Op::Reduce { .. } => all_float && layout::reduce_plan(graph, n).is_some(),
        Op::Softmax { .. } => all_float,
        Op::Split { .. } => carried(dt(0)),
        Op::DepthToSpace { .. } | Op::SpaceToDepth { .. } => carried(dt(0)) && rank == 4,
        Op::Pad { .. } => carried(dt(0)) && graph.input_const(n, 1).is_some() && (2..4).all(constant_or_absent),
        Op::Tile => carried(dt(0)) && graph.input_const(n, 1).and_then(|r| r.to_i64_vec().ok()).is_some_and(|r| in_shape(0).is_some_and(|s| layout::tile_view(s, &r).is_some())),
        Op::Resize(_) => carried(dt(0)) && layout::resize_tables(graph, n).is_some(),
        Op::BatchNorm { .. } => all_float && rank >= 2 && (1..5).all(|i| graph.input_const(n, i).is_some()) && extra_outputs_unused,
        Op::InstanceNorm { .. } => all_float && rank >= 3 && (1..3).all(|i| graph.input_const(n, i).is_some()),
        Op::Variadic { op, .. } => all_float && binary_supported(*op),
        Op::Trilu { .. } => carried(dt(0)) && rank >= 2 && constant_or_absent(1),
        Op::Cumulative { .. } => carried(dt(0)) && graph.input_const(n, 1).is_some(),
        Op::Attention(_) => {
            (0..3).all(|i| float(dt(i))) && (dt(3).is_none() || float(dt(3)) || dt(3) == Some(DType::Bool)) && lower::attention_supported(graph, n)
        }
        Op::Einsum { .. } => all_float && lower::einsum_route(graph, n).is_some(),
        // Ranks cost a pass over the lane per element: lanes up to 16384 long.
        Op::TopK { axis, .. } => {
            let len = in_shape(0).and_then(|s| crate::tensor::norm_axis(*axis, s.len()).ok().map(|a| s[a]));
            carried(dt(0)) && graph.input_const(n, 1).is_some() && len.is_some_and(|l| l <= TOPK_MAX_LEN)
        }
        Op::Rotary { rotary_dim, num_heads, .. } => {
            let geo = in_shape(0).zip(in_shape(1)).and_then(|(x, c)| RotaryGeometry::new(x, c, *rotary_dim, *num_heads).ok());
            let rows = |s: Option<&[usize]>, tail: usize| geo.is_some_and(|g| s.is_some_and(|s| s.iter().product::<usize>() == g.batch * g.seq * tail));
            // Rows of cos/sin picked by position ids [batch, seq], or given as [batch, seq, half].
            let cache_rows = match graph.source(n, 3) {
                Some(_) => index(dt(3)) && rows(in_shape(3), 1),
                None => geo.is_some_and(|g| rows(in_shape(1), g.half) && rows(in_shape(2), g.half)),
            };
            (0..3).all(|i| float(dt(i))) && cache_rows && in_shape(1) == in_shape(2)
        }
        Op::GridSample(_) => all_float && rank == 4 && in_shape(1).is_some_and(|g| g.len() == 4 && g[3] == 2),
        Op::GatherElements { .. } => carried(dt(0)) && rank <= 6 && index(dt(1)),
        Op::ScatterElements { reduction, .. } => *reduction == crate::graph::Reduction::None && carried(dt(0)) && rank <= 6 && index(dt(1)) && carried(dt(2)),
        Op::GatherNd { batch_dims: 0 } => carried(dt(0)) && index(dt(1)) && in_shape(1).and_then(|s| s.last()).is_some_and(|&q| q <= 6),
        Op::ScatterNd { reduction } => *reduction == crate::graph::Reduction::None && carried(dt(0)) && index(dt(1)) && carried(dt(2)) && in_shape(1).and_then(|s| s.last()).is_some_and(|&q| q <= 6),
        Op::ConvTranspose { window, output_padding, output_shape, group } => {
            let (xs, ws, out) = (in_shape(0), in_shape(1), node.outputs[0].shape.as_deref());
            all_float && (matches!(rank, 3 | 4) || (rank == 5 && *group == 1)) && graph.input_const(n, 1).is_some() && matches!((xs, ws, out), (Some(x), Some(w), Some(o)) if layout::convtranspose_zero_insertion(window, x, w, output_padding, output_shape, o).is_ok())
        }
        Op::LayerNorm { .. } => all_float,
        Op::Gemm { .. } => all_float,
        Op::MatMul => all_float && layout::matmul_batches(graph, n).is_some(),
        Op::Gather { .. } => carried(dt(0)) && index(dt(1)),
        _ => false,
    };
    if ok {
        Support::Yes
    } else {
        let types: Vec<String> = ins.iter().map(|v| v.and_then(|v| v.dtype).map(|d| d.to_string()).unwrap_or_else(|| "-".into())).collect();
        Support::No(format!("{} with inputs ({}) has no GPU kernel", node.op.name(), types.join(", ")))
    }
}
