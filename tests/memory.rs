//! Measured memory per device against the cost model's prediction: the CPU's live activations
//! follow the same liveness rule the prediction uses; the GPU's activation arena holds the
//! values in far less than one buffer each.

mod common;
use common::*;
use hetsched::{Session, SessionOptions};

/// A model at batch 2 on `device`: its bound graph and the executable after one run.
fn prepared(name: &str, device: &str) -> Option<std::sync::Arc<hetsched::session::Prepared>> {
    let dir = model_dir(name)?;
    let session = Session::from_path(dir.join("model.onnx"), SessionOptions { device: device.into(), ..Default::default() }).unwrap();
    let bindings = hetsched::session::default_bindings(session.graph(), 2, 16, &Default::default());
    let inputs = session.random_inputs(&bindings, 1).unwrap();
    session.run(inputs).unwrap();
    Some(session.prepare(&bindings).unwrap())
}

/// Bytes of every value a run holds (inputs and computed values), each on its own.
fn separate_value_bytes(g: &hetsched::Graph) -> u64 {
    g.g.node_indices().filter(|&n| !g.g[n].is_folded()).flat_map(|n| g.g[n].outputs.iter().map(|v| v.nbytes() as u64)).sum()
}

#[test]
fn cpu_live_activations_equal_the_prediction() {
    for name in MODELS {
        let Some(p) = prepared(name, "cpu") else { return };
        let measured = p.executable.memory()["cpu"];
        let predicted = hetsched::analysis::analyze(&p.graph).unwrap();
        assert_eq!(measured.activation_bytes, predicted.peak_activation_bytes, "{name}: measured against predicted peak activations");
        // The executable also keeps the values inference folded (shapes and the like).
        assert!(measured.weight_bytes >= predicted.weight_bytes, "{name}: weights {} against {}", measured.weight_bytes, predicted.weight_bytes);
        assert!(measured.activation_bytes <= separate_value_bytes(&p.graph), "{name}: more live than all values together");
    }
}

#[cfg(feature = "wgpu")]
#[test]
fn gpu_arena_shares_activation_buffers() {
    if let Err(e) = hetsched::backend::by_name("wgpu") {
        assert!(std::env::var_os("CI").is_none(), "CI must have a wgpu adapter: {e}");
        eprintln!("SKIPPED: {e}");
        return;
    }
    // The CNNs: long chains of large values, where one buffer each is several times the peak.
    for name in ["squeezenet1_1", "mobilenet_v2", "shufflenet_v2_x1_0"] {
        let Some(p) = prepared(name, "wgpu") else { return };
        let measured = p.executable.memory()["wgpu"];
        let separate = separate_value_bytes(&p.graph);
        let predicted = hetsched::analysis::analyze(&p.graph).unwrap().peak_activation_bytes;
        assert!(measured.activation_bytes * 2 < separate, "{name}: {} bytes of allocations for {separate} bytes of values", measured.activation_bytes);
        // Values live at once need distinct allocations (fused and aliased values aside).
        assert!(measured.activation_bytes * 4 >= predicted * 3, "{name}: {} bytes of allocations, well below the {predicted}-byte live peak", measured.activation_bytes);
    }
}
