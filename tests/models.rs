//! The test models (the four shared ones and tests/data/models), both test-data sets (batch 1 and 2), on the CPU, against ONNX
//! Runtime's reference outputs; and each graph pass on its own preserves those outputs.

mod common;
use common::*;
use hetsched::passes::{self, Pass};
use hetsched::{Session, SessionOptions};

fn check_model(name: &str, optimize: bool) {
    let Some(dir) = model_dir(name) else { return };
    let s = Session::from_path(dir.join("model.onnx"), SessionOptions { optimize, ..Default::default() }).unwrap();
    for set in ["test_data_set_0", "test_data_set_1"] {
        let (ins, refs) = load_case(&s, &dir.join(set));
        let outs = s.run(ins).unwrap();
        assert_eq!(outs.len(), refs.len());
        for ((oname, o), r) in outs.iter().zip(&refs) {
            assert_close(&format!("{name}/{set}/{oname} (optimize={optimize})"), o, r);
        }
    }
}

#[test]
fn squeezenet_matches_reference() {
    check_model("squeezenet1_1", true);
}
#[test]
fn mobilenet_matches_reference() {
    check_model("mobilenet_v2", true);
}
#[test]
fn shufflenet_matches_reference() {
    check_model("shufflenet_v2_x1_0", true);
}
#[test]
fn bert_tiny_matches_reference() {
    check_model("bert_tiny", true);
}
#[test]
fn unet_tiny_matches_reference() {
    check_model("unet_tiny", true);
}
#[test]
fn video3d_matches_reference() {
    check_model("video3d", true);
}
#[test]
fn f16_model_tracks_reference() {
    check_model_on(F16_MODEL, SessionOptions::default(), 5e-3, 2e-2);
}

#[test]
fn unoptimized_graphs_match_reference() {
    for m in MODELS {
        check_model(m, false);
    }
}

/// Each pass alone, on each model: outputs still match the reference, and the pass did something
/// on at least one model (so the test cannot pass vacuously).
#[test]
fn each_pass_preserves_outputs() {
    let all: Vec<Box<dyn Pass>> = passes::default_passes();
    let mut changed_somewhere = vec![false; all.len()];
    for m in MODELS {
        let Some(dir) = model_dir(m) else { return };
        let s = Session::from_path(dir.join("model.onnx"), SessionOptions { optimize: false, ..Default::default() }).unwrap();
        let (ins, refs) = load_case(&s, &dir.join("test_data_set_1"));
        let bindings = s.bindings_for(&ins).unwrap();
        let bound = hetsched::session::bind(s.graph(), &bindings).unwrap();
        for (i, p) in all.iter().enumerate() {
            let mut g = bound.clone();
            let before = g.g.node_count();
            // Folding first lets the fusions see through the shape chains, as in the real pipeline.
            if p.name() != "constant-fold" {
                passes::ConstantFold.run(&mut g).unwrap();
            }
            let mid = g.g.node_count();
            let changed = p.run(&mut g).unwrap();
            changed_somewhere[i] |= changed && g.g.node_count() < if p.name() == "constant-fold" { before } else { mid };
            let exe = hetsched::backend::cpu::CpuExecutable::new(std::sync::Arc::new(g)).unwrap();
            let ordered = s.inputs().iter().map(|gi| ins.iter().find(|(n, _)| n == &gi.name).unwrap().1.clone()).collect();
            let outs = hetsched::backend::Executable::run(&exe, ordered).unwrap();
            for (o, r) in outs.iter().zip(&refs) {
                assert_close(&format!("{m} after pass {}", p.name()), o, r);
            }
        }
    }
    // The shared models were exported with BatchNormalization already folded, their Identity
    // nodes only forward weights (constant folding takes them), and none uses SiLU; the
    // synthetic tests below cover those three passes.
    for (p, c) in all.iter().zip(changed_somewhere) {
        assert!(c || matches!(p.name(), "fold-batchnorm" | "remove-identity" | "fuse-swish"), "pass {} changed none of the shared models", p.name());
    }
}

