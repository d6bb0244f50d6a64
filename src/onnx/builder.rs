//! A small ONNX model builder: synthetic graphs for the profiler's micro-benchmarks, tests and
//! malformed models.

use super::proto::*;
use super::tensor_to_proto;
use crate::Tensor;
use prost::Message;

#[derive(Clone, Debug)]
pub struct ModelBuilder {
    pub graph: GraphProto,
    pub opset: i64,
}

pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attr_type::INT, i: v, ..Default::default() }
}
pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attr_type::INTS, ints: v.to_vec(), ..Default::default() }
}
pub fn attr_string(name: &str, v: &str) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attr_type::STRING, s: v.as_bytes().to_vec(), ..Default::default() }
}
pub fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attr_type::FLOAT, f: v, ..Default::default() }
}

/// Deterministic pseudo-random values in [-1, 1).
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

impl Default for ModelBuilder {
    fn default() -> Self {
        ModelBuilder::new()
    }
}

impl ModelBuilder {
    pub fn new() -> Self {
        ModelBuilder { graph: GraphProto { name: "test".into(), ..Default::default() }, opset: 17 }
    }
    /// A graph input with dims given as numbers or symbolic names.
    pub fn input(&mut self, name: &str, elem_type: i32, dims: &[&str]) -> &mut Self {
        let dim = dims
            .iter()
            .map(|d| match d.parse::<i64>() {
                Ok(v) => Dimension { dim_value: Some(v), dim_param: None },
                Err(_) => Dimension { dim_value: None, dim_param: Some(d.to_string()) },
            })
            .collect();
        self.graph.input.push(ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto { tensor_type: Some(TypeProtoTensor { elem_type, shape: Some(TensorShapeProto { dim }) }) }),
        });
        self
    }
    pub fn output(&mut self, name: &str) -> &mut Self {
        self.graph.output.push(ValueInfoProto { name: name.into(), r#type: None });
        self
    }
    pub fn init(&mut self, name: &str, t: &Tensor) -> &mut Self {
        self.graph.initializer.push(tensor_to_proto(t, name));
        self
    }
    pub fn node(&mut self, op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> &mut Self {
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: format!("{op}_{}", self.graph.node.len()),
            op_type: op.into(),
            domain: String::new(),
            attribute: attrs,
        });
        self
    }
    pub fn bytes(&self) -> Vec<u8> {
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: self.opset }],
            producer_name: "hetsched".into(),
            producer_version: String::new(),
            graph: Some(self.graph.clone()),
        }
        .encode_to_vec()
    }
}
