//! The cost model end to end: profiles measured, saved, reloaded and refused; predictions of
//! virtual devices against hand arithmetic on a real model; calibration moving predictions.

mod common;
use hetsched::analysis::node_cost;
use hetsched::cost::{self, store, CostModel, DeviceProfile, ProfileKind, ProfileSet, Roofline};
use hetsched::graph::Op;

fn bound(name: &str, batch: usize) -> hetsched::Graph {
    let dir = common::model_dir(name).expect("test model");
    let g = hetsched::onnx::load_model(dir.join("model.onnx")).unwrap();
    let b = hetsched::session::default_bindings(&g, batch, 16, &Default::default());
    let mut g = hetsched::session::bind(&g, &b).unwrap();
    hetsched::passes::optimize(&mut g).unwrap();
    g
}

fn with_cpu(v: DeviceProfile) -> Roofline {
    let mut cpu = v.clone();
    cpu.device = "cpu".into();
    Roofline::new(ProfileSet { devices: vec![cpu, v] })
}

#[test]
fn virtual_device_predicts_by_its_parameters() {
    let g = bound("unet_tiny", 2);
    let v = cost::virtual_device::parse_spec("vgpu:gflops=2000,gbps=100,launch_us=7,link_gbps=10,link_us=3").unwrap();
    let m = with_cpu(v);
    let mut checked = 0;
    for n in g.g.node_indices() {
        let node = &g.g[n];
        let Op::Conv { group: 1, .. } = node.op else { continue };
        let c = node_cost(&g, n);
        let by_hand = 7e-3 + f64::max(c.flops as f64 / 2000e9, (c.bytes_read + c.bytes_written) as f64 / 100e9) * 1e3;
        let got = m.node_ms(&g, n, "vgpu").unwrap();
        assert!((got - by_hand).abs() <= 1e-12 * by_hand.max(1.0), "{}: {got} vs {by_hand}", node.name);
        checked += 1;
    }
    assert!(checked > 0, "unet_tiny has convolutions");
    // The whole model: overhead + copies in and out + every node.
    let p = cost::roofline::predict_graph(&m, &g, "vgpu").unwrap();
    let nodes: f64 = p.nodes.iter().map(|x| x.1).sum();
    assert!((p.total_ms - (p.overhead_ms + p.transfer_ms + nodes)).abs() < 1e-12);
    let input_bytes: u64 = g.inputs.iter().map(|i| g.g[i.node].outputs[0].nbytes() as u64).sum();
    assert!(p.transfer_ms >= 3e-3 + input_bytes as f64 / 10e9 * 1e3);
}

#[test]
fn a_faster_virtual_device_predicts_less_and_memory_counts_weights() {
    let g = bound("unet_tiny", 1);
    let slow = with_cpu(cost::virtual_device::parse_spec("v:gflops=100,gbps=10").unwrap());
    let fast = with_cpu(cost::virtual_device::parse_spec("v:gflops=100000,gbps=1000").unwrap());
    let t = |m: &Roofline| cost::roofline::predict_graph(m, &g, "v").unwrap().total_ms;
    assert!(t(&fast) < t(&slow));
    let order = g.toposort().unwrap();
    let mem = slow.memory_bytes(&g, &order, "v").unwrap();
    let facts = hetsched::analysis::analyze(&g).unwrap();
    assert!(mem >= facts.weight_bytes, "{mem} < weights {}", facts.weight_bytes);
    assert!(mem <= facts.weight_bytes + 2 * facts.peak_activation_bytes + 1, "{mem}");
}

