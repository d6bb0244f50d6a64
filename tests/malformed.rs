//! Malformed-but-decodable models (shapes that do not fit an op, rank-0 data, non-finite
//! scales, out-of-range run-time values): each is refused with an error naming the node and op,
//! never a caught kernel panic (an `internal error`), on the CPU and, where an adapter exists,
//! on wgpu. After each refusal the same session runs a valid request.

mod common;
use common::builder::*;
use hetsched::{Error, Session, SessionOptions, Tensor};

struct Case {
    name: &'static str,
    opset: i64,
    build: fn(&mut ModelBuilder),
    inputs: fn() -> Vec<(String, Tensor)>,
}

fn f32s(shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_f32(shape, (0..n).map(|i| (i % 7) as f32 - 3.0).collect()).unwrap()
}

fn x(shape: &[usize]) -> Vec<(String, Tensor)> {
    vec![("x".into(), f32s(shape))]
}

fn x1344() -> Vec<(String, Tensor)> {
    x(&[1, 3, 4, 4])
}

fn i64s(shape: &[usize], v: Vec<i64>) -> Tensor {
    Tensor::from_i64(shape, v).unwrap()
}

const CASES: &[Case] = &[
    Case {
        name: "InstanceNormalization scale shorter than the channels",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["1", "3", "4", "4"]).output("y");
            b.init("s", &f32s(&[2])).init("b", &f32s(&[3]));
            b.node("InstanceNormalization", &["x", "s", "b"], &["y"], vec![]);
        },
        inputs: x1344,
    },
    Case {
        name: "InstanceNormalization bias longer than the channels",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["1", "3", "4", "4"]).output("y");
            b.init("s", &f32s(&[3])).init("b", &f32s(&[5]));
            b.node("InstanceNormalization", &["x", "s", "b"], &["y"], vec![]);
        },
        inputs: x1344,
    },
    Case {
        name: "InstanceNormalization of a rank-2 input",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["3", "4"]).output("y");
            b.init("s", &f32s(&[4])).init("b", &f32s(&[4]));
            b.node("InstanceNormalization", &["x", "s", "b"], &["y"], vec![]);
        },
        inputs: || x(&[3, 4]),
    },
    Case {
        name: "GroupNormalization groups not dividing the channels",
        opset: 21,
        build: |b| {
            b.input("x", 1, &["1", "3", "4", "4"]).output("y");
            b.init("s", &f32s(&[3])).init("b", &f32s(&[3]));
            b.node("GroupNormalization", &["x", "s", "b"], &["y"], vec![attr_int("num_groups", 2)]);
        },
        inputs: x1344,
    },
    Case {
        name: "GroupNormalization scale of the wrong length",
        opset: 21,
        build: |b| {
            b.input("x", 1, &["1", "3", "4", "4"]).output("y");
            b.init("s", &f32s(&[1])).init("b", &f32s(&[3]));
            b.node("GroupNormalization", &["x", "s", "b"], &["y"], vec![attr_int("num_groups", 3)]);
        },
        inputs: x1344,
    },
    Case {
        name: "RMSNormalization scale that does not broadcast",
        opset: 23,
        build: |b| {
            b.input("x", 1, &["2", "6"]).output("y");
            b.init("s", &f32s(&[4]));
            b.node("RMSNormalization", &["x", "s"], &["y"], vec![]);
        },
        inputs: || x(&[2, 6]),
    },
    Case {
        name: "LRN of a rank-2 input",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["3", "4"]).output("y");
            b.node("LRN", &["x"], &["y"], vec![attr_int("size", 3)]);
        },
        inputs: || x(&[3, 4]),
    },
    Case {
        name: "ReverseSequence lengths not one per batch entry",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["4", "2", "3"]).output("y");
            b.init("l", &i64s(&[3], vec![1, 2, 3]));
            b.node("ReverseSequence", &["x", "l"], &["y"], vec![attr_int("batch_axis", 1), attr_int("time_axis", 0)]);
        },
        inputs: || x(&[4, 2, 3]),
    },
    Case {
        name: "ReverseSequence with batch and time on the same axis",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["4", "2", "3"]).output("y");
            b.init("l", &i64s(&[4], vec![1, 2, 3, 4]));
            b.node("ReverseSequence", &["x", "l"], &["y"], vec![attr_int("batch_axis", 0), attr_int("time_axis", 0)]);
        },
        inputs: || x(&[4, 2, 3]),
    },
    Case {
        name: "ReverseSequence length past the time axis (a run-time value)",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["4", "2", "3"]).input("l", 7, &["2"]).output("y");
            b.node("ReverseSequence", &["x", "l"], &["y"], vec![attr_int("batch_axis", 1), attr_int("time_axis", 0)]);
        },
        inputs: || vec![("x".into(), f32s(&[4, 2, 3])), ("l".into(), i64s(&[2], vec![2, 9]))],
    },
    Case {
        name: "ScatterElements indices and updates of different shapes",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["3", "3"]).output("y");
            b.init("i", &i64s(&[2, 2], vec![0, 1, 2, 0])).init("u", &f32s(&[2, 3]));
            b.node("ScatterElements", &["x", "i", "u"], &["y"], vec![]);
        },
        inputs: || x(&[3, 3]),
    },
    Case {
        name: "ScatterElements indices of another rank than the data",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["3", "3"]).output("y");
            b.init("i", &i64s(&[2], vec![0, 1])).init("u", &f32s(&[2]));
            b.node("ScatterElements", &["x", "i", "u"], &["y"], vec![]);
        },
        inputs: || x(&[3, 3]),
    },
    Case {
        name: "ScatterElements indices larger than the data",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["2", "2"]).output("y");
            b.init("i", &i64s(&[3, 2], vec![0; 6])).init("u", &f32s(&[3, 2]));
            b.node("ScatterElements", &["x", "i", "u"], &["y"], vec![attr_int("axis", 1)]);
        },
        inputs: || x(&[2, 2]),
    },
    Case {
        name: "ScatterND updates of the wrong shape",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["4", "3"]).output("y");
            b.init("i", &i64s(&[2, 1], vec![0, 2])).init("u", &f32s(&[2, 2]));
            b.node("ScatterND", &["x", "i", "u"], &["y"], vec![]);
        },
        inputs: || x(&[4, 3]),
    },
    Case {
        name: "ScatterND index tuples longer than the data rank",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["4", "3"]).output("y");
            b.init("i", &i64s(&[1, 3], vec![0, 0, 0])).init("u", &f32s(&[1]));
            b.node("ScatterND", &["x", "i", "u"], &["y"], vec![]);
        },
        inputs: || x(&[4, 3]),
    },
    Case {
        name: "ScatterND of rank-0 indices",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["4", "3"]).output("y");
            b.init("i", &i64s(&[], vec![0])).init("u", &f32s(&[3]));
            b.node("ScatterND", &["x", "i", "u"], &["y"], vec![]);
        },
        inputs: || x(&[4, 3]),
    },
    Case {
        name: "Attention heads not dividing the hidden size",
        opset: 23,
        build: |b| {
            b.input("q", 1, &["1", "2", "6"]).input("k", 1, &["1", "2", "6"]).input("v", 1, &["1", "2", "6"]).output("y");
            b.node("Attention", &["q", "k", "v"], &["y"], vec![attr_int("q_num_heads", 4), attr_int("kv_num_heads", 4)]);
        },
        inputs: || ["q", "k", "v"].iter().map(|n| (n.to_string(), f32s(&[1, 2, 6]))).collect(),
    },
    Case {
        name: "Attention keys and values of different lengths",
        opset: 23,
        build: |b| {
            b.input("q", 1, &["1", "2", "2", "4"]).input("k", 1, &["1", "2", "3", "4"]).input("v", 1, &["1", "2", "5", "4"]).output("y");
            b.node("Attention", &["q", "k", "v"], &["y"], vec![]);
        },
        inputs: || vec![("q".into(), f32s(&[1, 2, 2, 4])), ("k".into(), f32s(&[1, 2, 3, 4])), ("v".into(), f32s(&[1, 2, 5, 4]))],
    },
    Case {
        name: "RotaryEmbedding of an odd head size",
        opset: 23,
        build: |b| {
            b.input("x", 1, &["1", "2", "2", "5"]).input("p", 7, &["1", "2"]).output("y");
            b.init("c", &f32s(&[4, 2])).init("s", &f32s(&[4, 2]));
            b.node("RotaryEmbedding", &["x", "c", "s", "p"], &["y"], vec![]);
        },
        inputs: || vec![("x".into(), f32s(&[1, 2, 2, 5])), ("p".into(), i64s(&[1, 2], vec![0, 1]))],
    },
    Case {
        name: "RotaryEmbedding cache narrower than half the head",
        opset: 23,
        build: |b| {
            b.input("x", 1, &["1", "2", "2", "8"]).input("p", 7, &["1", "2"]).output("y");
            b.init("c", &f32s(&[4, 2])).init("s", &f32s(&[4, 2]));
            b.node("RotaryEmbedding", &["x", "c", "s", "p"], &["y"], vec![]);
        },
        inputs: || vec![("x".into(), f32s(&[1, 2, 2, 8])), ("p".into(), i64s(&[1, 2], vec![0, 1]))],
    },
    Case {
        name: "RotaryEmbedding position past the cache (a run-time value)",
        opset: 23,
        build: |b| {
            b.input("x", 1, &["1", "2", "2", "8"]).input("p", 7, &["1", "2"]).output("y");
            b.init("c", &f32s(&[4, 4])).init("s", &f32s(&[4, 4]));
            b.node("RotaryEmbedding", &["x", "c", "s", "p"], &["y"], vec![]);
        },
        inputs: || vec![("x".into(), f32s(&[1, 2, 2, 8])), ("p".into(), i64s(&[1, 2], vec![0, 40]))],
    },
    Case {
        name: "Resize with an infinite scale",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["1", "1", "2", "2"]).output("y");
            b.init("s", &Tensor::from_f32(&[4], vec![1.0, 1.0, f32::INFINITY, 2.0]).unwrap());
            b.node("Resize", &["x", "", "s"], &["y"], vec![]);
        },
        inputs: || x(&[1, 1, 2, 2]),
    },
    Case {
        name: "Resize with a NaN scale",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["1", "1", "2", "2"]).output("y");
            b.init("s", &Tensor::from_f32(&[4], vec![1.0, 1.0, f32::NAN, 2.0]).unwrap());
            b.node("Resize", &["x", "", "s"], &["y"], vec![]);
        },
        inputs: || x(&[1, 1, 2, 2]),
    },
    Case {
        name: "Resize of an empty axis to a non-empty one",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["1", "1", "0", "2"]).output("y");
            b.init("z", &i64s(&[4], vec![1, 1, 3, 4]));
            b.node("Resize", &["x", "", "", "z"], &["y"], vec![attr_string("mode", "linear")]);
        },
        inputs: || x(&[1, 1, 0, 2]),
    },
    Case {
        name: "ArgMax of a rank-0 tensor",
        opset: 17,
        build: |b| {
            b.input("x", 1, &[]).output("y");
            b.node("ArgMax", &["x"], &["y"], vec![]);
        },
        inputs: || x(&[]),
    },
    Case {
        name: "Gather from rank-0 data",
        opset: 17,
        build: |b| {
            b.input("x", 1, &[]).output("y");
            b.init("i", &i64s(&[], vec![0]));
            b.node("Gather", &["x", "i"], &["y"], vec![]);
        },
        inputs: || x(&[]),
    },
    Case {
        name: "Split of rank-0 data",
        opset: 17,
        build: |b| {
            b.input("x", 1, &[]).output("y").output("z");
            b.node("Split", &["x"], &["y", "z"], vec![]);
        },
        inputs: || x(&[]),
    },
    Case {
        name: "Gather index past the axis (a run-time value)",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["3", "2"]).input("i", 7, &["2"]).output("y");
            b.node("Gather", &["x", "i"], &["y"], vec![]);
        },
        inputs: || vec![("x".into(), f32s(&[3, 2])), ("i".into(), i64s(&[2], vec![0, 3]))],
    },
    Case {
        name: "BitShift with an unknown direction",
        opset: 17,
        build: |b| {
            b.input("a", 12, &["3"]).input("s", 12, &["3"]).output("y");
            b.node("BitShift", &["a", "s"], &["y"], vec![attr_string("direction", "SIDEWAYS")]);
        },
        inputs: || vec![],
    },
    Case {
        name: "DepthToSpace with an unknown mode",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["1", "4", "2", "2"]).output("y");
            b.node("DepthToSpace", &["x"], &["y"], vec![attr_int("blocksize", 2), attr_string("mode", "XYZ")]);
        },
        inputs: || x(&[1, 4, 2, 2]),
    },
    Case {
        name: "LRN of size 0",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["1", "2", "2", "2"]).output("y");
            b.node("LRN", &["x"], &["y"], vec![attr_int("size", 0)]);
        },
        inputs: || x(&[1, 2, 2, 2]),
    },
    Case {
        name: "Conv kernel_shape contradicting its weights",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["1", "2", "8", "8"]).output("y");
            b.init("w", &f32s(&[3, 2, 3, 3]));
            b.node("Conv", &["x", "w"], &["y"], vec![attr_ints("kernel_shape", &[5, 5])]);
        },
        inputs: || x(&[1, 2, 8, 8]),
    },
    Case {
        name: "Relu given two inputs",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["3"]).output("y");
            b.node("Relu", &["x", "x"], &["y"], vec![]);
        },
        inputs: || x(&[3]),
    },
    Case {
        name: "Squeeze axes as an attribute at opset 13",
        opset: 13,
        build: |b| {
            b.input("x", 1, &["1", "3"]).output("y");
            b.node("Squeeze", &["x"], &["y"], vec![attr_ints("axes", &[0])]);
        },
        inputs: || x(&[1, 3]),
    },
    Case {
        name: "ReduceSum axes as an attribute at opset 13",
        opset: 13,
        build: |b| {
            b.input("x", 1, &["2", "3"]).output("y");
            b.node("ReduceSum", &["x"], &["y"], vec![attr_ints("axes", &[1])]);
        },
        inputs: || x(&[2, 3]),
    },
    Case {
        name: "ReduceMean axes as an attribute at opset 18",
        opset: 18,
        build: |b| {
            b.input("x", 1, &["2", "3"]).output("y");
            b.node("ReduceMean", &["x"], &["y"], vec![attr_ints("axes", &[1])]);
        },
        inputs: || x(&[2, 3]),
    },
    Case {
        name: "Split sizes as an attribute at opset 13",
        opset: 13,
        build: |b| {
            b.input("x", 1, &["2", "3"]).output("y").output("z");
            b.node("Split", &["x"], &["y", "z"], vec![attr_ints("split", &[1, 2]), attr_int("axis", 1)]);
        },
        inputs: || x(&[2, 3]),
    },
    Case {
        name: "Clip bounds as attributes at opset 11",
        opset: 11,
        build: |b| {
            b.input("x", 1, &["3"]).output("y");
            b.node("Clip", &["x"], &["y"], vec![attr_float("min", 0.0)]);
        },
        inputs: || x(&[3]),
    },
    Case {
        name: "Gather index below minus the axis (a run-time value)",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["3", "2"]).input("i", 7, &["2"]).output("y");
            b.node("Gather", &["x", "i"], &["y"], vec![attr_int("axis", 0)]);
        },
        inputs: || vec![("x".into(), f32s(&[3, 2])), ("i".into(), i64s(&[2], vec![-1, -4]))],
    },
    Case {
        name: "GatherElements index past the axis (a run-time value)",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["3", "3"]).input("i", 7, &["2", "3"]).output("y");
            b.node("GatherElements", &["x", "i"], &["y"], vec![attr_int("axis", 1)]);
        },
        inputs: || vec![("x".into(), f32s(&[3, 3])), ("i".into(), i64s(&[2, 3], vec![0, 1, 2, 2, 5, 0]))],
    },
    Case {
        name: "ScatterElements index past the axis (a run-time value)",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["3", "3"]).input("i", 7, &["1", "2"]).output("y");
            b.init("u", &f32s(&[1, 2]));
            b.node("ScatterElements", &["x", "i", "u"], &["y"], vec![attr_int("axis", 0)]);
        },
        inputs: || vec![("x".into(), f32s(&[3, 3])), ("i".into(), i64s(&[1, 2], vec![1, 3]))],
    },
    Case {
        name: "GatherND index tuple past the data (a run-time value)",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["3", "4"]).input("i", 7, &["2", "2"]).output("y");
            b.node("GatherND", &["x", "i"], &["y"], vec![]);
        },
        inputs: || vec![("x".into(), f32s(&[3, 4])), ("i".into(), i64s(&[2, 2], vec![0, 1, 2, 4]))],
    },
    Case {
        name: "ScatterND index tuple past the data (a run-time value)",
        opset: 17,
        build: |b| {
            b.input("x", 1, &["3", "4"]).input("i", 7, &["1", "1"]).output("y");
            b.init("u", &f32s(&[1, 4]));
            b.node("ScatterND", &["x", "i", "u"], &["y"], vec![]);
        },
        inputs: || vec![("x".into(), f32s(&[3, 4])), ("i".into(), i64s(&[1, 1], vec![-4]))],
    },
];

