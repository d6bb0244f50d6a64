#![allow(dead_code)]
//! Test helpers: where the shared data lives, and the model-level acceptance check.

pub mod builder;
pub mod expectations;

use std::path::PathBuf;

/// `$HETSCHED_SHARED`, else `../shared` beside the crate. In CI (`CI` set) a missing folder is
/// a failure; elsewhere the calling test says it skipped and why.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("HETSCHED_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    if dir.join("models").is_dir() {
        return Some(dir);
    }
    let msg = format!("shared data not found at {} (set HETSCHED_SHARED)", dir.display());
    if std::env::var_os("CI").is_some() {
        panic!("{msg}: CI must have it");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// The shared models, then the project's own (tests/data/models, written by
/// scripts/gen_test_models.py: ops the shared four lack, references from ONNX Runtime).
pub const MODELS: [&str; 6] = ["squeezenet1_1", "mobilenet_v2", "shufflenet_v2_x1_0", "bert_tiny", "unet_tiny", "video3d"];

/// A test model kept in f16 (weights, an input, an output; Casts at the edges), judged at the
/// f16 bound (relative L2 5e-3) against ONNX Runtime, which rounds every op to f16.
pub const F16_MODEL: &str = "mixed_f16";

/// The folder of model `name`: tests/data/models/NAME if the project has it, else under the
/// shared data (None, having said why, when that is missing).
pub fn model_dir(name: &str) -> Option<PathBuf> {
    // The build's checkout, else the working directory's (test binaries run elsewhere, as on
    // the GPU machine, start in a copy of the repository).
    let roots = [PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from(".")];
    if let Some(local) = roots.iter().map(|r| r.join("tests/data/models").join(name)).find(|d| d.is_dir()) {
        return Some(local);
    }
    shared_dir().map(|s| s.join("models").join(name))
}

/// Inputs (named after the model's inputs) and reference outputs of one test-data folder.
pub fn load_case(session: &hetsched::Session, dir: &std::path::Path) -> (Vec<(String, hetsched::Tensor)>, Vec<hetsched::Tensor>) {
    let ins = hetsched::onnx::read_tensor_set(dir, "input").unwrap();
    let outs = hetsched::onnx::read_tensor_set(dir, "output").unwrap();
    assert!(!ins.is_empty() && !outs.is_empty(), "no input/output .pb in {}", dir.display());
    let named = ins.into_iter().zip(session.inputs()).map(|((_, t), gi)| (gi.name.clone(), t)).collect();
    (named, outs.into_iter().map(|(_, t)| t).collect())
}

/// The acceptance check of the foundation issue: rel L2 <= 1e-4 and max abs <= 1e-3 * max |ref|.
pub fn assert_close(what: &str, out: &hetsched::Tensor, reference: &hetsched::Tensor) {
    let r = hetsched::compare(out, reference, hetsched::Tolerance::ONNX);
    assert!(
        r.model_ok(1e-4, 1e-3),
        "{what}: rel_l2 {:.3e}, max_abs {:.3e} (max |ref| {:.3e}), shape {:?} vs {:?}",
        r.rel_l2, r.max_abs, r.max_ref, out.shape(), reference.shape()
    );
}

/// One test model on `options.device` against both reference sets, at a model-level bound
/// (relative L2 and max |out - ref| as a fraction of max |ref|).
pub fn check_model_on(name: &str, options: hetsched::SessionOptions, rel_l2: f64, max_frac: f64) {
    let Some(dir) = model_dir(name) else { return };
    let label = format!("{} f16={} tf32={}", options.device, options.f16, options.tf32);
    let s = hetsched::Session::from_path(dir.join("model.onnx"), options).unwrap();
    for set in ["test_data_set_0", "test_data_set_1"] {
        let (ins, refs) = load_case(&s, &dir.join(set));
        let outs = s.run(ins).unwrap();
        for ((oname, o), r) in outs.iter().zip(&refs) {
            let rep = hetsched::compare(o, r, hetsched::Tolerance::ONNX);
            println!("{name}/{set}/{oname} {label}: rel_l2 {:.3e}", rep.rel_l2);
            assert!(rep.model_ok(rel_l2, max_frac), "{name}/{set}/{oname} on {label}: rel_l2 {:.3e}, max_abs {:.3e} (max |ref| {:.3e})", rep.rel_l2, rep.max_abs, rep.max_ref);
        }
    }
}

/// A model whose batched MatMuls feed a Concat on the axis their products tile (GPU lowering
/// writes them straight into the Concat's output), beside a plain input of the same Concat.
/// Returns the model and its inputs.
pub fn concat_of_products() -> (Vec<u8>, Vec<(String, hetsched::Tensor)>) {
    use builder::*;
    let mut b = ModelBuilder::new();
    b.input("a", 1, &["2", "3", "4"]).input("b", 1, &["2", "4", "5"]).input("c", 1, &["2", "2", "4"]).input("d", 1, &["2", "1", "5"]).output("y");
    b.node("MatMul", &["a", "b"], &["ab"], vec![]);
    b.node("MatMul", &["c", "b"], &["cb"], vec![]);
    b.node("Concat", &["ab", "d", "cb"], &["y"], vec![attr_int("axis", 1)]);
    let t = |shape: &[usize], seed| hetsched::Tensor::from_f32(shape, rand_vec(shape.iter().product(), seed)).unwrap();
    let inputs = vec![("a".into(), t(&[2, 3, 4], 1)), ("b".into(), t(&[2, 4, 5], 2)), ("c".into(), t(&[2, 2, 4], 3)), ("d".into(), t(&[2, 1, 5], 4))];
    (b.bytes(), inputs)
}

/// [`concat_of_products`] on `device` against the CPU.
pub fn check_concat_of_products(device: &str) {
    let (bytes, inputs) = concat_of_products();
    let cpu = hetsched::Session::from_bytes(&bytes, hetsched::SessionOptions::default()).unwrap().run(inputs.clone()).unwrap();
    let gpu = hetsched::Session::from_bytes(&bytes, hetsched::SessionOptions { device: device.into(), ..Default::default() }).unwrap().run(inputs).unwrap();
    assert_eq!(gpu[0].1.shape(), &[2, 6, 5]);
    assert_close(&format!("concat of products on {device}"), &gpu[0].1, &cpu[0].1);
}

/// Einsum equations the GPU lowering routes through permutes and one batched GEMM, each on
/// `device` against the CPU; and one it has no route for ("ii->i", a diagonal) refused as
/// unsupported.
pub fn check_einsum(device: &str) {
    use builder::*;
    let cases: [(&str, &[usize], &[usize]); 7] = [
        ("bhqd,bhkd->bhqk", &[2, 3, 4, 5], &[2, 3, 6, 5]),
        ("ij,jk->ik", &[3, 4], &[4, 5]),
        ("bnd,dh->bnh", &[2, 3, 4], &[4, 5]),
        ("i,j->ij", &[3], &[4]),
        ("abc,cd->dab", &[2, 3, 4], &[4, 5]),
        ("ij->ji", &[3, 4], &[]),
        ("...ij,...jk->...ik", &[2, 3, 4], &[2, 4, 5]),
    ];
    let dims = |s: &[usize]| s.iter().map(|d| d.to_string()).collect::<Vec<_>>();
    for (i, (eq, sa, sb)) in cases.into_iter().enumerate() {
        let mut b = ModelBuilder::new();
        let (da, db) = (dims(sa), dims(sb));
        b.input("a", 1, &da.iter().map(String::as_str).collect::<Vec<_>>());
        let mut names = vec!["a"];
        if !sb.is_empty() {
            b.input("b", 1, &db.iter().map(String::as_str).collect::<Vec<_>>());
            names.push("b");
        }
        b.output("y").node("Einsum", &names, &["y"], vec![attr_string("equation", eq)]);
        let t = |shape: &[usize], seed| hetsched::Tensor::from_f32(shape, rand_vec(shape.iter().product(), seed)).unwrap();
        let mut inputs = vec![("a".to_string(), t(sa, 10 + i as u64))];
        if !sb.is_empty() {
            inputs.push(("b".to_string(), t(sb, 20 + i as u64)));
        }
        let run = |dev: &str| hetsched::Session::from_bytes(&b.bytes(), hetsched::SessionOptions { device: dev.into(), ..Default::default() }).unwrap().run(inputs.clone()).unwrap();
        let (cpu, dev) = (run("cpu"), run(device));
        let r = hetsched::compare(&dev[0].1, &cpu[0].1, hetsched::Tolerance::ONNX);
        assert!(r.model_ok(1e-5, 1e-4), "einsum {eq} on {device}: rel_l2 {:.3e}, shape {:?} vs {:?}", r.rel_l2, dev[0].1.shape(), cpu[0].1.shape());
    }
    let mut b = ModelBuilder::new();
    b.input("a", 1, &["3", "3"]).output("y").node("Einsum", &["a"], &["y"], vec![attr_string("equation", "ii->i")]);
    let s = hetsched::Session::from_bytes(&b.bytes(), hetsched::SessionOptions { device: device.into(), ..Default::default() }).unwrap();
    let r = s.run(vec![("a".into(), hetsched::Tensor::zeros(hetsched::DType::F32, &[3, 3]).unwrap())]);
    assert!(matches!(r, Err(hetsched::Error::Unsupported { .. })), "a diagonal einsum on {device}: {:?}", r.err());
}

/// TopK on `device` against the CPU: values and indices, over long lanes full of ties (values
/// in tenths, so ONNX's lower-index-first order decides), largest along the last axis and
/// smallest along the first.
pub fn check_top_k(device: &str) {
    use builder::*;
    let mut b = ModelBuilder::new();
    b.input("x", 1, &["3", "1000"]).output("v").output("i").output("w").output("j");
    b.init("k50", &hetsched::Tensor::from_i64(&[1], vec![50]).unwrap()).init("k2", &hetsched::Tensor::from_i64(&[1], vec![2]).unwrap());
    b.node("TopK", &["x", "k50"], &["v", "i"], vec![attr_int("axis", -1)]);
    b.node("TopK", &["x", "k2"], &["w", "j"], vec![attr_int("axis", 0), attr_int("largest", 0)]);
    let x: Vec<f32> = rand_vec(3000, 7).iter().map(|v| (v * 10.0).round() / 10.0).collect();
    let inputs = vec![("x".to_string(), hetsched::Tensor::from_f32(&[3, 1000], x).unwrap())];
    let run = |dev: &str| hetsched::Session::from_bytes(&b.bytes(), hetsched::SessionOptions { device: dev.into(), ..Default::default() }).unwrap().run(inputs.clone()).unwrap();
    let (cpu, dev) = (run("cpu"), run(device));
    for ((name, got), (_, want)) in dev.iter().zip(&cpu) {
        assert_eq!(got.shape(), want.shape(), "TopK output {name} on {device}");
        assert_eq!(got.to_f64_vec(), want.to_f64_vec(), "TopK output {name} on {device}");
    }
}

/// A node `device` lacks (NonZero: its output shape depends on the data, so no GPU plan can hold
/// it) is refused as unsupported, not run wrongly.
pub fn check_refusal(device: &str) {
    use builder::*;
    let mut b = ModelBuilder::new();
    b.input("x", 1, &["2", "3"]).output("y").node("NonZero", &["x"], &["y"], vec![]);
    let s = hetsched::Session::from_bytes(&b.bytes(), hetsched::SessionOptions { device: device.into(), ..Default::default() }).unwrap();
    let r = s.run(vec![("x".into(), hetsched::Tensor::zeros(hetsched::DType::F32, &[2, 3]).unwrap())]);
    assert!(matches!(r, Err(hetsched::Error::Unsupported { .. })), "{device}: {:?}", r.err());
}

/// xorshift64: seeded, reproducible randomness for property tests and fuzz passes (a failure
/// prints its seed).
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A virtual device profile named `name` from a spec's keys (`gflops=..,gbps=..`); `cpu` gets
/// local links (it is the host).
pub fn virtual_profile(name: &str, spec: &str) -> hetsched::cost::DeviceProfile {
    let mut p = hetsched::cost::virtual_device::parse_spec(&format!("x:{spec}")).unwrap();
    p.device = name.into();
    if name == "cpu" {
        p.to_device = hetsched::cost::Link::LOCAL;
        p.to_host = hetsched::cost::Link::LOCAL;
    }
    p
}

/// A bound, optimised model and its plan with devices alternating every `stride` nodes.
pub fn forced_plan(name: &str, set: &str, devices: &[&str], stride: usize) -> Option<(hetsched::Session, hetsched::graph::Bindings, hetsched::plan::Plan, Vec<(String, hetsched::Tensor)>)> {
    let dir = model_dir(name)?;
    let session = hetsched::Session::from_path(dir.join("model.onnx"), Default::default()).unwrap();
    let (ins, _) = load_case(&session, &dir.join(set));
    let bindings = session.bindings_for(&ins).unwrap();
    let mut g = hetsched::session::bind(session.graph(), &bindings).unwrap();
    hetsched::passes::optimize(&mut g).unwrap();
    let profiles: Vec<hetsched::cost::DeviceProfile> = devices.iter().map(|d| virtual_profile(d, "gflops=100,gbps=20")).collect();
    let model = hetsched::cost::Roofline::new(hetsched::cost::ProfileSet { devices: profiles });
    let names: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
    let p = hetsched::partition::Problem::new(&g, &model, &names, &hetsched::partition::Constraints::default(), &|_: &str, _| hetsched::backend::Support::Yes).unwrap();
    let placement: Vec<usize> = (0..p.order.len()).map(|i| (i / stride) % devices.len()).collect();
    let mut plan = hetsched::partition::evaluate::plan(&p, &placement, "forced").unwrap();
    plan.bindings = bindings.clone();
    Some((session, bindings, plan, ins))
}

/// `ins` in the session's input order.
pub fn ordered(session: &hetsched::Session, ins: &[(String, hetsched::Tensor)]) -> Vec<hetsched::Tensor> {
    session.inputs().iter().map(|gi| ins.iter().find(|(n, _)| n == &gi.name).unwrap().1.clone()).collect()
}

/// Every case of tests/data/nan (scripts/gen_nan_cases.py: NaN and infinities through
/// activations, clips, binary max/min, reductions, pools, fused convolution epilogues, softmax,
/// arg/top-k, with ONNX Runtime's outputs) on `device`, element by element: a NaN where the
/// reference has one, the same infinity where it has one. Returns the cases run and the failures
/// (refusing an op as unsupported is allowed; a wrong answer is not).
pub fn nan_case_failures(device: &str) -> (usize, Vec<String>) {
    // Float kernels differ from ONNX Runtime's in the last bits (vectorised exp and the like).
    const TOLERANCE: hetsched::Tolerance = hetsched::Tolerance { abs: 1e-5, rel: 1e-3 };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/nan");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display())).filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join("model.onnx").exists()).collect();
    cases.sort();
    assert!(cases.len() >= 30, "expected the NaN cases in {}", root.display());
    let (mut run, mut failures) = (0, vec![]);
    for dir in cases {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let session = match hetsched::Session::from_path(dir.join("model.onnx"), hetsched::SessionOptions { device: device.into(), ..Default::default() }) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{name} on {device}: {e}"));
                continue;
            }
        };
        let (ins, refs) = load_case(&session, &dir.join("test_data_set_0"));
        match session.run(ins) {
            Ok(outs) => {
                run += 1;
                for ((out_name, out), r) in outs.iter().zip(&refs) {
                    let rep = hetsched::compare(out, r, TOLERANCE);
                    if !rep.elementwise_ok() {
                        let head = |t: &hetsched::Tensor| t.to_f64_vec().into_iter().take(12).collect::<Vec<_>>();
                        failures.push(format!("{name} on {device}: {out_name} has {} of {} elements unlike the reference\n  got  {:?}\n  want {:?}", rep.mismatches, r.numel(), head(out), head(r)));
                    }
                }
            }
            Err(hetsched::Error::Unsupported { .. }) => eprintln!("{name} on {device}: unsupported"),
            Err(e) => failures.push(format!("{name} on {device}: {e}")),
        }
    }
    (run, failures)
}