#[test]
fn malformed_profiles_are_clear_errors() {
    let v = cost::virtual_device::parse_spec("vgpu").unwrap();
    let good = serde_json::to_value(ProfileSet { devices: vec![v] }).unwrap();
    assert!(ProfileSet::from_json(&good.to_string(), "t").is_ok());
    let cases: Vec<(Box<dyn Fn(&mut serde_json::Value)>, &str)> = vec![
        (Box::new(|j| j["devices"][0]["launch_us"] = (-1.0).into()), "launch_us"),
        (Box::new(|j| j["devices"][0]["version"] = 99.into()), "version"),
        (Box::new(|j| j["devices"][0]["bandwidth"]["points"] = serde_json::json!([[1.0, 0.0]])), "bandwidth"),
        (Box::new(|j| j["devices"][0]["device"] = "a b".into()), "device name"),
        (Box::new(|j| j["devices"][0]["calibration"] = serde_json::json!({"gemm": -2.0})), "calibration.gemm"),
        (Box::new(|j| j["devices"][0]["to_host"]["gbps"] = serde_json::json!(-5.0)), "to_host"),
        (Box::new(|j| j["devices"][0]["executes_on"] = serde_json::Value::Null), "executes_on"),
        (Box::new(|j| j["devices"][0]["kind"] = "imaginary".into()), "not a profile"),
    ];
    for (mutate, says) in cases {
        let mut j = good.clone();
        mutate(&mut j);
        let e = ProfileSet::from_json(&j.to_string(), "t").unwrap_err().to_string();
        assert!(e.contains(says), "expected '{says}' in: {e}");
    }
    let text = good.to_string();
    assert!(ProfileSet::from_json(&text[..text.len() / 2], "t").unwrap_err().to_string().contains("not a profile"));
}

/// Measures a quick CPU profile (a few seconds), caches it in a private folder, and checks it
/// is reused, predicts every test model, is refused when it claims another build, and that
/// calibration on a model brings its prediction to the measured time.
#[test]
fn cpu_profile_is_measured_cached_refused_and_calibrated() {
    let dir = std::env::temp_dir().join(format!("hetsched-cost-test-{}", std::process::id()));
    // SAFETY: the only test in this binary that reads or writes the environment.
    unsafe { std::env::set_var("HETSCHED_PROFILE_DIR", &dir) };
    let cpu = hetsched::backend::by_name("cpu").unwrap();
    assert!(store::cached(&*cpu).unwrap().is_none());
    let mut steps = 0;
    let p = cost::profiler::measure(&*cpu, cost::profiler::ProfileOptions { quick: true }, &mut |_, _, _| steps += 1).unwrap();
    assert!(steps > 10);
    assert_eq!(p.kind, ProfileKind::Measured);
    for c in [cost::OpClass::Gemm, cost::OpClass::Conv, cost::OpClass::Depthwise, cost::OpClass::Elementwise] {
        assert!(p.rates.get(&c).is_some_and(|r| r.points.len() >= 2), "{c:?} has a curve");
    }
    store::save_cached(&*cpu, &p).unwrap();
    assert_eq!(store::cached(&*cpu).unwrap().as_ref(), Some(&p));

    // Another build's profile is refused with the reason.
    let mut foreign = p.clone();
    foreign.fingerprint.as_mut().unwrap().build = "0.0.0 000000000000".into();
    let e = store::check_matches(&foreign, &*cpu, "p.json").unwrap_err().to_string();
    assert!(e.contains("another device or build") && e.contains("build"), "{e}");

    let m = Roofline::new(ProfileSet { devices: vec![p.clone()] });
    for name in ["unet_tiny", "video3d", "mixed_f16"] {
        let g = bound(name, 1);
        let t = cost::roofline::predict_graph(&m, &g, "cpu").unwrap();
        assert!(t.total_ms.is_finite() && t.total_ms > 0.0, "{name}: {}", t.total_ms);
        assert_eq!(t.transfer_ms, 0.0, "the CPU copies nothing");
    }

    // Calibrating on a model moves its class totals to the measured ones.
    let path = common::model_dir("unet_tiny").unwrap().join("model.onnx");
    let meas = cost::fidelity::measure_model(&path, "cpu", 1, std::time::Duration::from_millis(300), 0.0).unwrap();
    let mut calibrated = p.clone();
    cost::calibrate::apply(&mut calibrated, std::slice::from_ref(&meas));
    assert!(!calibrated.calibration.is_empty() && calibrated.calibrated_on == vec!["unet_tiny (batch 1)".to_string()]);
    let m2 = Roofline::new(ProfileSet { devices: vec![calibrated] });
    let row = cost::fidelity::fidelity(&m2, &meas, true).unwrap();
    let (pred, measured): (f64, f64) = row.by_class.values().fold((0.0, 0.0), |a, v| (a.0 + v.0, a.1 + v.1));
    assert!((pred - measured).abs() <= 1e-6 * measured.max(1e-3), "in-sample node totals: {pred} vs {measured}");
    let _ = std::fs::remove_dir_all(&dir);
}
