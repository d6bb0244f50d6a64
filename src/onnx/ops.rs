//! NodeProto -> typed [`Op`]: attribute parsing and validation, per op type.

use super::proto::{attr_type, AttributeProto, NodeProto};
use super::tensor_from_proto;
use crate::error::{Error, Result};
use crate::graph::{WindowKind, RoiAlignAttrs, GridInterp, GridPadding, GridSampleAttrs, RnnActivation, RnnAttrs, RnnKind, ResizeAttrs, ResizeMode, AttentionAttrs, AutoPad, BinaryOp, LossReduction, Op, PadMode, PoolKind, ReduceOp, Reduction, UnaryOp, Window};
use crate::tensor::{DType, Tensor};
use std::sync::Arc;

pub enum Parsed {
    Op(Op),
    Constant(Tensor),
}

struct Attrs<'a> {
    node: &'a NodeProto,
    name: &'a str,
}

impl<'a> Attrs<'a> {
    fn get(&self, key: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == key)
    }
    fn err(&self, msg: String) -> Error {
        Error::node(self.name, &self.node.op_type, msg)
    }
    fn int(&self, key: &str, default: i64) -> Result<i64> {
        match self.get(key) {
            None => Ok(default),
            Some(a) if a.r#type == attr_type::INT || a.r#type == 0 => Ok(a.i),
            Some(a) => Err(self.err(format!("attribute '{key}' should be an int, has type {}", a.r#type))),
        }
    }
    fn float(&self, key: &str, default: f32) -> Result<f32> {
        match self.get(key) {
            None => Ok(default),
            Some(a) if a.r#type == attr_type::FLOAT || a.r#type == 0 => Ok(a.f),
            Some(a) => Err(self.err(format!("attribute '{key}' should be a float, has type {}", a.r#type))),
        }
    }
    fn opt_float(&self, key: &str) -> Result<Option<f32>> {
        self.get(key).map(|_| self.float(key, 0.0)).transpose()
    }
    fn ints(&self, key: &str) -> Result<Option<Vec<i64>>> {
        match self.get(key) {
            None => Ok(None),
            Some(a) if a.r#type == attr_type::INTS || a.r#type == 0 => Ok(Some(a.ints.clone())),
            Some(a) => Err(self.err(format!("attribute '{key}' should be ints, has type {}", a.r#type))),
        }
    }
    fn usizes(&self, key: &str) -> Result<Vec<usize>> {
        let v = self.ints(key)?.unwrap_or_default();
        v.iter().map(|&x| usize::try_from(x).map_err(|_| self.err(format!("attribute '{key}' has a negative entry: {v:?}")))).collect()
    }
    fn string(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(a) if a.r#type == attr_type::STRING || a.r#type == 0 => Ok(Some(String::from_utf8_lossy(&a.s).into_owned())),
            Some(a) => Err(self.err(format!("attribute '{key}' should be a string, has type {}", a.r#type))),
        }
    }
    fn strings(&self, key: &str) -> Result<Option<Vec<String>>> {
        match self.get(key) {
            None => Ok(None),
            Some(a) if a.r#type == attr_type::STRINGS || a.r#type == 0 => Ok(Some(a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect())),
            Some(a) => Err(self.err(format!("attribute '{key}' should be strings, has type {}", a.r#type))),
        }
    }
    fn floats(&self, key: &str) -> Result<Option<Vec<f32>>> {
        match self.get(key) {
            None => Ok(None),
            Some(a) if a.r#type == attr_type::FLOATS || a.r#type == 0 => Ok(Some(a.floats.clone())),
            Some(a) => Err(self.err(format!("attribute '{key}' should be floats, has type {}", a.r#type))),
        }
    }
    fn tensor(&self, key: &str) -> Result<Option<Tensor>> {
        match self.get(key).and_then(|a| a.t.as_ref()) {
            None => Ok(None),
            Some(t) => tensor_from_proto(t).map(Some).map_err(|e| self.err(e.to_string())),
        }
    }
    fn window(&self, with_ceil: bool) -> Result<Window> {
        let auto_pad = match self.string("auto_pad")?.as_deref() {
            None | Some("NOTSET") | Some("") => AutoPad::NotSet,
            Some("SAME_UPPER") => AutoPad::SameUpper,
            Some("SAME_LOWER") => AutoPad::SameLower,
            Some("VALID") => AutoPad::Valid,
            Some(o) => return Err(self.err(format!("unknown auto_pad '{o}'"))),
        };
        let w = Window {
            kernel_shape: self.usizes("kernel_shape")?,
            strides: self.usizes("strides")?,
            pads: self.usizes("pads")?,
            dilations: self.usizes("dilations")?,
            auto_pad,
            ceil_mode: with_ceil && self.int("ceil_mode", 0)? != 0,
        };
        if w.strides.contains(&0) || w.dilations.contains(&0) {
            return Err(self.err(format!("strides {:?} / dilations {:?} must be positive", w.strides, w.dilations)));
        }
        Ok(w)
    }
}

/// Attributes a later opset replaced by an input (or removed): (op types, attribute, the opset
/// from which it is invalid). A model that declares that opset or later and still sets one is
/// refused, not read the old way (ONNX Runtime refuses it too).
const REPLACED_ATTRIBUTES: &[(&[&str], &str, i64)] = &[
    (&["Squeeze", "Unsqueeze"], "axes", 13),
    (&["ReduceSum"], "axes", 13),
    (&["ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"], "axes", 18),
    (&["Split"], "split", 13),
    (&["Clip"], "min", 11),
    (&["Clip"], "max", 11),
    (&["Pad"], "pads", 11),
    (&["Pad"], "value", 11),
    (&["Slice"], "starts", 10),
    (&["Slice"], "ends", 10),
    (&["Slice"], "axes", 10),
    (&["TopK"], "k", 10),
    (&["Dropout"], "ratio", 12),
    (&["Upsample", "Resize"], "scales", 9),
    (&["Reshape"], "shape", 5),
    (&["BatchNormalization"], "spatial", 9),
    (&["BatchNormalization", "Dropout"], "is_test", 7),
    (&["Tile"], "tiles", 6),
];

/// The most inputs an op takes, for the op families with a fixed arity (None: variadic or
/// checked by its own rules).
fn max_inputs(op: &Op) -> Option<usize> {
    Some(match op {
        Op::Unary(_) | Op::Pool { .. } | Op::GlobalPool { .. } | Op::Softmax { .. } | Op::Transpose { .. } | Op::Flatten { .. } | Op::Cast { .. } | Op::Lrn { .. } | Op::DepthToSpace { .. } | Op::SpaceToDepth { .. } | Op::Shape { .. } | Op::Size | Op::Hardmax { .. } | Op::LpNorm { .. } => 1,
        Op::Binary(_) | Op::MatMul | Op::CastLike | Op::Prelu | Op::Gather { .. } | Op::GatherElements { .. } | Op::GatherNd { .. } | Op::Expand | Op::Tile => 2,
        Op::Conv { .. } | Op::Gemm { .. } | Op::Where | Op::Clip { .. } | Op::InstanceNorm { .. } | Op::LayerNorm { .. } => 3,
        Op::BatchNorm { .. } => 5,
        _ => return None,
    })
}

/// Checks what [`parse`] reads against the declared opset and the op's arity.
pub fn parse(np: &NodeProto, name: &str, opset: i64) -> Result<Parsed> {
    for (ops, attr, from) in REPLACED_ATTRIBUTES {
        if opset >= *from && ops.contains(&np.op_type.as_str()) && np.attribute.iter().any(|a| a.name == *attr) {
            return Err(Error::node(name, &np.op_type, format!("attribute '{attr}' is not part of {} from opset {from} on (an input replaced it), and the model declares opset {opset}", np.op_type)));
        }
    }
    let parsed = parse_op(np, name, opset)?;
    if let Parsed::Op(op) = &parsed {
        // Trailing empty names are absent optional inputs.
        let given = np.input.iter().rposition(|i| !i.is_empty()).map_or(0, |p| p + 1);
        if let Some(max) = max_inputs(op).filter(|&m| given > m) {
            return Err(Error::node(name, &np.op_type, format!("{given} inputs given; {} takes at most {max}", np.op_type)));
        }
    }
    Ok(parsed)
}

fn parse_op(np: &NodeProto, name: &str, opset: i64) -> Result<Parsed> {
    let a = Attrs { node: np, name };
    let unary = |u| Ok(Parsed::Op(Op::Unary(u)));
    let binary = |b| Ok(Parsed::Op(Op::Binary(b)));
    let reduce = |op: ReduceOp| -> Result<Parsed> {
        // ReduceSum moved axes to an input at opset 13, the others at 18.
        let axes_input = if op == ReduceOp::Sum { opset >= 13 } else { opset >= 18 };
        Ok(Parsed::Op(Op::Reduce {
            op,
            axes: if axes_input { None } else { Some(a.ints("axes")?.unwrap_or_default()) },
            keepdims: a.int("keepdims", 1)? != 0,
            noop_with_empty_axes: a.int("noop_with_empty_axes", 0)? != 0,
        }))
    };
    let op = match np.op_type.as_str() {
        "Constant" => {
            if let Some(t) = a.tensor("value")? {
                return Ok(Parsed::Constant(t));
            }
            let scalar = |t: Tensor| Ok(Parsed::Constant(t));
            if let Some(f) = a.opt_float("value_float")? {
                return scalar(Tensor::scalar_f32(f));
            }
            if let Some(v) = a.ints("value_ints")? {
                return scalar(Tensor::from_i64(&[v.len()], v)?);
            }
            if a.get("value_int").is_some() {
                return scalar(Tensor::new(vec![], crate::tensor::Data::I64(vec![a.int("value_int", 0)?]))?);
            }
            if let Some(v) = a.get("value_floats") {
                return scalar(Tensor::from_f32(&[v.floats.len()], v.floats.clone())?);
            }
            return Err(Error::Unsupported { node: name.into(), op: "Constant".into(), what: "a Constant without a tensor/float/int value (sparse or string)".into() });
        }
        "Identity" | "Dropout" => {
            if np.op_type == "Dropout" && (np.output.len() > 1 && !np.output[1].is_empty() || np.input.get(2).is_some_and(|s| !s.is_empty())) {
                return Err(Error::Unsupported { node: name.into(), op: "Dropout".into(), what: "training mode / the mask output".into() });
            }
            Op::Identity
        }
        "Relu" => return unary(UnaryOp::Relu),
        "Sigmoid" => return unary(UnaryOp::Sigmoid),
        "Tanh" => return unary(UnaryOp::Tanh),
        "Erf" => return unary(UnaryOp::Erf),
        "Exp" => return unary(UnaryOp::Exp),
        "Log" => return unary(UnaryOp::Log),
        "Sqrt" => return unary(UnaryOp::Sqrt),
        "Neg" => return unary(UnaryOp::Neg),
        "Abs" => return unary(UnaryOp::Abs),
        "Reciprocal" => return unary(UnaryOp::Reciprocal),
        "Floor" => return unary(UnaryOp::Floor),
        "Ceil" => return unary(UnaryOp::Ceil),
        "Round" => return unary(UnaryOp::Round),
        "Sign" => return unary(UnaryOp::Sign),
        "Sin" => return unary(UnaryOp::Sin),
        "Cos" => return unary(UnaryOp::Cos),
        "Not" => return unary(UnaryOp::Not),
        "Softplus" => return unary(UnaryOp::Softplus),
        "Softsign" => return unary(UnaryOp::Softsign),
        "HardSwish" => return unary(UnaryOp::HardSwish),
        "Mish" => return unary(UnaryOp::Mish),
        "LeakyRelu" => return unary(UnaryOp::LeakyRelu(a.float("alpha", 0.01)?)),
        "Elu" => return unary(UnaryOp::Elu(a.float("alpha", 1.0)?)),
        "ThresholdedRelu" => return unary(UnaryOp::ThresholdedRelu(a.float("alpha", 1.0)?)),
        "Selu" => return unary(UnaryOp::Selu { alpha: a.float("alpha", 1.673_263_2)?, gamma: a.float("gamma", 1.050_701)? }),
        "HardSigmoid" => return unary(UnaryOp::HardSigmoid { alpha: a.float("alpha", 0.2)?, beta: a.float("beta", 0.5)? }),
        "Gelu" => return unary(UnaryOp::Gelu { tanh: a.string("approximate")?.as_deref() == Some("tanh") }),
        "Tan" => return unary(UnaryOp::Tan),
        "Asin" => return unary(UnaryOp::Asin),
        "Acos" => return unary(UnaryOp::Acos),
        "Atan" => return unary(UnaryOp::Atan),
        "Sinh" => return unary(UnaryOp::Sinh),
        "Cosh" => return unary(UnaryOp::Cosh),
        "Asinh" => return unary(UnaryOp::Asinh),
        "Acosh" => return unary(UnaryOp::Acosh),
        "Atanh" => return unary(UnaryOp::Atanh),
        "Celu" => return unary(UnaryOp::Celu(a.float("alpha", 1.0)?)),
        "Swish" => return unary(UnaryOp::Swish(a.float("alpha", 1.0)?)),
        "IsNaN" => return unary(UnaryOp::IsNaN),
        "IsInf" => return unary(UnaryOp::IsInf { negative: a.int("detect_negative", 1)? != 0, positive: a.int("detect_positive", 1)? != 0 }),
        "BitwiseNot" => return unary(UnaryOp::BitwiseNot),
        "BitShift" => {
            let left = match a.string("direction")?.as_deref() {
                Some("LEFT") => true,
                Some("RIGHT") => false,
                other => return Err(a.err(format!("direction {other:?} must be \"LEFT\" or \"RIGHT\""))),
            };
            return binary(BinaryOp::BitShift { left });
        }
        "BitwiseAnd" => return binary(BinaryOp::BitwiseAnd),
        "BitwiseOr" => return binary(BinaryOp::BitwiseOr),
        "BitwiseXor" => return binary(BinaryOp::BitwiseXor),
        "CastLike" => Op::CastLike,
        "NegativeLogLikelihoodLoss" | "SoftmaxCrossEntropyLoss" => Op::Loss {
            softmax: np.op_type == "SoftmaxCrossEntropyLoss",
            reduction: match a.string("reduction")?.as_deref().unwrap_or("mean") {
                "none" => LossReduction::None,
                "sum" => LossReduction::Sum,
                "mean" => LossReduction::Mean,
                r => return Err(a.err(format!("unknown reduction '{r}'"))),
            },
            ignore_index: a.get("ignore_index").map(|x| x.i),
        },
        "Attention" => {
            if a.get("softmax_precision").is_some_and(|p| p.i != 0 && p.i != 1) {
                return Err(Error::Unsupported { node: name.into(), op: "Attention".into(), what: "softmax_precision other than float".into() });
            }
            Op::Attention(AttentionAttrs {
                is_causal: a.int("is_causal", 0)? != 0,
                q_num_heads: a.int("q_num_heads", 0)?.max(0) as usize,
                kv_num_heads: a.int("kv_num_heads", 0)?.max(0) as usize,
                scale: a.opt_float("scale")?,
                softcap: a.float("softcap", 0.0)?,
                qk_matmul_output_mode: a.int("qk_matmul_output_mode", 0)?,
                left_window: a.int("left_window_size", -1)?,
                right_window: a.int("right_window_size", -1)?,
            })
        }
        "RNN" | "GRU" | "LSTM" => Op::Recurrent(recurrent(&a, &np.op_type)?),
        "PRelu" => Op::Prelu,
        "Einsum" => Op::Einsum { equation: a.string("equation")?.ok_or_else(|| a.err("equation is required".into()))? },
        "Unique" => Op::Unique { axis: a.get("axis").map(|x| x.i), sorted: a.int("sorted", 1)? != 0 },
        "CenterCropPad" => Op::CenterCropPad { axes: a.ints("axes")? },
        "RotaryEmbedding" => Op::Rotary {
            interleaved: a.int("interleaved", 0)? != 0,
            rotary_dim: a.int("rotary_embedding_dim", 0)?.max(0) as usize,
            num_heads: a.int("num_heads", 0)?.max(0) as usize,
        },
        "Resize" | "Upsample" => {
            let old = np.op_type == "Upsample" || opset < 11;
            if np.op_type == "Upsample" && opset < 9 {
                return Err(Error::Unsupported { node: name.into(), op: "Upsample".into(), what: "scales attribute (opset < 9)".into() });
            }
            let mode = match a.string("mode")?.as_deref().unwrap_or("nearest") {
                "nearest" => ResizeMode::Nearest,
                "linear" | "bilinear" => ResizeMode::Linear,
                "cubic" => ResizeMode::Cubic,
                m => return Err(a.err(format!("unknown mode '{m}'"))),
            };
            Op::Resize(ResizeAttrs {
                mode,
                coord: if old { "asymmetric".into() } else { a.string("coordinate_transformation_mode")?.unwrap_or_else(|| "half_pixel".into()) },
                nearest: if old { "floor".into() } else { a.string("nearest_mode")?.unwrap_or_else(|| "round_prefer_floor".into()) },
                cubic_a: a.float("cubic_coeff_a", -0.75)? as f64,
                exclude_outside: a.int("exclude_outside", 0)? != 0,
                extrapolation: a.float("extrapolation_value", 0.0)?,
                antialias: a.int("antialias", 0)? != 0,
                axes: a.ints("axes")?,
                aspect: a.string("keep_aspect_ratio_policy")?.unwrap_or_else(|| "stretch".into()),
                scales_input: if old { 1 } else { 2 },
            })
        }
        "Shrink" => Op::Shrink { bias: a.float("bias", 0.0)?, lambd: a.float("lambd", 0.5)? },
        "Split" => Op::Split { axis: a.int("axis", 0)?, split: if opset < 13 { a.ints("split")? } else { None } },
        "Trilu" => Op::Trilu { upper: a.int("upper", 1)? != 0 },
        "RMSNormalization" => Op::RmsNorm { axis: a.int("axis", -1)?, epsilon: a.float("epsilon", 1e-5)? },
        "Pad" => {
            if opset < 11 {
                return Err(Error::Unsupported { node: name.into(), op: "Pad".into(), what: format!("attribute form (opset {opset} < 11)") });
            }
            let mode = match a.string("mode")?.as_deref().unwrap_or("constant") {
                "constant" => PadMode::Constant,
                "reflect" => PadMode::Reflect,
                "edge" => PadMode::Edge,
                "wrap" => PadMode::Wrap,
                m => return Err(a.err(format!("unknown pad mode '{m}'"))),
            };
            Op::Pad { mode }
        }
        "CumSum" | "CumProd" => Op::Cumulative { product: np.op_type == "CumProd", exclusive: a.int("exclusive", 0)? != 0, reverse: a.int("reverse", 0)? != 0 },
        "Hardmax" => Op::Hardmax { axis: a.int("axis", if opset >= 13 { -1 } else { 1 })? },
        "TopK" => {
            if opset < 10 {
                return Err(Error::Unsupported { node: name.into(), op: "TopK".into(), what: "attribute k (opset < 10)".into() });
            }
            Op::TopK { axis: a.int("axis", -1)?, largest: a.int("largest", 1)? != 0 }
        }
        "LpNormalization" => Op::LpNorm { axis: a.int("axis", -1)?, p: a.int("p", 2)? },
        "OneHot" => Op::OneHot { axis: a.int("axis", -1)? },
        "DepthToSpace" | "SpaceToDepth" => {
            let bs = a.int("blocksize", 0)?;
            if bs < 1 {
                return Err(a.err(format!("blocksize {bs} must be >= 1")));
            }
            if np.op_type == "DepthToSpace" {
                let crd = match a.string("mode")?.as_deref() {
                    None | Some("DCR") => false,
                    Some("CRD") => true,
                    Some(other) => return Err(a.err(format!("mode \"{other}\" must be \"DCR\" or \"CRD\""))),
                };
                Op::DepthToSpace { blocksize: bs as usize, crd }
            } else {
                Op::SpaceToDepth { blocksize: bs as usize }
            }
        }
        "Compress" => Op::Compress { axis: a.get("axis").map(|x| x.i) },
        "GatherND" => Op::GatherNd { batch_dims: a.int("batch_dims", 0)?.max(0) as usize },
        "ScatterND" | "ScatterElements" | "Scatter" => {
            let reduction = match a.string("reduction")?.as_deref().unwrap_or("none") {
                "none" => Reduction::None,
                "add" => Reduction::Add,
                "mul" => Reduction::Mul,
                "max" => Reduction::Max,
                "min" => Reduction::Min,
                r => return Err(a.err(format!("unknown reduction '{r}'"))),
            };
            if np.op_type == "ScatterND" { Op::ScatterNd { reduction } } else { Op::ScatterElements { axis: a.int("axis", 0)?, reduction } }
        }
        "EyeLike" => Op::EyeLike {
            dtype: match a.get("dtype") {
                Some(d) => Some(DType::from_onnx(d.i as i32).ok_or_else(|| Error::Unsupported { node: name.into(), op: "EyeLike".into(), what: format!("dtype {}", DType::onnx_name(d.i as i32)) })?),
                None => None,
            },
            k: a.int("k", 0)?,
        },
        "Tile" => Op::Tile,
        "NonZero" => Op::NonZero,
        "RoiAlign" => Op::RoiAlign(RoiAlignAttrs {
            avg: match a.string("mode")?.as_deref().unwrap_or("avg") {
                "avg" => true,
                "max" => false,
                m => return Err(a.err(format!("unknown mode '{m}'"))),
            },
            // Opset 10-15 had no attribute and behaved as output_half_pixel.
            half_pixel: a.string("coordinate_transformation_mode")?.as_deref().unwrap_or(if opset < 16 { "output_half_pixel" } else { "half_pixel" }) == "half_pixel",
            output_height: a.int("output_height", 1)?.max(1) as usize,
            output_width: a.int("output_width", 1)?.max(1) as usize,
            sampling_ratio: a.int("sampling_ratio", 0)?.max(0) as usize,
            spatial_scale: a.float("spatial_scale", 1.0)?,
        }),
        "GridSample" => Op::GridSample(GridSampleAttrs {
            mode: match a.string("mode")?.as_deref().unwrap_or("linear") {
                "nearest" => GridInterp::Nearest,
                "linear" | "bilinear" => GridInterp::Linear,
                "cubic" | "bicubic" => GridInterp::Cubic,
                m => return Err(a.err(format!("unknown mode '{m}'"))),
            },
            padding: match a.string("padding_mode")?.as_deref().unwrap_or("zeros") {
                "zeros" => GridPadding::Zeros,
                "border" => GridPadding::Border,
                "reflection" => GridPadding::Reflection,
                m => return Err(a.err(format!("unknown padding_mode '{m}'"))),
            },
            align_corners: a.int("align_corners", 0)? != 0,
        }),
        "NonMaxSuppression" => Op::NonMaxSuppression { center_point_box: a.int("center_point_box", 0)? != 0 },
        "InstanceNormalization" => Op::InstanceNorm { epsilon: a.float("epsilon", 1e-5)? },
        "GroupNormalization" => {
            let groups = a.int("num_groups", 0)?;
            if groups < 1 {
                return Err(a.err("num_groups must be >= 1".into()));
            }
            if opset < 21 {
                return Err(Error::Unsupported { node: name.into(), op: "GroupNormalization".into(), what: "opset 18 form (per-group scale)".into() });
            }
            Op::GroupNorm { groups: groups as usize, epsilon: a.float("epsilon", 1e-5)? }
        }
        "LRN" => Op::Lrn {
            size: match a.get("size").map(|s| s.i) {
                Some(s) if s >= 1 => s as usize,
                Some(s) => return Err(a.err(format!("size {s} must be at least 1"))),
                None => return Err(a.err("size is required".into())),
            }, alpha: a.float("alpha", 1e-4)?, beta: a.float("beta", 0.75)?, bias: a.float("bias", 1.0)? },
        "DequantizeLinear" | "QuantizeLinear" if a.int("block_size", 0)? != 0 => {
            return Err(Error::Unsupported { node: name.into(), op: np.op_type.clone(), what: "blocked quantization".into() })
        }
        "QuantizeLinear" => Op::QuantizeLinear {
            axis: a.int("axis", 1)?,
            to: match a.get("output_dtype") {
                Some(d) if d.i != 0 => Some(DType::from_onnx(d.i as i32).ok_or_else(|| Error::Unsupported { node: name.into(), op: "QuantizeLinear".into(), what: format!("dtype {}", DType::onnx_name(d.i as i32)) })?),
                _ => None,
            },
            saturate: a.int("saturate", 1)? != 0,
        },
        "DequantizeLinear" => Op::DequantizeLinear { axis: a.int("axis", 1)? },
        "ReverseSequence" => Op::ReverseSequence { batch_axis: a.int("batch_axis", 1)?.max(0) as usize, time_axis: a.int("time_axis", 0)?.max(0) as usize },
        "ConvTranspose" => {
            let group = a.int("group", 1)?;
            if group < 1 {
                return Err(a.err(format!("group {group} must be >= 1")));
            }
            Op::ConvTranspose { window: a.window(false)?, group: group as usize, output_padding: a.usizes("output_padding")?, output_shape: a.usizes("output_shape")? }
        }
        "Add" => return binary(BinaryOp::Add),
        "Sub" => return binary(BinaryOp::Sub),
        "Mul" => return binary(BinaryOp::Mul),
        "Div" => return binary(BinaryOp::Div),
        "Pow" => return binary(BinaryOp::Pow),
        "Mod" => return binary(BinaryOp::Mod { fmod: a.int("fmod", 0)? != 0 }),
        "Equal" => return binary(BinaryOp::Equal),
        "Less" => return binary(BinaryOp::Less),
        "LessOrEqual" => return binary(BinaryOp::LessOrEqual),
        "Greater" => return binary(BinaryOp::Greater),
        "GreaterOrEqual" => return binary(BinaryOp::GreaterOrEqual),
        "And" => return binary(BinaryOp::And),
        "Or" => return binary(BinaryOp::Or),
        "Xor" => return binary(BinaryOp::Xor),
        "Sum" => Op::Variadic { op: BinaryOp::Add, mean: false },
        "Mean" => Op::Variadic { op: BinaryOp::Add, mean: true },
        "Max" => Op::Variadic { op: BinaryOp::Max, mean: false },
        "Min" => Op::Variadic { op: BinaryOp::Min, mean: false },
        "Clip" => Op::Clip { min: a.opt_float("min")?, max: a.opt_float("max")? },
        "Conv" | "QLinearConv" | "ConvInteger" => {
            let group = a.int("group", 1)?;
            if group < 1 {
                return Err(a.err(format!("group {group} must be >= 1")));
            }
            let (window, group) = (a.window(false)?, group as usize);
            match np.op_type.as_str() {
                "Conv" => Op::Conv { window, group, activation: None },
                "QLinearConv" => Op::QLinearConv { window, group },
                _ => Op::ConvInteger { window, group },
            }
        }
        "MaxPool" | "AveragePool" | "LpPool" => {
            let kind = match np.op_type.as_str() {
                "MaxPool" => {
                    if a.int("storage_order", 0)? != 0 {
                        return Err(Error::Unsupported { node: name.into(), op: np.op_type.clone(), what: "storage_order=1".into() });
                    }
                    PoolKind::Max
                }
                "AveragePool" => PoolKind::Average { count_include_pad: a.int("count_include_pad", 0)? != 0 },
                _ => PoolKind::Lp { p: a.int("p", 2)? },
            };
            let window = a.window(true)?;
            if window.kernel_shape.is_empty() {
                return Err(a.err("kernel_shape is required".into()));
            }
            if np.output.len() > 1 && !np.output[1].is_empty() {
                return Err(Error::Unsupported { node: name.into(), op: np.op_type.clone(), what: "the Indices output".into() });
            }
            Op::Pool { kind, window }
        }
        "GlobalAveragePool" => Op::GlobalPool { kind: PoolKind::Average { count_include_pad: false } },
        "GlobalMaxPool" => Op::GlobalPool { kind: PoolKind::Max },
        "BatchNormalization" => {
            if a.int("training_mode", 0)? != 0 || np.output.iter().skip(1).any(|o| !o.is_empty()) {
                return Err(Error::Unsupported { node: name.into(), op: np.op_type.clone(), what: "training mode".into() });
            }
            Op::BatchNorm { epsilon: a.float("epsilon", 1e-5)? }
        }
        "Gemm" => Op::Gemm {
            alpha: a.float("alpha", 1.0)?,
            beta: a.float("beta", 1.0)?,
            trans_a: a.int("transA", 0)? != 0,
            trans_b: a.int("transB", 0)? != 0,
            activation: None,
        },
        "MatMul" => Op::MatMul,
        "MatMulInteger" => Op::MatMulInteger,
        "QLinearMatMul" => Op::QLinearMatMul,
        "DynamicQuantizeLinear" => Op::DynamicQuantizeLinear,
        "Flatten" => Op::Flatten { axis: a.int("axis", 1)? },
        "Reshape" => Op::Reshape { allowzero: a.int("allowzero", 0)? != 0 },
        "Transpose" => Op::Transpose { perm: a.ints("perm")?.map(|p| p.iter().map(|&x| x.max(0) as usize).collect()) },
        "Concat" => Op::Concat { axis: a.int("axis", 0).and_then(|x| if a.get("axis").is_none() { Err(a.err("axis is required".into())) } else { Ok(x) })? },
        "Squeeze" => Op::Squeeze { axes: if opset >= 13 { None } else { a.ints("axes")? } },
        "Unsqueeze" => Op::Unsqueeze { axes: if opset >= 13 { None } else { Some(a.ints("axes")?.ok_or_else(|| a.err("axes is required".into()))?) } },
        "Slice" => {
            if opset < 10 {
                return Err(Error::Unsupported { node: name.into(), op: "Slice".into(), what: format!("attribute form (opset {opset} < 10)") });
            }
            Op::Slice
        }
        "Cast" => {
            let to = a.int("to", 0)? as i32;
            Op::Cast { to: DType::from_onnx(to).ok_or_else(|| Error::Unsupported { node: name.into(), op: "Cast".into(), what: format!("cast to {}", DType::onnx_name(to)) })? }
        }
        "AffineGrid" => Op::AffineGrid { align_corners: a.int("align_corners", 0)? != 0 },
        "BitCast" => {
            let to = a.int("to", 0)? as i32;
            Op::BitCast { to: DType::from_onnx(to).ok_or_else(|| Error::Unsupported { node: name.into(), op: "BitCast".into(), what: format!("bitcast to {}", DType::onnx_name(to)) })? }
        }
        "HannWindow" | "HammingWindow" | "BlackmanWindow" => {
            let code = a.int("output_datatype", 1)? as i32;
            let dtype = DType::from_onnx(code).ok_or_else(|| Error::Unsupported { node: name.into(), op: np.op_type.clone(), what: format!("output_datatype {}", DType::onnx_name(code)) })?;
            let kind = match np.op_type.as_str() {
                "HannWindow" => WindowKind::Hann,
                "HammingWindow" => WindowKind::Hamming,
                _ => WindowKind::Blackman,
            };
            Op::SignalWindow { kind, periodic: a.int("periodic", 1)? != 0, dtype }
        }
        "Shape" => Op::Shape { start: a.int("start", 0)?, end: a.get("end").map(|x| x.i) },
        "Size" => Op::Size,
        "Gather" => Op::Gather { axis: a.int("axis", 0)? },
        "GatherElements" => Op::GatherElements { axis: a.int("axis", 0)? },
        "ReduceSum" => return reduce(ReduceOp::Sum),
        "ReduceMean" => return reduce(ReduceOp::Mean),
        "ReduceMax" => return reduce(ReduceOp::Max),
        "ReduceMin" => return reduce(ReduceOp::Min),
        "ReduceProd" => return reduce(ReduceOp::Prod),
        "ReduceL1" => return reduce(ReduceOp::L1),
        "ReduceL2" => return reduce(ReduceOp::L2),
        "ReduceLogSum" => return reduce(ReduceOp::LogSum),
        "ReduceLogSumExp" => return reduce(ReduceOp::LogSumExp),
        "ReduceSumSquare" => return reduce(ReduceOp::SumSquare),
        "ArgMax" | "ArgMin" => Op::ArgExtreme {
            max: np.op_type == "ArgMax",
            axis: a.int("axis", 0)?,
            keepdims: a.int("keepdims", 1)? != 0,
            select_last_index: a.int("select_last_index", 0)? != 0,
        },
        "ConstantOfShape" => {
            let value = a.tensor("value")?.unwrap_or_else(|| Tensor::from_f32(&[1], vec![0.0]).unwrap());
            if value.numel() != 1 {
                return Err(a.err(format!("value must have one element, has {}", value.numel())));
            }
            Op::ConstantOfShape { value: Arc::new(value) }
        }
        "Expand" => Op::Expand,
        "Range" => Op::Range,
        "Where" => Op::Where,
        "Softmax" | "LogSoftmax" => Op::Softmax {
            axis: a.int("axis", if opset >= 13 { -1 } else { 1 })?,
            log: np.op_type == "LogSoftmax",
            legacy: opset < 13,
        },
        "LayerNormalization" => {
            if a.int("stash_type", 1)? != 1 {
                return Err(Error::Unsupported { node: name.into(), op: np.op_type.clone(), what: "stash_type other than float".into() });
            }
            Op::LayerNorm { axis: a.int("axis", -1)?, epsilon: a.float("epsilon", 1e-5)? }
        }
        other => return Err(Error::Unsupported { node: name.into(), op: other.into(), what: format!("operator {other} (opset {opset})") }),
    };
    Ok(Parsed::Op(op))
}

/// RNN / GRU / LSTM attributes, with the default activations and the alpha/beta lists consumed
/// in order by the activations that take them.
fn recurrent(a: &Attrs, op_type: &str) -> Result<RnnAttrs> {
    let kind = match op_type {
        "RNN" => RnnKind::Rnn,
        "GRU" => RnnKind::Gru,
        _ => RnnKind::Lstm,
    };
    let (directions, reverse) = match a.string("direction")?.as_deref().unwrap_or("forward") {
        "forward" => (1, false),
        "reverse" => (1, true),
        "bidirectional" => (2, false),
        d => return Err(a.err(format!("unknown direction '{d}'"))),
    };
    let hidden = usize::try_from(a.int("hidden_size", 0)?).ok().filter(|&h| h > 0).ok_or_else(|| a.err("hidden_size must be positive".into()))?;
    let per = kind.activations();
    let names = match a.strings("activations")? {
        Some(v) if v.len() == per * directions => v,
        Some(v) if v.len() == per => (0..directions).flat_map(|_| v.iter().cloned()).collect(),
        Some(v) => return Err(a.err(format!("{} activations given, {} expected", v.len(), per * directions))),
        None => {
            let d: &[&str] = match kind {
                RnnKind::Rnn => &["Tanh"],
                RnnKind::Gru => &["Sigmoid", "Tanh"],
                RnnKind::Lstm => &["Sigmoid", "Tanh", "Tanh"],
            };
            (0..directions).flat_map(|_| d.iter().map(|s| s.to_string())).collect()
        }
    };
    let (alphas, betas) = (a.floats("activation_alpha")?.unwrap_or_default(), a.floats("activation_beta")?.unwrap_or_default());
    let (mut ai, mut bi) = (alphas.iter(), betas.iter());
    let mut alpha = |d: f32| ai.next().copied().unwrap_or(d);
    let mut beta = |d: f32| bi.next().copied().unwrap_or(d);
    let activations = names
        .iter()
        .map(|n| {
            Ok(match n.to_ascii_lowercase().as_str() {
                "relu" => RnnActivation::Relu,
                "tanh" => RnnActivation::Tanh,
                "sigmoid" => RnnActivation::Sigmoid,
                "affine" => RnnActivation::Affine(alpha(1.0), beta(0.0)),
                "leakyrelu" => RnnActivation::LeakyRelu(alpha(0.01)),
                "thresholdedrelu" => RnnActivation::ThresholdedRelu(alpha(1.0)),
                "scaledtanh" => RnnActivation::ScaledTanh(alpha(1.0), beta(1.0)),
                "hardsigmoid" => RnnActivation::HardSigmoid(alpha(0.2), beta(0.5)),
                "elu" => RnnActivation::Elu(alpha(1.0)),
                "softsign" => RnnActivation::Softsign,
                "softplus" => RnnActivation::Softplus,
                other => return Err(a.err(format!("unknown activation '{other}'"))),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RnnAttrs {
        kind,
        hidden,
        directions,
        reverse,
        batch_first: a.int("layout", 0)? == 1,
        clip: a.opt_float("clip")?,
        activations,
        linear_before_reset: a.int("linear_before_reset", 0)? != 0,
        input_forget: a.int("input_forget", 0)? != 0,
    })
}