/// Out-of-range indices fed at run time (so no plan-time check sees them) fail the run on
/// `device` with an error naming the node, and the next valid request on the same session gets
/// the right answer (the device's check flag is cleared for it).
pub fn check_index_errors(device: &str) {
    use builder::*;
    let mut b = ModelBuilder::new();
    b.input("x", 1, &["4", "3"]).input("i", 7, &["2"]).output("y").node("Gather", &["x", "i"], &["y"], vec![]);
    let s = hetsched::Session::from_bytes(&b.bytes(), hetsched::SessionOptions { device: device.into(), ..Default::default() }).unwrap();
    let x = hetsched::Tensor::from_f32(&[4, 3], (0..12).map(|v| v as f32).collect()).unwrap();
    let request = |idx: Vec<i64>| vec![("x".to_string(), x.clone()), ("i".to_string(), hetsched::Tensor::from_i64(&[2], idx).unwrap())];
    for bad in [vec![1, 4], vec![-5, 0]] {
        let e = s.run(request(bad.clone())).expect_err(&format!("{device}: indices {bad:?} into 4 rows ran"));
        assert!(e.to_string().contains("Gather") && e.to_string().contains("out of range"), "{device}: {e}");
        let good = s.run(request(vec![3, -4])).unwrap_or_else(|e| panic!("{device}: a valid request after the refusal: {e}"));
        assert_eq!(good[0].1.to_f64_vec(), vec![9.0, 10.0, 11.0, 0.0, 1.0, 2.0], "{device}");
    }
}