fn check(device: &str) {
    let mut failures = vec![];
    for case in CASES {
        let mut b = ModelBuilder::new();
        b.opset = case.opset;
        (case.build)(&mut b);
        let session = match Session::from_bytes(&b.bytes(), SessionOptions { device: device.into(), ..Default::default() }) {
            Ok(s) => s,
            Err(e) => {
                // Refused at load: fine when it says why.
                if matches!(e, Error::Internal { .. }) {
                    failures.push(format!("{}: load panicked: {e}", case.name));
                }
                continue;
            }
        };
        match session.run((case.inputs)()) {
            Ok(_) => failures.push(format!("{}: ran", case.name)),
            Err(e @ Error::Internal { .. }) => failures.push(format!("{}: {e}", case.name)),
            Err(e) => {
                let text = e.to_string();
                let op = b.graph.node[0].op_type.clone();
                if !(text.contains(&op) || text.contains(&b.graph.node[0].name)) {
                    failures.push(format!("{}: the error does not name the node or op: {text}", case.name));
                }
                println!("{device} {}: {text}", case.name);
            }
        }
    }
    assert!(failures.is_empty(), "on {device}:\n{}", failures.join("\n"));
}

#[test]
fn malformed_ops_are_refused_with_the_node_on_cpu() {
    check("cpu");
}