/// Conv -> BatchNormalization -> Relu -> Identity on random data: the optimized graph (BN folded,
/// Relu fused, Identity gone) computes what the unoptimized one does.
#[test]
fn batchnorm_folding_and_fusion_preserve_outputs() {
    use common::builder::*;
    use hetsched::Tensor;
    let (c, m) = (3usize, 8usize);
    let mut b = ModelBuilder::new();
    b.input("x", 1, &["N", "3", "10", "10"]).output("y");
    b.init("w", &Tensor::from_f32(&[m, c, 3, 3], rand_vec(m * c * 9, 1)).unwrap());
    b.init("bias", &Tensor::from_f32(&[m], rand_vec(m, 2)).unwrap());
    b.init("scale", &Tensor::from_f32(&[m], rand_vec(m, 3)).unwrap());
    b.init("beta", &Tensor::from_f32(&[m], rand_vec(m, 4)).unwrap());
    b.init("mean", &Tensor::from_f32(&[m], rand_vec(m, 5)).unwrap());
    b.init("var", &Tensor::from_f32(&[m], rand_vec(m, 6).iter().map(|v| v.abs() + 0.5).collect()).unwrap());
    b.node("Conv", &["x", "w", "bias"], &["c"], vec![attr_ints("pads", &[1, 1, 1, 1]), attr_ints("strides", &[2, 2])]);
    b.node("BatchNormalization", &["c", "scale", "beta", "mean", "var"], &["bn"], vec![attr_float("epsilon", 1e-3)]);
    b.node("Relu", &["bn"], &["r"], vec![]);
    b.node("Identity", &["r"], &["y"], vec![]);
    let bytes = b.bytes();
    let plain = Session::from_bytes(&bytes, SessionOptions { optimize: false, ..Default::default() }).unwrap();
    let opt = Session::from_bytes(&bytes, SessionOptions::default()).unwrap();
    let x = Tensor::from_f32(&[2, 3, 10, 10], rand_vec(600, 7)).unwrap();
    let want = plain.run(vec![("x".into(), x.clone())]).unwrap();
    let got = opt.run(vec![("x".into(), x)]).unwrap();
    assert!(want[0].1.as_f32().unwrap().iter().any(|&v| v > 0.0), "reference must not be all zeros");
    assert_close("conv-bn-relu", &got[0].1, &want[0].1);
    let bindings = opt.bindings_for(&[("x".into(), Tensor::zeros(hetsched::DType::F32, &[2, 3, 10, 10]).unwrap())]).unwrap();
    let ops: Vec<String> = opt.prepare(&bindings).unwrap().graph.g.node_weights().map(|n| n.op.name()).collect();
    assert!(ops.contains(&"Conv+Relu".to_string()) && !ops.iter().any(|o| o == "BatchNormalization" || o == "Identity"), "{ops:?}");
}

/// A model of one input `x` [2, 4, 9] (random values times `scale`): the optimized graph
/// computes what the unoptimized one does, and holds `counts` nodes of each named op.
fn check_fusion(what: &str, bytes: &[u8], seed: u64, scale: f32, counts: &[(&str, usize)]) {
    use common::builder::rand_vec;
    use hetsched::Tensor;
    let plain = Session::from_bytes(bytes, SessionOptions { optimize: false, ..Default::default() }).unwrap();
    let opt = Session::from_bytes(bytes, SessionOptions::default()).unwrap();
    let x = Tensor::from_f32(&[2, 4, 9], rand_vec(72, seed).iter().map(|v| v * scale).collect()).unwrap();
    let want = plain.run(vec![("x".into(), x.clone())]).unwrap();
    let got = opt.run(vec![("x".into(), x.clone())]).unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert_close(what, &g.1, &w.1);
    }
    let bindings = opt.bindings_for(&[("x".into(), x)]).unwrap();
    let ops: Vec<String> = opt.prepare(&bindings).unwrap().graph.g.node_weights().map(|n| n.op.name()).collect();
    for (op, n) in counts {
        assert_eq!(ops.iter().filter(|o| o.as_str() == *op).count(), *n, "{what}: {op} in {ops:?}");
    }
}

