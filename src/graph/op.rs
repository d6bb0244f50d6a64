//! The operator enum. One variant per operator family, attributes typed and validated at load.

use crate::tensor::{DType, Tensor};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum UnaryOp {
    Relu,
    Sigmoid,
    Tanh,
    Erf,
    Exp,
    Log,
    Sqrt,
    Neg,
    Abs,
    Reciprocal,
    Floor,
    Ceil,
    Round,
    Sign,
    Sin,
    Cos,
    Not,
    Softplus,
    Softsign,
    HardSwish,
    Mish,
    LeakyRelu(f32),
    Elu(f32),
    Selu { alpha: f32, gamma: f32 },
    HardSigmoid { alpha: f32, beta: f32 },
    ThresholdedRelu(f32),
    Gelu { tanh: bool },
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Asinh,
    Acosh,
    Atanh,
    Celu(f32),
    Swish(f32),
    IsNaN,
    IsInf { negative: bool, positive: bool },
    BitwiseNot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
    Mod { fmod: bool },
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    And,
    Or,
    Xor,
    BitShift { left: bool },
    BitwiseAnd,
    BitwiseOr,
    BitwiseXor,
}

impl BinaryOp {
    pub fn is_comparison(self) -> bool {
        use BinaryOp::*;
        matches!(self, Equal | Less | LessOrEqual | Greater | GreaterOrEqual)
    }
    pub fn is_logical(self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or | BinaryOp::Xor)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

/// An activation fused into the op producing its input (Conv, Gemm).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum Activation {
    Relu,
    Clip { min: f32, max: f32 },
    /// `x * sigmoid(alpha * x)` (SiLU at alpha 1).
    Swish(f32),
    /// `x * clamp(x / 6 + 1/2, 0, 1)` (MobileNetV3's).
    HardSwish,
}