#[test]
fn malformed_ops_are_refused_with_the_node_on_wgpu() {
    if let Err(e) = hetsched::backend::by_name("wgpu") {
        if std::env::var_os("CI").is_some() && cfg!(feature = "wgpu") {
            panic!("CI must have a wgpu adapter: {e}");
        }
        return eprintln!("SKIPPED wgpu: {e}");
    }
    check("wgpu");
}

/// A batch whose weights and activations exceed the budget is refused before anything is
/// allocated, saying how much it needs; the same session then runs a batch that fits.
#[test]
fn a_batch_over_the_memory_budget_is_refused_and_the_session_stays_usable() {
    let Some(dir) = common::model_dir("squeezenet1_1") else { return };
    let s = Session::from_path(dir.join("model.onnx"), SessionOptions { mem_budget: Some(64 << 20), ..Default::default() }).unwrap();
    let big = s.random_inputs(&hetsched::session::default_bindings(s.graph(), 64, 16, &Default::default()), 0).unwrap();
    match s.run(big) {
        Err(e @ Error::Memory(_)) => {
            let t = e.to_string();
            assert!(t.contains("needs") && t.contains("budget") && t.contains("64.0 MiB"), "{t}");
        }
        other => panic!("batch 64 within 64 MiB: {:?}", other.map(|_| ())),
    }
    let small = s.random_inputs(&hetsched::session::default_bindings(s.graph(), 1, 16, &Default::default()), 0).unwrap();
    s.run(small).expect("batch 1 fits");
}

