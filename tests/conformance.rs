//! The ONNX node-conformance suite on the CPU and wgpu devices (CUDA's is in tests/cuda.rs),
//! against the checked-in expectation files (`tests/conformance/<device>.txt`, and `<device>-frozen.txt` with constant parameters; one passing case per line): a listed
//! case that stops passing fails the test; newly passing cases are printed so the list can grow.

mod common;
use hetsched::conformance::{list_cases, run_case};
use hetsched::Tolerance;

/// The suite as is, then with every input but the first fed as a constant (`<device>-frozen`).
fn check_device(device: &str) {
    let Some(shared) = common::shared_dir() else { return };
    let suite = shared.join("onnx-node");
    assert!(suite.is_dir(), "{} missing", suite.display());
    for (frozen, list) in [(false, device.to_string()), (true, format!("{device}-frozen"))] {
        std::panic::set_hook(Box::new(|_| {}));
        let results: Vec<_> = list_cases(&suite).unwrap().iter().map(|c| run_case(c, device, Tolerance::ONNX, frozen)).collect();
        let _ = std::panic::take_hook();
        common::expectations::check(&list, &results);
    }
}

#[test]
fn onnx_node_suite_cpu() {
    check_device("cpu");
}

#[cfg(feature = "wgpu")]
#[test]
fn onnx_node_suite_wgpu() {
    if let Err(e) = hetsched::backend::by_name("wgpu") {
        assert!(std::env::var_os("CI").is_none(), "CI must have a wgpu adapter: {e}");
        eprintln!("SKIPPED: {e}");
        return;
    }
    check_device("wgpu");
}
