//! The test models (the four shared ones and tests/data/models) on the wgpu device against ONNX Runtime's references (relative L2
//! <= 1e-3 in f32). Skips with a reason where no adapter exists, except in CI, which must have
//! one (Mesa's lavapipe).
#![cfg(feature = "wgpu")]

mod common;
use common::*;
use hetsched::{Session, SessionOptions};

/// Whether the wgpu device can be opened; in CI its absence is a failure.
fn wgpu_available() -> bool {
    match hetsched::backend::by_name("wgpu") {
        Ok(_) => true,
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!("CI must have a wgpu adapter (install mesa-vulkan-drivers): {e}");
            }
            eprintln!("SKIPPED: {e}");
            false
        }
    }
}

fn check(name: &str) {
    check_precision(name, false, 1e-3, 1e-2);
}

/// f16 storage: half the memory, about three decimal digits per value; judged separately with a
/// looser bound (and it must still track the reference, not just run).
fn check_f16(name: &str) {
    check_precision(name, true, 5e-3, 2e-2);
}

fn check_precision(name: &str, f16: bool, rel_l2: f64, max_frac: f64) {
    if !wgpu_available() {
        return;
    }
    check_model_on(name, SessionOptions { device: "wgpu".into(), f16, ..Default::default() }, rel_l2, max_frac);
}

#[test]
fn squeezenet_on_wgpu() {
    check("squeezenet1_1");
}
#[test]
fn mobilenet_on_wgpu() {
    check("mobilenet_v2");
}
#[test]
fn shufflenet_on_wgpu() {
    check("shufflenet_v2_x1_0");
}
#[test]
fn bert_tiny_on_wgpu() {
    check("bert_tiny");
}
#[test]
fn unet_tiny_on_wgpu() {
    check("unet_tiny");
}
#[test]
fn video3d_on_wgpu() {
    check("video3d");
}
#[test]
fn f16_model_on_wgpu() {
    check_precision(F16_MODEL, false, 5e-3, 2e-2);
}

#[test]
fn models_in_f16_on_wgpu() {
    for m in MODELS {
        check_f16(m);
    }
}

/// A node the device lacks is refused as unsupported, not run wrongly.
#[test]
fn unsupported_node_is_refused() {
    if !wgpu_available() {
        return;
    }
    check_refusal("wgpu");
}

/// submit() returns before the results exist; wait() collects the same outputs run() gives.
#[test]
fn submit_then_wait_matches_run() {
    let Some(shared) = shared_dir() else { return };
    if !wgpu_available() {
        return;
    }
    let dir = shared.join("models/bert_tiny");
    let s = Session::from_path(dir.join("model.onnx"), SessionOptions { device: "wgpu".into(), ..Default::default() }).unwrap();
    let (ins, refs) = load_case(&s, &dir.join("test_data_set_0"));
    let plan = s.prepare(&s.bindings_for(&ins).unwrap()).unwrap();
    let ordered: Vec<hetsched::Tensor> = ins.iter().map(|(_, t)| t.clone()).collect();
    let pending = plan.executable.submit(ordered.clone()).unwrap();
    // The host is free here; a pipeline executor would run another stage.
    let cpu_side: f64 = ordered[0].to_f64_vec().iter().sum();
    let outs = pending.wait().unwrap();
    assert!(cpu_side.is_finite());
    for (o, r) in outs.iter().zip(&refs) {
        assert_close("bert_tiny submit/wait", o, r);
    }
}

/// MatMuls written straight into their Concat's output (and a copied input between them).
#[test]
fn products_are_written_into_their_concat() {
    if !wgpu_available() {
        return;
    }
    check_concat_of_products("wgpu");
}

/// Einsum as permutes around one batched GEMM, against the CPU.
#[test]
fn einsum_matches_the_cpu() {
    if wgpu_available() {
        check_einsum("wgpu");
    }
}

/// TopK by ranks, against the CPU.
#[test]
fn top_k_matches_the_cpu() {
    if wgpu_available() {
        check_top_k("wgpu");
    }
}