/// Resize with a huge scale (legal output size, absurd tap tables) is an error, not an abort.
#[test]
fn a_resize_too_large_to_hold_is_an_error() {
    let mut b = ModelBuilder::new();
    b.input("x", 1, &["1", "1", "1", "2"]).output("y");
    b.init("s", &Tensor::from_f32(&[4], vec![1.0, 1.0, 1.0, 4.0e8]).unwrap());
    b.node("Resize", &["x", "", "s"], &["y"], vec![attr_string("mode", "linear")]);
    let s = Session::from_bytes(&b.bytes(), SessionOptions::default()).unwrap();
    let e = s.run(x(&[1, 1, 1, 2])).err().expect("800M-element resize refused");
    assert!(matches!(e, Error::Memory(_)) && e.to_string().contains("budget"), "{e}");
}

/// Integer Div and Mod by zero have no answer: refused on the CPU, naming the node (they used
/// to return 0).
#[test]
fn integer_division_by_zero_is_refused() {
    for op in ["Div", "Mod"] {
        let mut b = ModelBuilder::new();
        b.input("a", 7, &["3"]).input("b", 7, &["3"]).output("y");
        b.node(op, &["a", "b"], &["y"], vec![]);
        let s = Session::from_bytes(&b.bytes(), SessionOptions::default()).unwrap();
        let run = |d: Vec<i64>| s.run(vec![("a".into(), i64s(&[3], vec![7, 8, 9])), ("b".into(), i64s(&[3], d))]);
        let e = run(vec![2, 0, 3]).err().unwrap_or_else(|| panic!("{op} by zero ran")).to_string();
        assert!(e.contains(op) && e.contains("by zero"), "{e}");
        // The session stays usable.
        let ok = run(vec![2, 4, 3]).unwrap();
        assert_eq!(ok[0].1.to_i64_vec().unwrap(), if op == "Div" { vec![3, 2, 3] } else { vec![1, 0, 0] });
    }
}

