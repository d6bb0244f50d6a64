//! Every CUDA kernel unit compiles with NVRTC (no GPU needed, only libnvrtc: in CI from the
//! `nvidia-cuda-nvrtc` wheel). Skips with a reason where libnvrtc is missing, except in CI.
#![cfg(feature = "cuda")]

use hetsched::backend::cuda::{kernels, probe_libraries};

fn nvrtc_available() -> bool {
    match probe_libraries(&["nvrtc"]) {
        Ok(()) => true,
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "CI must have libnvrtc (pip install nvidia-cuda-nvrtc): {e}");
            eprintln!("SKIPPED: {e}");
            false
        }
    }
}

#[test]
fn every_kernel_unit_compiles_for_hopper() {
    if !nvrtc_available() {
        return;
    }
    std::env::set_var("HETSCHED_CACHE_DIR", std::env::temp_dir().join(format!("hetsched-nvrtc-{}", std::process::id())));
    let units = kernels::all_units();
    assert!(units.len() > 30);
    let failures: Vec<String> = units.iter().filter_map(|u| kernels::ptx(u, "compute_90").err().map(|e| e.to_string())).collect();
    assert!(failures.is_empty(), "{} of {} units failed:\n{}", failures.len(), units.len(), failures.join("\n"));
    // The PTX names the entry points the executor will launch.
    let nn = units.iter().find(|u| u.file == "nn.cu").unwrap();
    let ptx = kernels::ptx(nn, "compute_90").unwrap();
    for f in ["conv2d", "pool", "rows", "matmul", "bias_act", "im2col"] {
        assert!(ptx.contains(f), "{f} missing from PTX");
    }
}

#[test]
fn a_broken_kernel_is_reported() {
    if !nvrtc_available() {
        return;
    }
    let bad = kernels::Unit::new("elementwise.cu", "undefined_function(x)".into(), false, &[]);
    assert!(kernels::ptx(&bad, "compute_90").is_err());
}
