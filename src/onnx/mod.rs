//! ONNX ModelProto -> [`Graph`], and TensorProto <-> [`Tensor`].

mod external;
mod ops;
pub mod builder;
pub mod proto;

use crate::error::{Error, Result};
use crate::graph::{Dim, Graph, GraphInput, GraphOutput, Op, Value};
use crate::tensor::{checked_numel, DType, Data, Tensor};
use half::f16;
use prost::Message;
use proto::*;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Loads an `.onnx` file, and any tensors it stores as external data (files named relative to
/// the model's folder, as `onnx.save(..., save_as_external_data=True)` and exporters of large
/// models write them).
pub fn load_model(path: impl AsRef<Path>) -> Result<Graph> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    let folder = path.parent().map(Path::to_path_buf).unwrap_or_default();
    decode_model(&bytes, Some(&folder))
}

/// Decodes a serialized ModelProto and builds the graph. A model with external data needs its
/// folder: load it with [`load_model`].
pub fn load_model_bytes(bytes: &[u8]) -> Result<Graph> {
    decode_model(bytes, None)
}

fn decode_model(bytes: &[u8], folder: Option<&Path>) -> Result<Graph> {
    let model = ModelProto::decode(bytes).map_err(|e| Error::Decode(e.to_string()))?;
    let graph = model.graph.as_ref().ok_or_else(|| Error::InvalidModel("model has no graph".into()))?;
    let opset = model
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max()
        // A model of other domains only: its nodes are refused one by one as unsupported.
        .unwrap_or(0);
    build_graph(graph, opset, folder)
}

fn build_graph(gp: &GraphProto, opset: i64, folder: Option<&Path>) -> Result<Graph> {
    let mut g = Graph { opset, ..Default::default() };
    // name -> (node, slot) of the producer
    let mut producers: HashMap<String, (petgraph::stable_graph::NodeIndex, usize)> = HashMap::new();
    let claim = |name: &str, at, producers: &mut HashMap<_, _>| -> Result<()> {
        if producers.insert(name.to_string(), at).is_some() {
            return Err(Error::InvalidModel(format!("tensor '{name}' is produced more than once")));
        }
        Ok(())
    };
    let init_names: HashSet<&str> = gp.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut external = external::Files::default();
    for t in &gp.initializer {
        let tensor = if external::is_external(t) {
            let folder = folder.ok_or_else(|| Error::InvalidModel(format!("tensor '{}' is stored as external data: load the model from its file, not from bytes", t.name)))?;
            tensor_from_proto(&external.inline(t, folder)?)?
        } else {
            tensor_from_proto(t)?
        };
        let n = g.add_constant(t.name.clone(), tensor, true);
        claim(&t.name, (n, 0), &mut producers)?;
    }
    for vi in gp.input.iter().filter(|vi| !init_names.contains(vi.name.as_str())) {
        let (dtype, shape) = value_info_type(vi)?;
        let n = g.add_node(vi.name.clone(), Op::Input, 0, vec![Value::named(vi.name.clone())]);
        claim(&vi.name, (n, 0), &mut producers)?;
        g.inputs.push(GraphInput { node: n, name: vi.name.clone(), dtype, shape });
    }
    let mut pending = Vec::with_capacity(gp.node.len());
    for (i, np) in gp.node.iter().enumerate() {
        let name = if np.name.is_empty() {
            format!("{}_{}", np.op_type, np.output.first().cloned().unwrap_or_else(|| i.to_string()))
        } else {
            np.name.clone()
        };
        if !(np.domain.is_empty() || np.domain == "ai.onnx") {
            return Err(Error::Unsupported { node: name, op: np.op_type.clone(), what: format!("operator domain '{}'", np.domain) });
        }
        let op = ops::parse(np, &name, opset)?;
        let outputs = np.output.iter().map(|o| Value::named(o.clone())).collect();
        let n = match op {
            ops::Parsed::Op(op) => g.add_node(name.clone(), op, np.input.len(), outputs),
            ops::Parsed::Constant(t) => {
                let n = g.add_constant(name.clone(), t, false);
                g.g[n].outputs[0].name = np.output.first().cloned().unwrap_or_default();
                n
            }
        };
        for (slot, o) in np.output.iter().enumerate().filter(|(_, o)| !o.is_empty()) {
            claim(o, (n, slot), &mut producers)?;
        }
        pending.push((n, np, name));
    }
    for (n, np, name) in pending {
        for (slot, inp) in np.input.iter().enumerate() {
            if inp.is_empty() {
                continue; // absent optional input
            }
            let &(p, ps) = producers.get(inp).ok_or_else(|| Error::Node {
                node: name.clone(),
                op: np.op_type.clone(),
                msg: format!("input {slot} reads tensor '{inp}', which no node, input or initializer produces"),
            })?;
            g.connect(p, ps, n, slot);
        }
    }
    for o in &gp.output {
        let &(node, slot) = producers.get(&o.name).ok_or_else(|| Error::InvalidModel(format!("graph output '{}' is never produced", o.name)))?;
        g.outputs.push(GraphOutput { name: o.name.clone(), node, slot });
    }
    g.toposort()?;
    Ok(g)
}