impl Activation {
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Relu => x.max(0.0),
            Activation::Clip { min, max } => x.max(min).min(max),
            Activation::Swish(alpha) => x / (1.0 + (-alpha * x).exp()),
            Activation::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum AutoPad {
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

/// Spatial window attributes shared by Conv and pooling.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Window {
    /// Empty means "from the weight" (Conv only).
    pub kernel_shape: Vec<usize>,
    pub strides: Vec<usize>,
    /// ONNX layout: all begins, then all ends. Empty means zeros.
    pub pads: Vec<usize>,
    pub dilations: Vec<usize>,
    pub auto_pad: AutoPad,
    pub ceil_mode: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum PoolKind {
    Max,
    Average { count_include_pad: bool },
    Lp { p: i64 },
}

#[derive(Clone, Debug, serde::Serialize)]
pub enum Op {
    /// A graph input; its declared dtype and symbolic shape live in the graph's input list.
    Input,
    /// An initializer (`initializer: true`) or a Constant node / folded value.
    Constant {
        #[serde(skip)]
        value: Arc<Tensor>,
        initializer: bool,
    },
    /// Identity, and Dropout in inference mode.
    Identity,
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// Sum/Max/Min/Mean over any number of inputs.
    Variadic { op: BinaryOp, mean: bool },
    /// min/max from opset < 11 attributes; later opsets pass them as inputs 1 and 2.
    Clip { min: Option<f32>, max: Option<f32> },
    Conv { window: Window, group: usize, activation: Option<Activation> },
    Pool { kind: PoolKind, window: Window },
    GlobalPool { kind: PoolKind },
    BatchNorm { epsilon: f32 },
    Gemm { alpha: f32, beta: f32, trans_a: bool, trans_b: bool, activation: Option<Activation> },
    MatMul,
    Flatten { axis: i64 },
    Reshape { allowzero: bool },
    Transpose { perm: Option<Vec<usize>> },
    Concat { axis: i64 },
    /// axes from the attribute (opset < 13) or from input 1.
    Squeeze { axes: Option<Vec<i64>> },
    Unsqueeze { axes: Option<Vec<i64>> },
    Slice,
    Cast { to: DType },
    Shape { start: i64, end: Option<i64> },
    Size,
    Gather { axis: i64 },
    GatherElements { axis: i64 },
    Reduce { op: ReduceOp, axes: Option<Vec<i64>>, keepdims: bool, noop_with_empty_axes: bool },
    ArgExtreme { max: bool, axis: i64, keepdims: bool, select_last_index: bool },
    ConstantOfShape {
        #[serde(skip)]
        value: Arc<Tensor>,
    },
    Expand,
    Range,
    Where,
    Softmax { axis: i64, log: bool, legacy: bool },
    LayerNorm { axis: i64, epsilon: f32 },
    /// Cast to the dtype of input 1.
    CastLike,
    /// Split along `axis` into `outputs` pieces (sizes from the `split` attribute or input 1).
    Split { axis: i64, split: Option<Vec<i64>> },
    Trilu { upper: bool },
    RmsNorm { axis: i64, epsilon: f32 },
    Pad { mode: PadMode },
    Cumulative { product: bool, exclusive: bool, reverse: bool },
    Hardmax { axis: i64 },
    TopK { axis: i64, largest: bool },
    LpNorm { axis: i64, p: i64 },
    OneHot { axis: i64 },
    DepthToSpace { blocksize: usize, crd: bool },
    SpaceToDepth { blocksize: usize },
    Compress { axis: Option<i64> },
    GatherNd { batch_dims: usize },
    ScatterNd { reduction: Reduction },
    ScatterElements { axis: i64, reduction: Reduction },
    EyeLike { dtype: Option<DType>, k: i64 },
    Tile,
    NonZero,
    /// Boxes kept per (batch, class) by greedy IoU suppression; `center_point_box` selects
    /// [x_center, y_center, w, h] over corner pairs.
    NonMaxSuppression { center_point_box: bool },
    GridSample(GridSampleAttrs),
    /// u8 quantisation with scale and zero point computed from the data's range.
    DynamicQuantizeLinear,
    /// Integer matmul of zero-point-shifted 8-bit operands, int32 result.
    MatMulInteger,
    /// Quantised matmul: dequantise, multiply, requantise to the output's scale and zero point.
    QLinearMatMul,
    /// Quantised convolution (x, its scale and zero point, w, per-channel scales and zero points,
    /// y's scale and zero point, int32 bias).
    QLinearConv { window: Window, group: usize },
    /// Integer convolution of zero-point-shifted 8-bit operands, int32 result.
    ConvInteger { window: Window, group: usize },
    RoiAlign(RoiAlignAttrs),
    /// Reinterprets the element bits as another type of the same width.
    BitCast { to: DType },
    /// Sampling grid of an affine transform (for GridSample), of the size the input holds.
    AffineGrid { align_corners: bool },
    /// Hann, Hamming or Blackman window of the length the input holds.
    SignalWindow { kind: WindowKind, periodic: bool, dtype: DType },
    InstanceNorm { epsilon: f32 },
    GroupNorm { groups: usize, epsilon: f32 },
    Lrn { size: usize, alpha: f32, beta: f32, bias: f32 },
    QuantizeLinear { axis: i64, to: Option<DType>, saturate: bool },
    DequantizeLinear { axis: i64 },
    ReverseSequence { batch_axis: usize, time_axis: usize },
    ConvTranspose { window: Window, group: usize, output_padding: Vec<usize>, output_shape: Vec<usize> },
    /// NegativeLogLikelihoodLoss, or SoftmaxCrossEntropyLoss (`softmax: true`, which also
    /// returns the log-probabilities as an optional second output).
    Loss { softmax: bool, reduction: LossReduction, ignore_index: Option<i64> },
    Attention(AttentionAttrs),
    /// RNN, GRU and LSTM.
    Recurrent(RnnAttrs),
    Prelu,
    Shrink { bias: f32, lambd: f32 },
    /// Resize, and Upsample (`upsample: true`: scales are input 1, asymmetric coordinates).
    Resize(ResizeAttrs),
    Einsum { equation: String },
    Unique { axis: Option<i64>, sorted: bool },
    CenterCropPad { axes: Option<Vec<i64>> },
    Rotary { interleaved: bool, rotary_dim: usize, num_heads: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ResizeMode {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ResizeAttrs {
    pub mode: ResizeMode,
    pub coord: String,
    pub nearest: String,
    pub cubic_a: f64,
    pub exclude_outside: bool,
    pub extrapolation: f32,
    pub antialias: bool,
    pub axes: Option<Vec<i64>>,
    pub aspect: String,
    /// Opset-10 Resize and Upsample take scales as input 1 (no roi).
    pub scales_input: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum LossReduction {
    None,
    Sum,
    Mean,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AttentionAttrs {
    pub is_causal: bool,
    pub q_num_heads: usize,
    pub kv_num_heads: usize,
    pub scale: Option<f32>,
    pub softcap: f32,
    pub qk_matmul_output_mode: i64,
    /// Sliding window around each query's absolute position; -1 leaves a side unbounded.
    pub left_window: i64,
    pub right_window: i64,
}

impl AttentionAttrs {
    /// Whether the causal mask or sliding window hides a key `diff` positions before the query
    /// (negative: after it), both at their absolute positions.
    pub fn hides(&self, diff: i64) -> bool {
        (self.is_causal && diff < 0) || (self.left_window >= 0 && diff > self.left_window) || (self.right_window >= 0 && -diff > self.right_window)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum WindowKind {
    Hann,
    Hamming,
    Blackman,
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct RoiAlignAttrs {
    /// Average the samples of a bin (else take the largest weighted sample).
    pub avg: bool,
    /// Shift box corners by half a pixel (`half_pixel`; `output_half_pixel` does not).
    pub half_pixel: bool,
    pub output_height: usize,
    pub output_width: usize,
    /// Samples per bin side; 0 chooses ceil(bin size).
    pub sampling_ratio: usize,
    pub spatial_scale: f32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum GridInterp {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum GridPadding {
    Zeros,
    Border,
    Reflection,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GridSampleAttrs {
    pub mode: GridInterp,
    pub padding: GridPadding,
    pub align_corners: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum RnnKind {
    Rnn,
    Gru,
    Lstm,
}

impl RnnKind {
    /// Gates per cell: the row blocks of W and R.
    pub fn gates(self) -> usize {
        match self {
            RnnKind::Rnn => 1,
            RnnKind::Gru => 3,
            RnnKind::Lstm => 4,
        }
    }
    /// Activation functions per direction (f; f, g; f, g, h).
    pub fn activations(self) -> usize {
        match self {
            RnnKind::Rnn => 1,
            RnnKind::Gru => 2,
            RnnKind::Lstm => 3,
        }
    }
}

/// The activation functions the recurrent ops name in their `activations` attribute.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum RnnActivation {
    Relu,
    Tanh,
    Sigmoid,
    Affine(f32, f32),
    LeakyRelu(f32),
    ThresholdedRelu(f32),
    ScaledTanh(f32, f32),
    HardSigmoid(f32, f32),
    Elu(f32),
    Softsign,
    Softplus,
}

impl RnnActivation {
    pub fn apply(self, x: f32) -> f32 {
        match self {
            RnnActivation::Relu => x.max(0.0),
            RnnActivation::Tanh => x.tanh(),
            RnnActivation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            RnnActivation::Affine(a, b) => a * x + b,
            RnnActivation::LeakyRelu(a) => if x < 0.0 { a * x } else { x },
            RnnActivation::ThresholdedRelu(a) => if x > a { x } else { 0.0 },
            RnnActivation::ScaledTanh(a, b) => a * (b * x).tanh(),
            RnnActivation::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
            RnnActivation::Elu(a) => if x < 0.0 { a * (x.exp() - 1.0) } else { x },
            RnnActivation::Softsign => x / (1.0 + x.abs()),
            RnnActivation::Softplus => if x > 20.0 { x } else { x.exp().ln_1p() },
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RnnAttrs {
    pub kind: RnnKind,
    pub hidden: usize,
    /// 1 (forward or reverse) or 2 (bidirectional).
    pub directions: usize,
    /// Single direction running backwards in time.
    pub reverse: bool,
    /// 0: X is [seq, batch, input]; 1: [batch, seq, input] (and the outputs likewise).
    pub batch_first: bool,
    pub clip: Option<f32>,
    /// `kind.activations()` per direction, forward first.
    pub activations: Vec<RnnActivation>,
    /// GRU: apply the reset gate after the recurrent product.
    pub linear_before_reset: bool,
    /// LSTM: couple the input and forget gates (f = 1 - i).
    pub input_forget: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Reduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

impl Op {
    pub fn name(&self) -> String {
        match self {
            Op::Input => "Input".into(),
            Op::Constant { .. } => "Constant".into(),
            Op::Identity => "Identity".into(),
            Op::Unary(u) => format!("{u:?}").split([' ', '(', '{']).next().unwrap_or("Unary").to_string(),
            Op::Binary(b) => match b {
                BinaryOp::Mod { .. } => "Mod".into(),
                b => format!("{b:?}"),
            },
            Op::Variadic { op, mean } => match (op, mean) {
                (_, true) => "Mean".into(),
                (BinaryOp::Add, _) => "Sum".into(),
                (op, _) => format!("{op:?}"),
            },
            Op::Clip { .. } => "Clip".into(),
            Op::Conv { activation, .. } => with_activation("Conv", activation),
            Op::Pool { kind, .. } => match kind {
                PoolKind::Max => "MaxPool".into(),
                PoolKind::Average { .. } => "AveragePool".into(),
                PoolKind::Lp { .. } => "LpPool".into(),
            },
            Op::GlobalPool { kind } => match kind {
                PoolKind::Max => "GlobalMaxPool".into(),
                PoolKind::Average { .. } => "GlobalAveragePool".into(),
                PoolKind::Lp { .. } => "GlobalLpPool".into(),
            },
            Op::BatchNorm { .. } => "BatchNormalization".into(),
            Op::Gemm { activation, .. } => with_activation("Gemm", activation),
            Op::MatMul => "MatMul".into(),
            Op::Flatten { .. } => "Flatten".into(),
            Op::Reshape { .. } => "Reshape".into(),
            Op::Transpose { .. } => "Transpose".into(),
            Op::Concat { .. } => "Concat".into(),
            Op::Squeeze { .. } => "Squeeze".into(),
            Op::Unsqueeze { .. } => "Unsqueeze".into(),
            Op::Slice => "Slice".into(),
            Op::Cast { .. } => "Cast".into(),
            Op::Shape { .. } => "Shape".into(),
            Op::Size => "Size".into(),
            Op::Gather { .. } => "Gather".into(),
            Op::GatherElements { .. } => "GatherElements".into(),
            Op::Reduce { op, .. } => format!("Reduce{op:?}"),
            Op::ArgExtreme { max, .. } => if *max { "ArgMax" } else { "ArgMin" }.into(),
            Op::ConstantOfShape { .. } => "ConstantOfShape".into(),
            Op::Expand => "Expand".into(),
            Op::Range => "Range".into(),
            Op::Where => "Where".into(),
            Op::Softmax { log, .. } => if *log { "LogSoftmax" } else { "Softmax" }.into(),
            Op::LayerNorm { .. } => "LayerNormalization".into(),
            Op::CastLike => "CastLike".into(),
            Op::Split { .. } => "Split".into(),
            Op::Trilu { .. } => "Trilu".into(),
            Op::RmsNorm { .. } => "RMSNormalization".into(),
            Op::Pad { .. } => "Pad".into(),
            Op::Cumulative { product, .. } => if *product { "CumProd" } else { "CumSum" }.into(),
            Op::Hardmax { .. } => "Hardmax".into(),
            Op::TopK { .. } => "TopK".into(),
            Op::LpNorm { .. } => "LpNormalization".into(),
            Op::OneHot { .. } => "OneHot".into(),
            Op::DepthToSpace { .. } => "DepthToSpace".into(),
            Op::SpaceToDepth { .. } => "SpaceToDepth".into(),
            Op::Compress { .. } => "Compress".into(),
            Op::GatherNd { .. } => "GatherND".into(),
            Op::ScatterNd { .. } => "ScatterND".into(),
            Op::ScatterElements { .. } => "ScatterElements".into(),
            Op::EyeLike { .. } => "EyeLike".into(),
            Op::Tile => "Tile".into(),
            Op::NonZero => "NonZero".into(),
            Op::NonMaxSuppression { .. } => "NonMaxSuppression".into(),
            Op::GridSample(_) => "GridSample".into(),
            Op::DynamicQuantizeLinear => "DynamicQuantizeLinear".into(),
            Op::MatMulInteger => "MatMulInteger".into(),
            Op::QLinearMatMul => "QLinearMatMul".into(),
            Op::QLinearConv { .. } => "QLinearConv".into(),
            Op::ConvInteger { .. } => "ConvInteger".into(),
            Op::RoiAlign(_) => "RoiAlign".into(),
            Op::BitCast { .. } => "BitCast".into(),
            Op::AffineGrid { .. } => "AffineGrid".into(),
            Op::SignalWindow { kind, .. } => format!("{kind:?}Window"),
            Op::InstanceNorm { .. } => "InstanceNormalization".into(),
            Op::GroupNorm { .. } => "GroupNormalization".into(),
            Op::Lrn { .. } => "LRN".into(),
            Op::QuantizeLinear { .. } => "QuantizeLinear".into(),
            Op::DequantizeLinear { .. } => "DequantizeLinear".into(),
            Op::ReverseSequence { .. } => "ReverseSequence".into(),
            Op::ConvTranspose { .. } => "ConvTranspose".into(),
            Op::Loss { softmax, .. } => if *softmax { "SoftmaxCrossEntropyLoss" } else { "NegativeLogLikelihoodLoss" }.into(),
            Op::Attention(_) => "Attention".into(),
            Op::Recurrent(r) => match r.kind {
                RnnKind::Rnn => "RNN",
                RnnKind::Gru => "GRU",
                RnnKind::Lstm => "LSTM",
            }
            .into(),
            Op::Prelu => "PRelu".into(),
            Op::Shrink { .. } => "Shrink".into(),
            Op::Resize(_) => "Resize".into(),
            Op::Einsum { .. } => "Einsum".into(),
            Op::Unique { .. } => "Unique".into(),
            Op::CenterCropPad { .. } => "CenterCropPad".into(),
            Op::Rotary { .. } => "RotaryEmbedding".into(),
        }
    }

    /// Ops that only move or reinterpret data and whose output is a pure function of shapes.
    pub fn is_layout_only(&self) -> bool {
        matches!(self, Op::Identity | Op::Flatten { .. } | Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. })
    }
}

fn with_activation(base: &str, act: &Option<Activation>) -> String {
    match act {
        None => base.to_string(),
        Some(Activation::Relu) => format!("{base}+Relu"),
        Some(Activation::Clip { .. }) => format!("{base}+Clip"),
        Some(Activation::Swish(_)) => format!("{base}+Swish"),
        Some(Activation::HardSwish) => format!("{base}+HardSwish"),
    }
}
