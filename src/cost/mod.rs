//! The cost model: what a node costs on a device, what a tensor costs to move between two
//! devices, and how much memory a set of nodes needs on one. Partitioners read only the
//! [`CostModel`] trait; [`Roofline`] is its first implementation, driven by [`DeviceProfile`]s
//! that `hetsched profile` measures (or that describe virtual devices) and that calibration on
//! real models corrects per op class.

pub mod calibrate;
pub mod curve;
pub mod fidelity;
pub mod link;
pub mod memory;
pub mod op_benches;
pub mod profile;
pub mod profiler;
pub mod roofline;
pub mod store;
pub mod virtual_device;

pub use curve::Curve;
pub use link::Link;
pub use profile::{DeviceProfile, Fingerprint, ProfileKind, ProfileSet};
pub use roofline::Roofline;

use crate::error::Result;
use crate::graph::{Graph, Op};
use petgraph::stable_graph::NodeIndex;

/// Predicts times and memory. Implementations may be analytic (the roofline), table-driven or
/// learned; partitioners see only this.
pub trait CostModel: Send + Sync {
    /// The devices this model can predict, by the names plans use.
    fn devices(&self) -> Vec<String>;
    /// Predicted milliseconds of `node` on `device` (0 for inputs, weights and folded values).
    fn node_ms(&self, graph: &Graph, node: NodeIndex, device: &str) -> Result<f64>;
    /// Predicted milliseconds to move `bytes` from one device's memory to another's (0 when
    /// `from == to`; through host memory where there is no direct path).
    fn transfer_ms(&self, from: &str, to: &str, bytes: u64) -> Result<f64>;
    /// Fixed cost of one executable run on `device` (a submit and its wait on a GPU).
    fn run_overhead_ms(&self, device: &str) -> Result<f64>;
    /// Bytes `nodes` need on `device` when run in the given (topological) order: weights they
    /// read, peak live activations, and the device's workspace.
    fn memory_bytes(&self, graph: &Graph, nodes: &[NodeIndex], device: &str) -> Result<u64>;
    /// The device's memory capacity, where known.
    fn capacity_bytes(&self, device: &str) -> Option<u64>;
}

/// Groups of ops that share a throughput curve: they stress a device the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpClass {
    /// Matrix products: Gemm, MatMul, 1x1 convolutions, attention and einsum products, and
    /// recurrent layers (a product per time step). Rate in FLOP/s over FLOPs.
    Gemm,
    /// Matrix products with fewer than 32 rows (batch-1 classifier heads, matrix-vector):
    /// bound by streaming the weights, with a curve of their own. Rate in bytes/s over bytes.
    Thin,
    /// Ungrouped convolutions with a window. Rate in FLOP/s over FLOPs.
    Conv,
    /// Grouped and depthwise convolutions. Rate in FLOP/s over FLOPs.
    Depthwise,
    /// Per-element arithmetic. Rate in bytes/s over bytes moved.
    Elementwise,
    /// Reductions, softmax, normalisations, global pooling. Rate in bytes/s over bytes moved.
    Reduction,
    /// Windowed pooling (max, average, Lp): work grows with the window. Rate in FLOP/s
    /// (window comparisons) over FLOPs.
    Pool,
    /// Copies that rearrange data (transpose, concat, slice, gather, resize). Rate in bytes/s over bytes.
    Movement,
    /// Reshapes and other views: a launch at most.
    View,
    /// Everything else: the roofline of the device's general rates.
    Other,
}

impl OpClass {
    pub const ALL: [OpClass; 10] = [OpClass::Gemm, OpClass::Thin, OpClass::Conv, OpClass::Depthwise, OpClass::Elementwise, OpClass::Reduction, OpClass::Pool, OpClass::Movement, OpClass::View, OpClass::Other];

    /// Whether the class's curve is in FLOP/s over FLOPs (else bytes/s over bytes).
    pub fn compute_bound(self) -> bool {
        matches!(self, OpClass::Gemm | OpClass::Conv | OpClass::Pool | OpClass::Depthwise | OpClass::Other)
    }

    pub fn name(self) -> &'static str {
        match self {
            OpClass::Gemm => "gemm",
            OpClass::Thin => "thin",
            OpClass::Conv => "conv",
            OpClass::Depthwise => "depthwise",
            OpClass::Elementwise => "elementwise",
            OpClass::Reduction => "reduction",
            OpClass::Pool => "pool",
            OpClass::Movement => "movement",
            OpClass::View => "view",
            OpClass::Other => "other",
        }
    }
}

