//! The ONNX node-conformance suite on the CPU and wgpu devices (CUDA's is in tests/cuda.rs),
//! against the checked-in expectation files (`tests/conformance/<device>.txt`, and `<device>-frozen.txt` with constant parameters; one passing case per line): a listed
//! case that stops passing fails the test; newly passing cases are printed so the list can grow.

mod common;

fn check_device(device: &str) {
    let Some(shared) = common::shared_dir() else { return };
    common::expectations::check_suite(&shared.join("onnx-node"), device);
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
