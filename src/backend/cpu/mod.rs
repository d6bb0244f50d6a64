//! The CPU backend: always available, the reference for every other device, and the evaluator
//! that constant folding uses. Kernels live one concept per file; [`eval_node`] dispatches.

mod arena;
pub mod attention;
pub mod conv;
mod conv_direct;
mod depthwise;
mod depthwise_blocked;
mod dot_gemm;
mod epilogue;
pub mod einsum;
mod fastmath;
mod fused_gemm;
pub mod elementwise;
pub mod gemm;
mod grid_sample;
pub mod layout;
pub mod misc;
mod nms;
pub(crate) mod prepared;
pub mod norm;
pub mod pool;
mod quantized;
pub mod reduce;
pub mod resize;
mod rnn;
pub mod simd;
mod executor;
pub mod threads;

pub use executor::CpuExecutable;

use super::{Backend, DeviceInfo, Executable, Support};
use crate::error::{Error, Result};
use crate::graph::infer::{output_types, shape_value, slice_axes};
use crate::graph::{Graph, Node, Op};
use crate::tensor::{DType, Tensor};
use petgraph::stable_graph::NodeIndex;
use std::sync::Arc;

#[derive(Default)]
pub struct CpuBackend;

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn info(&self) -> DeviceInfo {
        let threads = rayon::current_num_threads();
        let mut features = vec![];
        #[cfg(target_arch = "x86_64")]
        for (f, on) in [("avx2", is_x86_feature_detected!("avx2")), ("fma", is_x86_feature_detected!("fma")), ("avx512f", is_x86_feature_detected!("avx512f"))] {
            if on {
                features.push(f);
            }
        }
        DeviceInfo {
            name: "cpu".into(),
            kind: "cpu".into(),
            available: true,
            details: vec![("threads".into(), threads.to_string()), ("simd".into(), features.join(" "))],
        }
    }

    fn supports(&self, _graph: &Graph, _n: NodeIndex) -> Support {
        // Every op the loader accepts has a CPU kernel; dtypes a kernel lacks are reported as
        // Unsupported when it runs.
        Support::Yes
    }

    fn compile(&self, graph: Arc<Graph>, options: &super::CompileOptions) -> Result<Arc<dyn Executable>> {
        Ok(Arc::new(CpuExecutable::new(graph)?.with_budget(options.mem_budget).with_threads(options.threads, options.cores_for("cpu"))?))
    }
}

/// Computes one node's outputs on the CPU. Output shapes come from the same rules as shape
/// inference, so kernels and inference cannot disagree.
pub fn eval_node(node: &Node, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
    eval_node_prepared(node, inputs, None)
}

/// [`eval_node`] with the node's prepared state, when its constant inputs allow one
/// ([`prepared::Prepared`]): the executable keeps it between runs.
pub(crate) fn eval_node_prepared(node: &Node, inputs: &[Option<&Tensor>], prepared: Option<&prepared::Prepared>) -> Result<Vec<Tensor>> {
    let widened = f32_only(&node.op) && inputs.iter().flatten().any(|t| matches!(t.dtype(), DType::F16 | DType::BF16 | DType::F64));
    let r = if widened {
        // f32-only kernels serve f16 and f64 by computing in f32.
        let orig = inputs.iter().flatten().find(|t| t.dtype().is_float()).map(|t| t.dtype()).unwrap_or(DType::F32);
        let casted: Vec<Option<Tensor>> = inputs.iter().map(|t| t.map(|t| if matches!(t.dtype(), DType::F16 | DType::BF16 | DType::F64) { elementwise::cast(t, DType::F32) } else { Ok(t.clone()) }).transpose()).collect::<Result<_>>()?;
        let refs: Vec<Option<&Tensor>> = casted.iter().map(|t| t.as_ref()).collect();
        eval_inner(node, &refs, prepared).and_then(|outs| outs.into_iter().map(|t| if t.dtype() == DType::F32 { elementwise::cast(&t, orig) } else { Ok(t) }).collect())
    } else {
        eval_inner(node, inputs, prepared)
    };
    r.map_err(|e| e.in_node(&node.name, &node.op.name()))
}