/// `x * Sigmoid(x)` in both operand orders fuses into one Swish; a Sigmoid that something else
/// also reads stays. Outputs match the unfused graph.
#[test]
fn swish_fusion_preserves_outputs() {
    use common::builder::*;
    let mut b = ModelBuilder::new();
    b.input("x", 1, &["N", "4", "9"]).output("y").output("z");
    b.node("Sigmoid", &["x"], &["s1"], vec![]);
    b.node("Mul", &["x", "s1"], &["a"], vec![]);
    b.node("Sigmoid", &["a"], &["s2"], vec![]);
    b.node("Mul", &["s2", "a"], &["y"], vec![]);
    // s3 has two readers: not fused.
    b.node("Sigmoid", &["y"], &["s3"], vec![]);
    b.node("Mul", &["y", "s3"], &["m"], vec![]);
    b.node("Add", &["m", "s3"], &["z"], vec![]);
    check_fusion("swish", &b.bytes(), 9, 12.0, &[("Sigmoid", 1), ("Swish", 2)]);
}

/// The erf GELU in both of PyTorch's forms (x * (1 + erf) * 0.5 after Div by sqrt 2, and
/// (x * 0.5) * (1 + erf) after Mul by 1/sqrt 2) fuses into one Gelu each; one whose Erf output
/// something else also reads stays. Outputs match the unfused graph.
#[test]
fn gelu_fusion_preserves_outputs() {
    use common::builder::*;
    use hetsched::Tensor;
    let mut b = ModelBuilder::new();
    b.input("x", 1, &["N", "4", "9"]).output("y").output("z");
    for (name, v) in [("root2", std::f32::consts::SQRT_2), ("inv_root2", std::f32::consts::FRAC_1_SQRT_2), ("one", 1.0), ("half", 0.5)] {
        b.init(name, &Tensor::from_f32(&[], vec![v]).unwrap());
    }
    b.node("Div", &["x", "root2"], &["d1"], vec![]);
    b.node("Erf", &["d1"], &["e1"], vec![]);
    b.node("Add", &["e1", "one"], &["a1"], vec![]);
    b.node("Mul", &["x", "a1"], &["m1"], vec![]);
    b.node("Mul", &["m1", "half"], &["g1"], vec![]);
    b.node("Mul", &["g1", "inv_root2"], &["d2"], vec![]);
    b.node("Erf", &["d2"], &["e2"], vec![]);
    b.node("Add", &["one", "e2"], &["a2"], vec![]);
    b.node("Mul", &["half", "g1"], &["h2"], vec![]);
    b.node("Mul", &["a2", "h2"], &["y"], vec![]);
    // e3 has two readers: not fused.
    b.node("Div", &["y", "root2"], &["d3"], vec![]);
    b.node("Erf", &["d3"], &["e3"], vec![]);
    b.node("Add", &["e3", "one"], &["a3"], vec![]);
    b.node("Mul", &["y", "a3"], &["m3"], vec![]);
    b.node("Mul", &["m3", "half"], &["g3"], vec![]);
    b.node("Add", &["g3", "e3"], &["z"], vec![]);
    check_fusion("gelu", &b.bytes(), 11, 4.0, &[("Erf", 1), ("Gelu", 2)]);
}

/// A Session is Send + Sync: many threads run one session at once and all get the reference.
#[test]
fn session_runs_concurrently() {
    let Some(shared) = shared_dir() else { return };
    let dir = shared.join("models/squeezenet1_1");
    let s = std::sync::Arc::new(Session::from_path(dir.join("model.onnx"), SessionOptions::default()).unwrap());
    let (ins, refs) = load_case(&s, &dir.join("test_data_set_0"));
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let (s, ins, refs) = (s.clone(), ins.clone(), &refs);
            scope.spawn(move || {
                let outs = s.run(ins).unwrap();
                assert_close("concurrent squeezenet", &outs[0].1, &refs[0]);
            });
        }
    });
}
