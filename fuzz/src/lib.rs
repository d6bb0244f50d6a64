//! Fuzz harnesses, shared by the cargo-fuzz targets (`fuzz/fuzz_targets`, coverage-guided,
//! nightly) and by the short pass CI runs on stable (`tests/fuzz_pass.rs`, seeded random
//! bytes): hetsched may refuse any input, but a panic (even one it contains, an
//! `Error::Internal`), a hang or an abort is a finding.

use hetsched::onnx::builder::{attr_float, attr_int, attr_ints, attr_string, ModelBuilder};
use hetsched::onnx::proto::AttributeProto;
use hetsched::{Error, Session, SessionOptions, Tensor};

/// A cursor over the fuzzer's bytes: past the end it reads zeros.
pub struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data, at: 0 }
    }
    fn u8(&mut self) -> u8 {
        let v = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        v
    }
    fn below(&mut self, n: usize) -> usize {
        self.u8() as usize % n.max(1)
    }
    /// A small integer, negative ones included: -4..=7.
    fn small(&mut self) -> i64 {
        self.below(12) as i64 - 4
    }
    fn float(&mut self) -> f32 {
        match self.below(10) {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => f32::NEG_INFINITY,
            3 => 0.0,
            _ => (self.u8() as i8) as f32 / 16.0,
        }
    }
    fn done(&self) -> bool {
        self.at >= self.data.len()
    }
}

/// Any run-time budget a generated model gets: small enough that nothing generated can take the
/// machine, large enough for every shape the generator makes.
const BUDGET: u64 = 256 << 20;

fn options() -> SessionOptions {
    SessionOptions { mem_budget: Some(BUDGET), ..Default::default() }
}

/// A contained panic is still a bug: report it as a crash.
fn no_internal<T>(r: hetsched::Result<T>, what: &str) {
    if let Err(e @ Error::Internal { .. }) = r {
        panic!("{what}: {e}");
    }
}

/// Decoding any bytes as a model.
pub fn load(data: &[u8]) {
    no_internal(hetsched::onnx::load_model_bytes(data).map(|_| ()), "load");
}

/// Loading, binding (batch and sequence dims to small values), inference, folding and the
/// graph passes, then the cost facts.
pub fn bind(data: &[u8]) {
    let Ok(g) = hetsched::onnx::load_model_bytes(data) else { return };
    let bindings = hetsched::session::default_bindings(&g, 1, 4, &Default::default());
    let r = hetsched::session::bind(&g, &bindings).and_then(|mut b| {
        hetsched::passes::optimize(&mut b)?;
        hetsched::budget::check(&b, &bindings, BUDGET)?;
        hetsched::analysis::analyze(&b).map(|_| ())
    });
    no_internal(r, "bind");
}