/// Integer arithmetic on `device` is exact or refused, never rounded: int64 Add/Mul results
/// beyond 2^24 (where GPU kernels' f32 carriers would round) and inputs beyond it either come
/// out exact or fail the run naming the node; small ones are exact everywhere; the session
/// stays usable.
pub fn check_integer_exactness(device: &str) {
    use builder::*;
    let mut b = ModelBuilder::new();
    b.input("a", 7, &["3"]).input("b", 7, &["3"]).output("s").output("p");
    b.node("Add", &["a", "b"], &["s"], vec![]).node("Mul", &["a", "b"], &["p"], vec![]);
    let s = hetsched::Session::from_bytes(&b.bytes(), hetsched::SessionOptions { device: device.into(), ..Default::default() }).unwrap();
    let request = |a: Vec<i64>, b: Vec<i64>| vec![("a".to_string(), hetsched::Tensor::from_i64(&[3], a).unwrap()), ("b".to_string(), hetsched::Tensor::from_i64(&[3], b).unwrap())];
    let exact = |a: &[i64], b: &[i64]| (a.iter().zip(b).map(|(x, y)| (x + y) as f64).collect::<Vec<_>>(), a.iter().zip(b).map(|(x, y)| (x * y) as f64).collect::<Vec<_>>());
    let cases: [(Vec<i64>, Vec<i64>); 4] = [
        (vec![3, -7, 4096], vec![5, 2, 4095]),            // small: exact everywhere
        (vec![5000, 16_000_000, -3], vec![5001, 777_217, 2]), // products and a sum beyond 2^24
        (vec![16_777_217, 0, 1], vec![1, 0, 1]),          // an input beyond 2^24
        (vec![-9, 8, 7], vec![1, 2, 3]),                  // small again, after the refusals
    ];
    for (a, bv) in cases {
        let (sum, prod) = exact(&a, &bv);
        match s.run(request(a.clone(), bv.clone())) {
            Ok(outs) => {
                assert_eq!(outs[0].1.to_f64_vec(), sum, "{device}: {a:?} + {bv:?}");
                assert_eq!(outs[1].1.to_f64_vec(), prod, "{device}: {a:?} * {bv:?}");
            }
            Err(e) => {
                let big = a.iter().chain(&bv).any(|v| v.abs() > 1 << 24) || sum.iter().chain(&prod).any(|v| v.abs() > 16_777_216.0);
                assert!(big && device != "cpu" && e.to_string().contains("2^24"), "{device}: {a:?}, {bv:?}: {e}");
            }
        }
    }
}