fn value_info_type(vi: &ValueInfoProto) -> Result<(DType, Vec<Dim>)> {
    let tt = vi
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .ok_or_else(|| Error::Unsupported { node: vi.name.clone(), op: "Input".into(), what: "a non-tensor input (sequence, map or optional)".into() })?;
    let dtype = DType::from_onnx(tt.elem_type).ok_or_else(|| Error::Unsupported {
        node: vi.name.clone(),
        op: "Input".into(),
        what: format!("dtype {}", DType::onnx_name(tt.elem_type)),
    })?;
    // No shape field means the rank is unknown (a scalar has an empty shape field, not none).
    let dims = tt.shape.as_ref().map(|s| s.dim.as_slice()).ok_or_else(|| {
        Error::InvalidModel(format!("input '{}' declares no shape, so its rank is unknown; hetsched needs every input's rank (set it in the model, e.g. with onnx's update_inputs_outputs_dims)", vi.name))
    })?;
    let shape = dims
        .iter()
        .enumerate()
        .map(|(i, d)| match (&d.dim_value, &d.dim_param) {
            (Some(v), _) if *v >= 0 => Ok(Dim::Known(*v as usize)),
            (Some(v), _) => Err(Error::InvalidModel(format!("input '{}' dim {i} is negative ({v})", vi.name))),
            (None, Some(p)) if !p.is_empty() => Ok(Dim::Sym(p.clone())),
            _ => Ok(Dim::Sym(format!("{}_dim{i}", vi.name))),
        })
        .collect::<Result<_>>()?;
    Ok((dtype, shape))
}

/// Decodes a TensorProto (raw_data or typed fields).
pub fn tensor_from_proto(t: &TensorProto) -> Result<Tensor> {
    let ctx = |m: String| Error::InvalidModel(format!("tensor '{}': {m}", t.name));
    if external::is_external(t) {
        return Err(ctx("stored as external data outside the graph's initializers (hetsched reads external data for initializers only)".into()));
    }
    let dtype = DType::from_onnx(t.data_type)
        .ok_or_else(|| Error::Unsupported { node: t.name.clone(), op: "Tensor".into(), what: format!("dtype {}", DType::onnx_name(t.data_type)) })?;
    let shape = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| ctx(format!("negative dim in {:?}", t.dims))))
        .collect::<Result<Vec<usize>>>()?;
    let n = checked_numel(&shape).map_err(|e| ctx(e.to_string()))?;
    let data = if !t.raw_data.is_empty() || n == 0 && typed_len(t) == 0 {
        let raw = &t.raw_data;
        if raw.len() != n * dtype.size() {
            return Err(ctx(format!("raw_data has {} bytes, shape {shape:?} of {dtype} needs {}", raw.len(), n * dtype.size())));
        }
        Data::from_le_bytes(dtype, raw)
    } else {
        let data = match dtype {
            DType::F32 => Data::F32(t.float_data.clone()),
            DType::F64 => Data::F64(t.double_data.clone()),
            DType::I64 => Data::I64(t.int64_data.clone()),
            DType::I32 => Data::I32(t.int32_data.clone()),
            DType::I8 => Data::I8(t.int32_data.iter().map(|&x| x as i8).collect()),
            DType::U8 => Data::U8(t.int32_data.iter().map(|&x| x as u8).collect()),
            DType::I16 => Data::I16(t.int32_data.iter().map(|&x| x as i16).collect()),
            DType::U16 => Data::U16(t.int32_data.iter().map(|&x| x as u16).collect()),
            DType::U32 => Data::U32(t.uint64_data.iter().map(|&x| x as u32).collect()),
            DType::U64 => Data::U64(t.uint64_data.clone()),
            DType::Bool => Data::Bool(t.int32_data.iter().map(|&x| x != 0).collect()),
            DType::F16 => Data::F16(t.int32_data.iter().map(|&x| f16::from_bits(x as u16)).collect()),
            DType::BF16 => Data::BF16(t.int32_data.iter().map(|&x| half::bf16::from_bits(x as u16)).collect()),
        };
        if data.len() != n {
            return Err(ctx(format!("has {} elements, shape {shape:?} needs {n}", data.len())));
        }
        data
    };
    Tensor::new(shape, data)
}

fn typed_len(t: &TensorProto) -> usize {
    t.float_data.len() + t.double_data.len() + t.int64_data.len() + t.int32_data.len() + t.uint64_data.len()
}

/// Encodes a tensor as a TensorProto with raw_data.
pub fn tensor_to_proto(t: &Tensor, name: &str) -> TensorProto {
    let raw = t.data().to_le_bytes();
    TensorProto {
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: t.dtype().onnx_code(),
        name: name.to_string(),
        raw_data: raw,
        ..Default::default()
    }
}

/// Reads a serialized TensorProto file (`input_0.pb`), returning its name and value.
pub fn read_tensor_file(path: impl AsRef<Path>) -> Result<(String, Tensor)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    let tp = TensorProto::decode(bytes.as_slice()).map_err(|e| Error::Decode(format!("{}: {e}", path.display())))?;
    Ok((tp.name.clone(), tensor_from_proto(&tp)?))
}

/// Reads `prefix_0.pb, prefix_1.pb, ...` from a test-data folder, in order.
pub fn read_tensor_set(dir: impl AsRef<Path>, prefix: &str) -> Result<Vec<(String, Tensor)>> {
    let dir = dir.as_ref();
    let mut out = vec![];
    for i in 0.. {
        let p = dir.join(format!("{prefix}_{i}.pb"));
        if !p.exists() {
            break;
        }
        out.push(read_tensor_file(&p)?);
    }
    Ok(out)
}