/// An input declared without a shape has an unknown rank: refused, not taken for a scalar.
#[test]
fn an_input_without_a_shape_is_refused() {
    let mut b = ModelBuilder::new();
    b.input("x", 1, &["2"]).output("y").node("Relu", &["x"], &["y"], vec![]);
    b.graph.input[0].r#type.as_mut().unwrap().tensor_type.as_mut().unwrap().shape = None;
    let e = Session::from_bytes(&b.bytes(), SessionOptions::default()).err().expect("refused").to_string();
    assert!(e.contains("'x'") && e.contains("no shape"), "{e}");
}

/// A conformance case with no test data is an error, not a pass.
#[test]
fn a_conformance_case_without_test_data_is_not_a_pass() {
    let dir = std::env::temp_dir().join(format!("hetsched-empty-case-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut b = ModelBuilder::new();
    b.input("x", 1, &["2"]).output("y").node("Relu", &["x"], &["y"], vec![]);
    std::fs::write(dir.join("model.onnx"), b.bytes()).unwrap();
    let r = hetsched::conformance::run_case(&dir, "cpu", hetsched::Tolerance::ONNX, false);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(r.status, hetsched::conformance::Status::Error, "{}", r.detail);
    assert!(r.detail.contains("no test_data_set"), "{}", r.detail);
}

/// A node sized only at run time (ConstantOfShape of a shape given as input) cannot allocate
/// past the budget: an error naming it, and the same session runs a small request after.
#[test]
fn a_node_sized_at_run_time_respects_the_budget() {
    let mut b = ModelBuilder::new();
    b.input("s", 7, &["2"]).output("y");
    b.node("ConstantOfShape", &["s"], &["y"], vec![]);
    let s = Session::from_bytes(&b.bytes(), SessionOptions { mem_budget: Some(1 << 20), ..Default::default() }).unwrap();
    let e = s.run(vec![("s".into(), i64s(&[2], vec![30000, 30000]))]).err().expect("3.6 GB refused");
    assert!(matches!(e, Error::Memory(_)) && e.to_string().contains("ConstantOfShape"), "{e}");
    let ok = s.run(vec![("s".into(), i64s(&[2], vec![2, 3]))]).unwrap();
    assert_eq!(ok[0].1.shape(), &[2, 3]);
}
