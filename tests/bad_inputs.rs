//! Malformed models and bad inputs get an error that names the problem: never a panic, a hang
//! or an absurd allocation.

mod common;
use common::builder::*;
use hetsched::{Error, Session, SessionOptions, Tensor};

fn load(bytes: &[u8]) -> hetsched::Result<Session> {
    Session::from_bytes(bytes, SessionOptions::default())
}

fn err_text<T>(r: hetsched::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// x -> Relu -> y, a valid model to corrupt.
fn relu_model() -> ModelBuilder {
    let mut b = ModelBuilder::new();
    b.input("x", 1, &["N", "4"]).output("y").node("Relu", &["x"], &["y"], vec![]);
    b
}

#[test]
fn valid_model_runs() {
    let s = load(&relu_model().bytes()).unwrap();
    let out = s.run(vec![("x".into(), Tensor::from_f32(&[1, 4], vec![-1.0, 2.0, -3.0, 4.0]).unwrap())]).unwrap();
    assert_eq!(out[0].1.as_f32().unwrap(), &[0.0, 2.0, 0.0, 4.0]);
}

#[test]
fn truncated_file_is_a_decode_error() {
    let Some(shared) = common::shared_dir() else { return };
    let bytes = std::fs::read(shared.join("models/squeezenet1_1/model.onnx")).unwrap();
    for cut in [1usize, 100, bytes.len() / 2, bytes.len() - 1] {
        let r = load(&bytes[..cut]);
        assert!(matches!(r, Err(Error::Decode(_)) | Err(Error::InvalidModel(_))), "cut at {cut}: {:?}", r.err());
    }
}

#[test]
fn random_bytes_are_an_error() {
    for seed in 0..50u64 {
        let bytes: Vec<u8> = rand_vec(64 + seed as usize * 37, seed).iter().map(|v| ((v + 1.0) * 127.0) as u8).collect();
        assert!(load(&bytes).is_err(), "seed {seed}");
    }
    assert!(matches!(load(&[]), Err(Error::InvalidModel(_))), "empty file has no graph");
}

#[test]
fn cycle_is_detected() {
    let mut b = ModelBuilder::new();
    b.input("x", 1, &["4"]).output("y");
    b.node("Add", &["x", "b"], &["a"], vec![]).node("Relu", &["a"], &["b"], vec![]).node("Relu", &["a"], &["y"], vec![]);
    let msg = err_text(load(&b.bytes()));
    assert!(msg.contains("cycle"), "{msg}");
}

#[test]
fn dangling_input_names_the_node_and_tensor() {
    let mut b = ModelBuilder::new();
    b.input("x", 1, &["4"]).output("y").node("Add", &["x", "ghost"], &["y"], vec![]);
    let msg = err_text(load(&b.bytes()));
    assert!(msg.contains("ghost") && msg.contains("Add_0"), "{msg}");
}

#[test]
fn unknown_op_names_the_node() {
    let mut b = ModelBuilder::new();
    b.input("x", 1, &["4"]).output("y").node("FrobnicateV9", &["x"], &["y"], vec![]);
    let r = load(&b.bytes());
    assert!(matches!(&r, Err(Error::Unsupported { node, op, .. }) if node == "FrobnicateV9_0" && op == "FrobnicateV9"), "{:?}", r.err());
}

#[test]
fn huge_declared_dim_is_refused_not_allocated() {
    let mut b = ModelBuilder::new();
    b.input("x", 1, &["1099511627776", "4"]).output("y").node("Relu", &["x"], &["y"], vec![]);
    let s = load(&b.bytes()).unwrap();
    let msg = err_text(s.prepare(&Default::default()));
    assert!(msg.contains("1099511627776") && msg.contains("limit"), "{msg}");
    // Also through random inputs, and a ConstantOfShape asking for 2^40 elements.
    assert!(s.random_inputs(&Default::default(), 0).is_err());
    let mut c = ModelBuilder::new();
    c.input("x", 1, &["4"]).output("y");
    c.init("shape", &Tensor::from_i64(&[2], vec![1 << 20, 1 << 20]).unwrap());
    c.node("ConstantOfShape", &["shape"], &["y"], vec![]);
    let s = load(&c.bytes()).unwrap();
    let msg = err_text(s.prepare(&Default::default()));
    assert!(msg.contains("ConstantOfShape") && msg.contains("limit"), "{msg}");
}

#[test]
fn impossible_reshape_names_node_and_shapes() {
    let mut b = ModelBuilder::new();
    b.input("x", 1, &["2", "6"]).output("y");
    b.init("shape", &Tensor::from_i64(&[2], vec![5, -1]).unwrap());
    b.node("Reshape", &["x", "shape"], &["y"], vec![]);
    let s = load(&b.bytes()).unwrap();
    let msg = err_text(s.prepare(&Default::default()));
    assert!(msg.contains("Reshape_0") && msg.contains("[2, 6]") && msg.contains("[5, -1]"), "{msg}");
}

#[test]
fn shape_mismatch_names_node_and_shapes() {
    let mut b = ModelBuilder::new();
    b.input("a", 1, &["2", "3"]).input("b", 1, &["4", "5"]).output("y").node("MatMul", &["a", "b"], &["y"], vec![]);
    let s = load(&b.bytes()).unwrap();
    let msg = err_text(s.prepare(&Default::default()));
    assert!(msg.contains("MatMul_0") && msg.contains("[2, 3]") && msg.contains("[4, 5]"), "{msg}");
}

#[test]
fn bad_tensor_payload_is_an_error() {
    let mut b = relu_model();
    let mut t = hetsched::onnx::tensor_to_proto(&Tensor::from_f32(&[4], vec![1.0; 4]).unwrap(), "w");
    t.raw_data.truncate(7);
    b.graph.initializer.push(t);
    let msg = err_text(load(&b.bytes()));
    assert!(msg.contains("'w'") && msg.contains("raw_data"), "{msg}");
    let mut b = relu_model();
    let mut t = hetsched::onnx::tensor_to_proto(&Tensor::from_f32(&[4], vec![1.0; 4]).unwrap(), "ext");
    t.data_location = 1;
    b.graph.initializer.push(t);
    assert!(err_text(load(&b.bytes())).contains("external data"));
}

#[test]
fn wrong_inputs_say_what_was_expected() {
    let s = load(&relu_model().bytes()).unwrap();
    let t = |shape: &[usize]| Tensor::zeros(hetsched::DType::F32, shape).unwrap();
    let msg = err_text(s.run(vec![("nope".into(), t(&[1, 4]))]));
    assert!(msg.contains("missing input 'x'"), "{msg}");
    let msg = err_text(s.run(vec![("x".into(), t(&[1, 4])), ("extra".into(), t(&[1]))]));
    assert!(msg.contains("unknown input 'extra'"), "{msg}");
    let msg = err_text(s.run(vec![("x".into(), t(&[1, 5]))]));
    assert!(msg.contains("dim 1 is 5") && msg.contains("[N, 4]"), "{msg}");
    let msg = err_text(s.run(vec![("x".into(), Tensor::from_i64(&[1, 4], vec![0; 4]).unwrap())]));
    assert!(msg.contains("i64") && msg.contains("f32"), "{msg}");
    let msg = err_text(s.run(vec![("x".into(), t(&[4]))]));
    assert!(msg.contains("shape [4]"), "{msg}");
}

/// A kernel that panics (here an InstanceNormalization whose scale is shorter than the channel
/// count, which inference does not check yet) ends the run with an error naming the node, and
/// the session stays usable: it used to spin forever.
#[test]
fn kernel_panic_is_an_error_not_a_hang() {
    let mut b = ModelBuilder::new();
    b.input("x", 1, &["1", "3", "4", "4"]).output("y");
    b.init("scale", &Tensor::from_f32(&[2], vec![1.0, 1.0]).unwrap()).init("bias", &Tensor::from_f32(&[2], vec![0.0, 0.0]).unwrap());
    b.node("InstanceNormalization", &["x", "scale", "bias"], &["y"], vec![]);
    let s = match load(&b.bytes()) {
        Ok(s) => s,
        Err(e) => return eprintln!("refused at load (also fine): {e}"),
    };
    let x = || vec![("x".into(), Tensor::from_f32(&[1, 3, 4, 4], (0..48).map(|v| v as f32).collect()).unwrap())];
    for attempt in 0..2 {
        match s.run(x()) {
            Ok(_) => panic!("a 2-element scale on 3 channels ran"),
            Err(e) => {
                let t = e.to_string();
                assert!(t.contains("InstanceNormalization"), "attempt {attempt}: {t}");
            }
        }
    }
}
