//! Plans run across devices and match the references: every test model, planned by `auto` and
//! with forced splits (devices alternating node by node where they can, so every kind of
//! boundary is crossed), on cpu + a virtual GPU (which computes with the CPU's kernels) and, where
//! an adapter exists, on cpu + wgpu.

mod common;
use common::*;
use hetsched::backend::{Backend, CompileOptions};
use hetsched::cost::{CostModel, DeviceProfile, ProfileSet, Roofline};
use hetsched::partition::{self, evaluate, Constraints, Problem};
use hetsched::Session;
use std::sync::Arc;

fn profile(name: &str, spec: &str) -> DeviceProfile {
    virtual_profile(name, spec)
}

fn wgpu() -> Option<Arc<dyn Backend>> {
    match hetsched::backend::by_name("wgpu") {
        Ok(b) => Some(b),
        Err(e) => {
            if std::env::var_os("CI").is_some() && cfg!(feature = "wgpu") {
                panic!("CI must have a wgpu adapter: {e}");
            }
            eprintln!("SKIPPED cpu,wgpu plans: {e}");
            None
        }
    }
}

fn check_plans(name: &str, gpu: &str, sets: &[&str]) {
    let Some(dir) = model_dir(name) else { return eprintln!("SKIPPED {name}: not found") };
    let session = Session::from_path(dir.join("model.onnx"), Default::default()).unwrap();
    let model = Roofline::new(ProfileSet { devices: vec![profile("cpu", "gflops=50,gbps=20,launch_us=2"), profile(gpu, "gflops=20000,gbps=900,link_gbps=25,link_us=10")] });
    let gpu_backend: Arc<dyn Backend> = hetsched::backend::by_name(hetsched::exec::executes_on(gpu)).unwrap();
    let cpu_backend = hetsched::backend::by_name("cpu").unwrap();
    for set in sets {
        let (ins, refs) = load_case(&session, &dir.join(set));
        let bindings = session.bindings_for(&ins).unwrap();
        let mut g = hetsched::session::bind(session.graph(), &bindings).unwrap();
        hetsched::passes::optimize(&mut g).unwrap();
        let support = |d: &str, n| if d == "cpu" { cpu_backend.supports(&g, n) } else { gpu_backend.supports(&g, n) };
        let p = Problem::new(&g, &model, &model.devices(), &Constraints::default(), &support).unwrap();
        let auto = partition::partition(&p, &partition::Auto).unwrap();
        // Every algorithm, on a GPU that wins some nodes and loses others (mixed plans).
        let mixed = Roofline::new(ProfileSet { devices: vec![profile("cpu", "gflops=50,gbps=20,launch_us=2"), profile(gpu, "gflops=150,depthwise_gflops=4,gbps=40,launch_us=20,link_gbps=8,link_us=30")] });
        let pm = Problem::new(&g, &mixed, &mixed.devices(), &Constraints::default(), &support).unwrap();
        let mut plans: Vec<(String, hetsched::plan::Plan)> = vec![("auto".into(), auto)];
        for alg in ["greedy", "heft", "optimal", "pipeline"] {
            let a = partition::by_name(alg, Default::default()).unwrap();
            plans.push((format!("{alg} (mixed)"), partition::partition(&pm, &*a).unwrap()));
        }
        // Forced: alternate devices node by node wherever the other may run it.
        let forced: Vec<usize> = (0..p.order.len()).map(|i| if i % 2 == 1 && p.allowed(i, 1) { 1 } else { 0 }).collect();
        let forced = evaluate::plan(&p, &forced, "forced").unwrap();
        assert!(forced.transfers.len() >= 2 || p.order.len() < 3, "{name}: the forced split crosses devices");
        plans.push(("forced".into(), forced));
        for (label, mut plan) in plans {
            plan.bindings = bindings.clone();
            let back = hetsched::plan::Plan::from_json(&plan.to_json()).unwrap();
            let exe = hetsched::exec::compile_plan(session.graph(), &bindings, &back, true, &CompileOptions::default()).unwrap_or_else(|e| panic!("{name} {label} on cpu,{gpu}: {e}"));
            let ordered: Vec<hetsched::Tensor> = ins.iter().map(|(_, t)| t.clone()).collect();
            let (outs, steps) = exe.run_steps(ordered, true).unwrap_or_else(|e| panic!("{name} {label} on cpu,{gpu}: {e}"));
            assert_eq!(steps.len(), plan.partitions.len());
            for (i, (o, r)) in outs.iter().zip(&refs).enumerate() {
                let rep = hetsched::compare(o, r, hetsched::Tolerance::ONNX);
                println!("{name}/{set} {label} cpu,{gpu} ({} partitions, {} transfers) output {i}: rel_l2 {:.3e}", plan.partitions.len(), plan.transfers.len(), rep.rel_l2);
                assert!(rep.model_ok(1e-3, 1e-2), "{name}/{set} {label} on cpu,{gpu}: output {i} rel_l2 {:.3e} max_abs {:.3e}", rep.rel_l2, rep.max_abs);
            }
        }
    }
}