/// The class of an op, by how it uses the device.
pub fn op_class(op: &Op) -> OpClass {
    match op {
        Op::Conv { window, group, .. } if *group == 1 && window.kernel_shape.iter().all(|&k| k == 1) => OpClass::Gemm,
        Op::Conv { group, .. } if *group > 1 => OpClass::Depthwise,
        Op::Conv { .. } | Op::ConvTranspose { .. } | Op::QLinearConv { .. } | Op::ConvInteger { .. } => OpClass::Conv,
        Op::Gemm { .. } | Op::MatMul | Op::MatMulInteger | Op::QLinearMatMul | Op::Attention(_) | Op::Einsum { .. } | Op::Recurrent(_) => OpClass::Gemm,
        Op::Unary(_) | Op::Binary(_) | Op::Clip { .. } | Op::Where | Op::Variadic { .. } | Op::Cast { .. } | Op::CastLike | Op::BatchNorm { .. } | Op::Prelu | Op::Shrink { .. } | Op::QuantizeLinear { .. } | Op::DequantizeLinear { .. } => OpClass::Elementwise,
        Op::Pool { .. } => OpClass::Pool,
        Op::Reduce { .. } | Op::GlobalPool { .. } | Op::Softmax { .. } | Op::LayerNorm { .. } | Op::RmsNorm { .. } | Op::InstanceNorm { .. } | Op::GroupNorm { .. } | Op::Lrn { .. } | Op::LpNorm { .. } | Op::ArgExtreme { .. } | Op::Hardmax { .. } | Op::Cumulative { .. } => OpClass::Reduction,
        Op::Transpose { .. } | Op::Concat { .. } | Op::Slice | Op::Split { .. } | Op::Gather { .. } | Op::GatherElements { .. } | Op::GatherNd { .. } | Op::Expand | Op::Tile | Op::Pad { .. } | Op::Resize(_) | Op::DepthToSpace { .. } | Op::SpaceToDepth { .. } | Op::ScatterNd { .. } | Op::ScatterElements { .. } | Op::Trilu { .. } | Op::Rotary { .. } => OpClass::Movement,
        op if op.is_layout_only() => OpClass::View,
        Op::Shape { .. } | Op::Size => OpClass::View,
        _ => OpClass::Other,
    }
}

/// The work a node does, as the cost model measures it.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Work {
    pub flops: f64,
    /// Bytes read and written (a movement op reads about what it writes, whatever its input's size).
    pub bytes: f64,
    /// Bytes of its outputs: what a fused activation runs over.
    pub written: f64,
    /// Dependent steps the work runs in, one after another (a recurrent layer's time steps);
    /// 0 or 1 for work done at once. Each step is a small product of its own.
    pub steps: f64,
    /// `None` for nodes that cost nothing to run (inputs, weights, values folded at plan time).
    pub class: Option<OpClass>,
}

/// The op type calibration keys on (what [`crate::backend::NodeTime`] records).
pub fn op_type(graph: &Graph, node: NodeIndex) -> String {
    crate::backend::NodeTime::of(&graph.g[node], 0.0).op_type
}

/// What `node` does: its class, FLOPs and bytes moved.
pub fn node_work(graph: &Graph, node: NodeIndex) -> Work {
    let n = &graph.g[node];
    if !n.is_compute() {
        return Work::default();
    }
    let c = crate::analysis::node_cost(graph, node);
    let mut class = op_class(&n.op);
    if class == OpClass::Gemm && product_rows(graph, node).is_some_and(|r| r < THIN_ROWS) {
        class = OpClass::Thin;
    }
    let bytes = match class {
        OpClass::Movement => 2 * c.bytes_written,
        _ => c.bytes_read + c.bytes_written,
    };
    Work { flops: c.flops as f64, bytes: bytes as f64, written: c.bytes_written as f64, steps: recurrent_steps(n) as f64, class: Some(class) }
}

/// A recurrent layer's sequential steps: its time steps, once per direction.
fn recurrent_steps(n: &crate::graph::Node) -> usize {
    let Op::Recurrent(a) = &n.op else { return 0 };
    // Y is [seq, directions, batch, hidden], or [batch, seq, directions, hidden] batch-first.
    let seq = n.outputs.first().and_then(|o| o.shape.as_ref()).and_then(|s| s.get(usize::from(a.batch_first)).copied()).unwrap_or(1);
    seq * a.directions.max(1)
}

/// Products with fewer rows than this are [`OpClass::Thin`].
pub const THIN_ROWS: usize = 32;

/// The rows of a matrix product's output: all dims but the last for MatMul/Gemm, batch × spatial
/// positions for a 1x1 convolution.
fn product_rows(graph: &Graph, node: NodeIndex) -> Option<usize> {
    let n = &graph.g[node];
    let shape = n.outputs.first()?.shape.as_ref()?;
    match n.op {
        Op::Conv { .. } => Some(shape.first().copied().unwrap_or(1) * shape.iter().skip(2).product::<usize>()),
        Op::Gemm { .. } | Op::MatMul | Op::MatMulInteger | Op::QLinearMatMul => Some(shape.iter().rev().skip(1).product()),
        _ => None,
    }
}