#[derive(Clone, Copy)]
enum Attr {
    Int(&'static str),
    Ints(&'static str),
    Float(&'static str),
    Str(&'static str, &'static [&'static str]),
}

use Attr::*;

/// Op type, fewest and most inputs, outputs, attributes it may get.
const OPS: &[(&str, usize, usize, usize, &[Attr])] = &[
    ("Relu", 1, 1, 1, &[]),
    ("Sigmoid", 1, 1, 1, &[]),
    ("Abs", 1, 1, 1, &[]),
    ("Exp", 1, 1, 1, &[]),
    ("Sqrt", 1, 1, 1, &[]),
    ("Neg", 1, 1, 1, &[]),
    ("Add", 2, 2, 1, &[]),
    ("Sub", 2, 2, 1, &[]),
    ("Mul", 2, 2, 1, &[]),
    ("Div", 2, 2, 1, &[]),
    ("Pow", 2, 2, 1, &[]),
    ("Max", 1, 3, 1, &[]),
    ("Mod", 2, 2, 1, &[Int("fmod")]),
    ("Equal", 2, 2, 1, &[]),
    ("Where", 3, 3, 1, &[]),
    ("Softmax", 1, 1, 1, &[Int("axis")]),
    ("Hardmax", 1, 1, 1, &[Int("axis")]),
    ("Transpose", 1, 1, 1, &[Ints("perm")]),
    ("Reshape", 2, 2, 1, &[Int("allowzero")]),
    ("Flatten", 1, 1, 1, &[Int("axis")]),
    ("Squeeze", 1, 2, 1, &[]),
    ("Unsqueeze", 2, 2, 1, &[]),
    ("Concat", 1, 3, 1, &[Int("axis")]),
    ("Split", 1, 2, 3, &[Int("axis")]),
    ("Slice", 3, 5, 1, &[]),
    ("Gather", 2, 2, 1, &[Int("axis")]),
    ("GatherElements", 2, 2, 1, &[Int("axis")]),
    ("GatherND", 2, 2, 1, &[Int("batch_dims")]),
    ("ScatterElements", 3, 3, 1, &[Int("axis"), Str("reduction", &["none", "add", "max", "bad"])]),
    ("ScatterND", 3, 3, 1, &[Str("reduction", &["none", "mul"])]),
    ("Expand", 2, 2, 1, &[]),
    ("Tile", 2, 2, 1, &[]),
    ("Pad", 2, 3, 1, &[Str("mode", &["constant", "reflect", "edge", "wrap", "bogus"])]),
    ("ReduceSum", 1, 2, 1, &[Int("keepdims"), Int("noop_with_empty_axes")]),
    ("ReduceMax", 1, 2, 1, &[Int("keepdims")]),
    ("ArgMax", 1, 1, 1, &[Int("axis"), Int("keepdims"), Int("select_last_index")]),
    ("TopK", 2, 2, 2, &[Int("axis"), Int("largest")]),
    ("CumSum", 2, 2, 1, &[Int("exclusive"), Int("reverse")]),
    ("Conv", 2, 3, 1, &[Int("group"), Ints("kernel_shape"), Ints("strides"), Ints("pads"), Ints("dilations"), Str("auto_pad", &["NOTSET", "SAME_UPPER", "VALID"])]),
    ("ConvTranspose", 2, 3, 1, &[Int("group"), Ints("strides"), Ints("output_padding")]),
    ("MaxPool", 1, 1, 2, &[Ints("kernel_shape"), Ints("strides"), Ints("pads"), Int("ceil_mode")]),
    ("AveragePool", 1, 1, 1, &[Ints("kernel_shape"), Ints("strides"), Int("count_include_pad")]),
    ("GlobalAveragePool", 1, 1, 1, &[]),
    ("BatchNormalization", 5, 5, 1, &[Float("epsilon")]),
    ("InstanceNormalization", 3, 3, 1, &[Float("epsilon")]),
    ("LayerNormalization", 2, 3, 1, &[Int("axis")]),
    ("LRN", 1, 1, 1, &[Int("size"), Float("alpha")]),
    ("MatMul", 2, 2, 1, &[]),
    ("Gemm", 2, 3, 1, &[Int("transA"), Int("transB"), Float("alpha")]),
    ("Resize", 1, 4, 1, &[Str("mode", &["nearest", "linear", "cubic", "x"]), Str("coordinate_transformation_mode", &["half_pixel", "align_corners", "asymmetric", "tf_crop_and_resize"])]),
    ("DepthToSpace", 1, 1, 1, &[Int("blocksize"), Str("mode", &["DCR", "CRD"])]),
    ("SpaceToDepth", 1, 1, 1, &[Int("blocksize")]),
    ("Clip", 1, 3, 1, &[]),
    ("Cast", 1, 1, 1, &[Int("to")]),
    ("Range", 3, 3, 1, &[]),
    ("ConstantOfShape", 1, 1, 1, &[]),
    ("Shape", 1, 1, 1, &[Int("start"), Int("end")]),
    ("Size", 1, 1, 1, &[]),
    ("NonZero", 1, 1, 1, &[]),
    ("Unique", 1, 1, 4, &[Int("axis"), Int("sorted")]),
    ("Trilu", 1, 2, 1, &[Int("upper")]),
    ("ReverseSequence", 2, 2, 1, &[Int("batch_axis"), Int("time_axis")]),
    ("Einsum", 1, 2, 1, &[Str("equation", &["ij,jk->ik", "ii->i", "bij->bji", "i,i->", "ab"])]),
    ("OneHot", 3, 3, 1, &[Int("axis")]),
    ("BitShift", 2, 2, 1, &[Str("direction", &["LEFT", "RIGHT", "UP"])]),
    ("Dropout", 1, 1, 1, &[]),
    ("EyeLike", 1, 1, 1, &[Int("k")]),
];

fn attribute(b: &mut Bytes, a: Attr) -> AttributeProto {
    match a {
        Int("to") => attr_int("to", [1, 6, 7, 9, 10, 11, 0, 99][b.below(8)]),
        Int(n) => attr_int(n, b.small()),
        Ints(n) => {
            let len = b.below(5);
            attr_ints(n, &(0..len).map(|_| b.small()).collect::<Vec<_>>())
        }
        Float(n) => attr_float(n, b.float()),
        Str(n, options) => attr_string(n, options[b.below(options.len())]),
    }
}

/// A small tensor initializer: int64 (shapes, axes, indices) or float.
fn initializer(b: &mut Bytes) -> Tensor {
    if b.below(2) == 0 {
        let len = b.below(5);
        Tensor::from_i64(&[len], (0..len).map(|_| b.small()).collect()).expect("i64 vector")
    } else {
        let shape: Vec<usize> = (0..b.below(4)).map(|_| b.below(4)).collect();
        let n = shape.iter().product();
        Tensor::from_f32(&shape, (0..n).map(|_| b.float()).collect()).expect("f32 tensor")
    }
}

/// A model of up to six random ops over random inputs and initializers, its attributes and
/// shapes as the bytes say; loaded, bound and run on the CPU with seeded inputs.
pub fn run_graph(data: &[u8]) {
    let mut b = Bytes::new(data);
    let mut m = ModelBuilder::new();
    m.opset = [13, 17, 18, 21][b.below(4)];
    let mut values: Vec<String> = vec![];
    for i in 0..1 + b.below(2) {
        let dims: Vec<String> = (0..b.below(5)).map(|_| b.below(5).to_string()).collect();
        let dims: Vec<&str> = dims.iter().map(String::as_str).collect();
        let name = format!("in{i}");
        m.input(&name, [1, 7, 1, 9][b.below(4)], &dims);
        values.push(name);
    }
    let mut inits = 0;
    for k in 0..1 + b.below(6) {
        let (op, lo, hi, outs, attrs) = OPS[b.below(OPS.len())];
        let n_in = lo + b.below(hi - lo + 1);
        let mut ins = vec![];
        for _ in 0..n_in {
            if b.below(3) == 0 {
                let name = format!("c{inits}");
                inits += 1;
                m.init(&name, &initializer(&mut b));
                ins.push(name);
            } else {
                ins.push(values[b.below(values.len())].clone());
            }
        }
        let mut chosen: Vec<AttributeProto> = vec![];
        for &a in attrs {
            if b.below(2) == 0 {
                chosen.push(attribute(&mut b, a));
            }
        }
        let outputs: Vec<String> = (0..1 + b.below(outs)).map(|j| format!("v{k}_{j}")).collect();
        let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
        let outs: Vec<&str> = outputs.iter().map(String::as_str).collect();
        m.node(op, &ins, &outs, chosen);
        values.extend(outputs);
        if b.done() {
            break;
        }
    }
    m.output(values.last().expect("a value"));
    let bytes = m.bytes();
    let session = match Session::from_bytes(&bytes, options()) {
        Ok(s) => s,
        Err(e) => return no_internal::<()>(Err(e), "load generated"),
    };
    let inputs = match session.random_inputs(&Default::default(), b.u8() as u64) {
        Ok(i) => i,
        Err(e) => return no_internal::<()>(Err(e), "inputs"),
    };
    no_internal(session.run(inputs), "run generated");
}