#[test]
fn plans_on_cpu_and_a_virtual_gpu_match_the_references() {
    for name in ["unet_tiny", "video3d", "squeezenet1_1", "mobilenet_v2", "shufflenet_v2_x1_0", "bert_tiny"] {
        check_plans(name, "vgpu", &["test_data_set_0", "test_data_set_1"]);
    }
}

#[test]
fn plans_on_cpu_and_wgpu_match_the_references() {
    if wgpu().is_none() {
        return;
    }
    for name in ["unet_tiny", "video3d", "bert_tiny"] {
        check_plans(name, "wgpu", &["test_data_set_0"]);
    }
}

/// The shared CNNs the same way (a test of their own: lavapipe runs each for seconds, so they
/// run beside the others).
#[test]
fn plans_of_the_shared_cnns_on_cpu_and_wgpu_match_the_references() {
    if wgpu().is_none() {
        return;
    }
    for name in ["squeezenet1_1", "mobilenet_v2", "shufflenet_v2_x1_0"] {
        check_plans(name, "wgpu", &["test_data_set_0"]);
    }
}

/// A session given a device list partitions on first use and serves like any other; its plan
/// is kept, and the outputs match the references.
#[test]
fn a_session_over_several_devices_matches_the_references() {
    let Some(dir) = model_dir("unet_tiny") else { return };
    let mut devices = vec!["cpu".to_string()];
    if wgpu().is_some() {
        devices.push("wgpu".into());
    }
    let s = Session::from_path(dir.join("model.onnx"), hetsched::SessionOptions { devices: devices.clone(), ..Default::default() }).unwrap();
    let (ins, refs) = load_case(&s, &dir.join("test_data_set_0"));
    let outs = s.run(ins.clone()).unwrap();
    for ((_, o), r) in outs.iter().zip(&refs) {
        assert!(hetsched::compare(o, r, hetsched::Tolerance::ONNX).model_ok(1e-3, 1e-2));
    }
    let prepared = s.prepare(&s.bindings_for(&ins).unwrap()).unwrap();
    let plan = prepared.plan.as_ref().expect("a partitioned session keeps its plan");
    assert_eq!(plan.devices, devices);
}

/// An op no GPU kernel covers (NonZero: its output size depends on the values) runs on the CPU
/// in a cpu,wgpu plan whose other ops are pinned to wgpu, and the answer is the CPU's.
#[test]
fn an_op_no_gpu_covers_runs_on_the_cpu_in_a_split_plan() {
    let Some(gpu) = wgpu() else { return };
    let mut b = builder::ModelBuilder::new();
    b.input("x", 1, &["4", "6"]).output("nz").output("scaled");
    b.init("k", &hetsched::Tensor::from_f32(&[1], vec![2.0]).unwrap());
    b.node("Relu", &["x"], &["r"], vec![]).node("NonZero", &["r"], &["nz"], vec![]).node("Mul", &["r", "k"], &["scaled"], vec![]);
    let g = hetsched::onnx::load_model_bytes(&b.bytes()).unwrap();
    let bindings = hetsched::Bindings::new();
    let mut bound = hetsched::session::bind(&g, &bindings).unwrap();
    hetsched::passes::optimize(&mut bound).unwrap();
    let model = Roofline::new(ProfileSet { devices: vec![profile("cpu", "gflops=50,gbps=20"), profile("wgpu", "gflops=500,gbps=100")] });
    let cpu = hetsched::backend::by_name("cpu").unwrap();
    let support = |d: &str, n| if d == "cpu" { cpu.supports(&bound, n) } else { gpu.supports(&bound, n) };
    let mut c = Constraints::default();
    c.add_pin("Relu|Mul=wgpu").unwrap();
    let p = Problem::new(&bound, &model, &model.devices(), &c, &support).unwrap();
    let mut plan = partition::partition(&p, &partition::Auto).unwrap();
    plan.bindings = bindings.clone();
    let nz = plan.nodes.iter().find(|n| n.op_type == "NonZero").unwrap();
    assert_eq!(nz.device, "cpu");
    assert!(nz.reason.contains("only cpu supports NonZero"), "{}", nz.reason);
    assert!(plan.nodes.iter().any(|n| n.device == "wgpu"), "the pinned ops run on wgpu");
    let x = hetsched::Tensor::from_f32(&[4, 6], (0..24).map(|i| if i % 3 == 0 { 1.5 } else { -1.0 }).collect()).unwrap();
    let exe = hetsched::exec::compile_plan(&g, &bindings, &plan, true, &CompileOptions::default()).unwrap();
    let split = hetsched::backend::Executable::run(&exe, vec![x.clone()]).unwrap();
    let alone = Session::from_graph(g.clone(), Default::default()).unwrap().run(vec![("x".into(), x)]).unwrap();
    assert_eq!(split[0], alone[0].1, "NonZero");
    assert_eq!(split[1], alone[1].1, "the wgpu Mul");
}