/// Ops whose kernels exist in f32 only.
fn f32_only(op: &Op) -> bool {
    matches!(
        op,
        Op::Conv { .. } | Op::ConvTranspose { .. } | Op::Pool { .. } | Op::GlobalPool { .. } | Op::BatchNorm { .. } | Op::Gemm { .. } | Op::MatMul
            | Op::LayerNorm { .. } | Op::InstanceNorm { .. } | Op::GroupNorm { .. } | Op::Lrn { .. } | Op::Softmax { .. } | Op::Hardmax { .. }
            | Op::Recurrent(_) | Op::GridSample(_) | Op::RoiAlign(_) | Op::AffineGrid { .. }
    )
}

fn eval_inner(node: &Node, inputs: &[Option<&Tensor>], prepared: Option<&prepared::Prepared>) -> Result<Vec<Tensor>> {
    // Compress and NonZero size their outputs from the data itself.
    let types = match output_types(node, inputs) {
        Err(Error::DataDependent(_)) if matches!(node.op, Op::Compress { .. } | Op::NonZero | Op::Unique { .. } | Op::NonMaxSuppression { .. }) => vec![(DType::I64, vec![])],
        t => t?,
    };
    let out_shape = &types[0].1;
    let input = |i: usize| -> Result<&Tensor> { inputs.get(i).copied().flatten().ok_or_else(|| Error::Tensor(format!("missing input {i}"))) };
    let opt = |i: usize| inputs.get(i).copied().flatten();
    let x = input(0);
    let one = |t: Tensor| Ok(vec![t]);
    match &node.op {
        Op::Input | Op::Constant { .. } => Err(Error::Tensor("inputs and constants are not evaluated".into())),
        Op::Identity | Op::Flatten { .. } | Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } => one(x?.clone().reshaped(out_shape.clone())?),
        Op::Unary(u) => one(elementwise::unary(*u, x?)?),
        Op::Binary(b) => one(elementwise::binary(*b, x?, input(1)?)?),
        Op::Variadic { op, mean } => {
            let mut acc = x?.clone();
            for t in inputs.iter().skip(1).flatten() {
                acc = elementwise::binary(*op, &acc, t)?;
            }
            if *mean {
                let n = inputs.iter().flatten().count() as f64;
                let div = elementwise::cast(&Tensor::new(vec![], crate::tensor::Data::F64(vec![n]))?, acc.dtype())?;
                acc = elementwise::binary(crate::graph::BinaryOp::Div, &acc, &div)?;
            }
            one(acc)
        }
        Op::Clip { min, max } => {
            let lo = match opt(1) { Some(t) => Some(layout::scalar_f64(t)?), None => min.map(|v| v as f64) };
            let hi = match opt(2) { Some(t) => Some(layout::scalar_f64(t)?), None => max.map(|v| v as f64) };
            one(elementwise::clip(x?, lo, hi)?)
        }
        Op::Conv { window, group, activation } => one(conv::conv_prepared(x?, input(1)?, opt(2), window, *group, *activation, out_shape, prepared)?),
        Op::Pool { kind, window } => one(pool::pool(x?, *kind, window, out_shape)?),
        Op::GlobalPool { kind } => one(pool::global_pool(x?, *kind, out_shape)?),
        Op::BatchNorm { epsilon } => one(reduce::batch_norm(x?, input(1)?, input(2)?, input(3)?, input(4)?, *epsilon)?),
        Op::Gemm { alpha, beta, trans_a, trans_b, activation } => one(gemm::gemm_op(x?, input(1)?, opt(2), *alpha, *beta, *trans_a, *trans_b, *activation)?),
        Op::MatMul => one(gemm::matmul(x?, input(1)?)?),
        Op::Transpose { perm } => {
            let x = x?;
            let p = perm.clone().unwrap_or_else(|| (0..x.rank()).rev().collect());
            one(layout::transpose(x, &p, out_shape)?)
        }
        Op::Concat { axis } => {
            let ts: Vec<&Tensor> = inputs.iter().flatten().copied().collect();
            one(layout::concat(&ts, crate::tensor::norm_axis(*axis, out_shape.len())?, out_shape)?)
        }
        Op::Slice => {
            let ints = |i: usize| opt(i).map(|t| t.to_i64_vec()).transpose();
            let x = x?;
            let axes = slice_axes(x.shape(), &ints(1)?.unwrap_or_default(), &ints(2)?.unwrap_or_default(), ints(3)?.as_deref(), ints(4)?.as_deref())?;
            one(layout::slice(x, &axes)?)
        }
        Op::Cast { to } => one(elementwise::cast(x?, *to)?),
        Op::Shape { .. } | Op::Size => one(shape_value(&node.op, x?.shape())?),
        Op::Gather { axis } => one(layout::gather(x?, input(1)?, *axis, out_shape)?),
        Op::GatherElements { axis } => one(layout::gather_elements(x?, input(1)?, *axis)?),
        Op::Reduce { op, axes, keepdims, noop_with_empty_axes } => {
            let axes = match axes { Some(a) => Some(a.clone()), None => opt(1).map(|t| t.to_i64_vec()).transpose()? };
            one(reduce::reduce(x?, *op, axes.as_deref(), *keepdims, *noop_with_empty_axes)?)
        }
        Op::ArgExtreme { max, axis, keepdims, select_last_index } => one(reduce::arg_extreme(x?, *max, *axis, *keepdims, *select_last_index)?),
        Op::ConstantOfShape { value } => one(layout::constant_of_shape(value, out_shape)?),
        Op::Expand => one(layout::expand(x?, out_shape)?),
        Op::Range => one(layout::range(x?, input(2)?, out_shape)?),
        Op::Where => one(elementwise::where_(x?, input(1)?, input(2)?)?),
        Op::Softmax { axis, log, legacy } => one(reduce::softmax(x?, *axis, *log, *legacy)?),
        Op::LayerNorm { axis, epsilon } => reduce::layer_norm(x?, input(1)?, opt(2), *axis, *epsilon),
        Op::CastLike => one(elementwise::cast(x?, input(1)?.dtype())?),
        Op::Split { axis, .. } => {
            let x = x?;
            let ax = crate::tensor::norm_axis(*axis, x.rank())?;
            let sizes: Vec<usize> = types.iter().map(|(_, s)| s[ax]).collect();
            misc::split(x, ax, &sizes)
        }
        Op::Trilu { upper } => {
            let k = opt(1).map(|t| t.to_i64_vec()).transpose()?.and_then(|v| v.first().copied()).unwrap_or(0);
            one(misc::trilu(x?, k, *upper)?)
        }
        Op::RmsNorm { axis, epsilon } => one(norm::rms_norm(x?, input(1)?, *axis, *epsilon)?),
        Op::Pad { mode } => {
            let x = x?;
            let pads = input(1)?.to_i64_vec()?;
            let axes = crate::graph::infer::pad_axes(x.rank(), opt(3).map(|t| t.to_i64_vec()).transpose()?)?;
            one(misc::pad(x, &pads, &axes, *mode, opt(2), out_shape)?)
        }
        Op::Cumulative { product, exclusive, reverse } => one(misc::cumulative(x?, input(1)?, *product, *exclusive, *reverse)?),
        Op::Hardmax { axis } => one(misc::hardmax(x?, *axis)?),
        Op::TopK { axis, largest } => misc::top_k(x?, out_shape[crate::tensor::norm_axis(*axis, out_shape.len())?], *axis, *largest),
        Op::LpNorm { axis, p } => one(norm::lp_norm(x?, *axis, *p)?),
        Op::OneHot { axis } => one(misc::one_hot(x?, input(1)?, input(2)?, *axis, out_shape)?),
        Op::DepthToSpace { blocksize, crd } => one(misc::depth_to_space(x?, *blocksize, *crd, out_shape)?),
        Op::SpaceToDepth { blocksize } => one(misc::space_to_depth(x?, *blocksize, out_shape)?),
        Op::Compress { axis } => one(misc::compress(x?, input(1)?, *axis)?),
        Op::NonZero => one(misc::nonzero(x?)?),
        Op::DynamicQuantizeLinear => quantized::dynamic_quantize_linear(x?),
        Op::MatMulInteger => one(quantized::matmul_integer(x?, input(1)?, opt(2), opt(3), out_shape)?),
        Op::QLinearConv { window, group } => one(quantized::qlinear_conv(inputs, window, *group, &types[0].0, out_shape)?),
        Op::ConvInteger { window, group } => one(quantized::conv_integer(x?, input(1)?, opt(2), opt(3), window, *group, out_shape)?),
        Op::QLinearMatMul => one(quantized::qlinear_matmul(inputs, &types[0].0, out_shape)?),
        Op::AffineGrid { align_corners } => one(grid_sample::affine_grid(x?, *align_corners, out_shape)?),
        Op::BitCast { to } => {
            let x = x?;
            one(Tensor::new(x.shape().to_vec(), crate::tensor::Data::from_le_bytes(*to, &x.data().to_le_bytes()))?)
        }
        Op::SignalWindow { kind, periodic, dtype } => one(misc::signal_window(*kind, *periodic, *dtype, out_shape[0])?),
        Op::RoiAlign(at) => one(grid_sample::roi_align(x?, input(1)?, input(2)?, at, out_shape)?),
        Op::GridSample(at) => one(grid_sample::grid_sample(x?, input(1)?, at, out_shape)?),
        Op::NonMaxSuppression { center_point_box } => one(nms::non_max_suppression(x?, input(1)?, opt(2), opt(3), opt(4), *center_point_box)?),
        Op::GatherNd { batch_dims } => one(misc::gather_nd(x?, input(1)?, *batch_dims, out_shape)?),
        Op::ScatterNd { reduction } => one(misc::scatter_nd(x?, input(1)?, input(2)?, *reduction)?),
        Op::ScatterElements { axis, reduction } => one(misc::scatter_elements(x?, input(1)?, input(2)?, *axis, *reduction)?),
        Op::EyeLike { k, .. } => one(misc::eye_like(x?, types[0].0, *k)?),
        Op::Tile => one(misc::tile(x?, out_shape)?),
        Op::InstanceNorm { epsilon } => one(norm::instance_norm(x?, input(1)?, input(2)?, *epsilon)?),
        Op::GroupNorm { groups, epsilon } => one(norm::group_norm(x?, input(1)?, input(2)?, *groups, *epsilon)?),
        Op::Lrn { size, alpha, beta, bias } => one(norm::lrn(x?, *size, *alpha, *beta, *bias)?),
        Op::QuantizeLinear { axis, saturate, .. } => one(norm::quantize_linear(x?, input(1)?, opt(2), *axis, types[0].0, *saturate)?),
        Op::DequantizeLinear { axis } => one(norm::dequantize_linear(x?, input(1)?, opt(2), *axis)?),
        Op::ReverseSequence { batch_axis, time_axis } => one(misc::reverse_sequence(x?, input(1)?, *batch_axis, *time_axis)?),
        Op::Loss { softmax, reduction, ignore_index } => norm::loss(x?, input(1)?, opt(2), *softmax, *reduction, *ignore_index),
        Op::Attention(at) => attention::attention(at, inputs),
        Op::Recurrent(at) => rnn::recurrent(at, inputs),
        Op::Resize(attrs) => {
            let x = x?;
            let scales = opt(attrs.scales_input).map(|t| t.to_f64_vec());
            let sizes = if attrs.scales_input == 2 { opt(3).map(|t| t.to_i64_vec()).transpose()? } else { None };
            let (shape, sc) = resize::resize_plan(attrs, x.shape(), scales.as_deref(), sizes.as_deref())?;
            let roi = if attrs.scales_input == 2 { opt(1).map(|t| t.to_f64_vec()) } else { None };
            one(resize::resize(x, attrs, roi.as_deref(), &shape, &sc)?)
        }
        Op::Einsum { equation } => one(einsum::einsum(equation, &inputs.iter().flatten().copied().collect::<Vec<_>>())?),
        Op::Unique { axis, sorted } => misc::unique(x?, *axis, *sorted),
        Op::CenterCropPad { axes } => {
            let x = x?;
            let ax = crate::graph::infer::pad_axes(x.rank(), axes.clone())?;
            one(misc::center_crop_pad(x, &input(1)?.to_i64_vec()?, &ax)?)
        }
        Op::Rotary { interleaved, rotary_dim, num_heads } => one(attention::rotary_embedding(x?, input(1)?, input(2)?, opt(3), *interleaved, *rotary_dim, *num_heads)?),
        Op::Prelu => one(elementwise::prelu(x?, input(1)?)?),
        Op::Shrink { bias, lambd } => {
            let x = x?;
            let t = elementwise::cast(x, DType::F64)?;
            let v: Vec<f64> = t.to_f64_vec().iter().map(|&e| if e < -*lambd as f64 { e + *bias as f64 } else if e > *lambd as f64 { e - *bias as f64 } else { 0.0 }).collect();
            one(elementwise::cast(&Tensor::new(x.shape().to_vec(), crate::tensor::Data::F64(v))?, x.dtype())?)
        }
        Op::ConvTranspose { window, group, output_padding, output_shape } => {
            one(conv::conv_transpose(x?, input(1)?, opt(2), window, *group, output_padding, output_shape, out_shape)?)
        }
    }
}
