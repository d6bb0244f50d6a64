//! The CUDA backend's real code path — cudarc, NVRTC, module loading, launches, stream capture
//! and graph replay, cuBLAS — run without a GPU, on a CPU emulator of the driver
//! (tests/cuda_emulator: kernels compiled with g++, blocks run as fibers so barriers and warp
//! shuffles behave as on a device, NaN-filled allocations with canaries against out-of-bounds
//! writes). The `hetsched` binary runs with the emulator's libcuda/libnvrtc/libcublas first on
//! LD_LIBRARY_PATH, against the same references and expectation file a GPU run uses.
//!
//! What this cannot show: speed, or device-specific numerics (fused multiply-adds, TF32 paths on
//! tensor cores). Needs g++ (in CI a missing compiler is a failure, elsewhere a skip).
#![cfg(all(feature = "cuda", target_os = "linux"))]

mod common;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Builds the emulator once per test process: libcudaemu.so and the three thin libraries
/// cudarc opens by name.
fn emulator() -> Option<&'static Path> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = DIR.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cuda_emulator");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cuda-emulator");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::copy(src.join("prelude.h"), dir.join("prelude.h")).map_err(|e| e.to_string())?;
        let run = |cmd: &mut Command| -> Result<(), String> {
            let out = cmd.current_dir(&dir).output().map_err(|e| format!("{cmd:?}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!("{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr)))
            }
        };
        run(Command::new("g++").args(["-std=c++20", "-O2", "-fPIC", "-shared", "-o", "libcudaemu.so"]).arg(src.join("runtime.cpp")).args(["-ldl", "-lpthread"]))?;
        std::fs::write(dir.join("empty.c"), "").map_err(|e| e.to_string())?;
        for lib in ["cuda", "nvrtc", "cublas"] {
            let name = format!("lib{lib}.so");
            run(Command::new("g++").args(["-shared", "-fPIC", "-x", "c", "empty.c", "-o", &name, &format!("-Wl,-soname,{name}"), "-Wl,--no-as-needed", "-L.", "-lcudaemu", "-Wl,-rpath,$ORIGIN"]))?;
        }
        Ok(dir)
    });
    match built {
        Ok(dir) => Some(dir),
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "CI must build the CUDA emulator: {e}");
            eprintln!("SKIPPED: cannot build the CUDA emulator: {e}");
            None
        }
    }
}

/// `hetsched ARGS` on the emulated device; returns (success, stdout, stderr).
fn hetsched(emu: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let library_path = match std::env::var("LD_LIBRARY_PATH") {
        Ok(p) if !p.is_empty() => format!("{}:{p}", emu.display()),
        _ => emu.display().to_string(),
    };
    let out = Command::new(env!("CARGO_BIN_EXE_hetsched"))
        .args(args)
        .env("LD_LIBRARY_PATH", library_path)
        .env("HETSCHED_CACHE_DIR", emu.join("ptx-cache"))
        .envs(env.iter().copied())
        .output()
        .expect("running hetsched");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn the_emulated_device_is_listed() {
    let Some(emu) = emulator() else { return };
    let (ok, out, err) = hetsched(emu, &["devices"], &[]);
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.starts_with("cuda")).unwrap_or_else(|| panic!("no cuda line in:\n{out}"));
    assert!(line.contains("available") && line.contains("emulator") && line.contains("compute_90"), "{line}");
}

fn check_model(name: &str, env: &[(&str, &str)]) {
    let Some(shared) = common::shared_dir() else { return };
    let Some(emu) = emulator() else { return };
    let dir = shared.join("models").join(name);
    for set in ["test_data_set_0", "test_data_set_1"] {
        // Two runs: the first captures the plan into a graph, the second replays it.
        let inputs = dir.join(set);
        let args = ["run", dir.to_str().unwrap(), "--device", "cuda", "--inputs", inputs.to_str().unwrap(), "--check", "--repeat", "2"];
        let (ok, out, err) = hetsched(emu, &args, env);
        println!("{name}/{set}:\n{out}");
        assert!(ok && out.contains("OK"), "{name}/{set} on emulated cuda {env:?}:\n{out}\n{err}");
        assert!(!err.contains("capture failed"), "graph capture fell back to launches:\n{err}");
    }
}

/// Convolutions and GEMMs go through cuBLAS, captured into the graph; TF32 only on request.
#[test]
fn convolutions_run_as_captured_cublas_gemms() {
    let Some(shared) = common::shared_dir() else { return };
    let Some(emu) = emulator() else { return };
    let dir = shared.join("models/squeezenet1_1");
    let inputs = dir.join("test_data_set_0");
    let args = ["run", dir.to_str().unwrap(), "--device", "cuda", "--inputs", inputs.to_str().unwrap(), "--check"];
    let (ok, out, err) = hetsched(emu, &args, &[("HETSCHED_EMULATOR_TRACE", "1")]);
    assert!(ok, "{out}\n{err}");
    let gemms = err.lines().filter(|l| l.contains("cublas gemm") && l.ends_with("[captured]")).count();
    // squeezenet: 26 convolutions, all ungrouped.
    assert_eq!(gemms, 26, "{err}");
    assert!(!err.contains("launch matmul ") && !err.contains("launch conv2d ") && !err.contains("tf32"), "{err}");
    // TF32 rounds the GEMM inputs to 10 mantissa bits: about 1e-3 relative error on a model
    // (PyTorch's allow_tf32 gives the same), so it is checked at that level.
    let tf32 = [&args[..], &["--tf32", "--rel-l2", "3e-3", "--max-frac", "1e-2"]].concat();
    let (ok, out, err) = hetsched(emu, &tf32, &[("HETSCHED_EMULATOR_TRACE", "1")]);
    assert!(ok, "{out}\n{err}");
    assert!(err.contains("tf32 [captured]"), "{err}");
}

/// f16 storage (`--f16`): every float buffer half-size, f16 x f16 cuBLAS GEMMs accumulating in
/// f32. About three decimal digits per value, so judged at the wgpu f16 bound.
#[test]
fn f16_storage_tracks_the_references() {
    let Some(shared) = common::shared_dir() else { return };
    let Some(emu) = emulator() else { return };
    for name in common::MODELS {
        let dir = shared.join("models").join(name);
        let inputs = dir.join("test_data_set_0");
        let args = ["run", dir.to_str().unwrap(), "--device", "cuda", "--inputs", inputs.to_str().unwrap(), "--check", "--f16", "--rel-l2", "5e-3", "--max-frac", "2e-2"];
        let (ok, out, err) = hetsched(emu, &args, &[("HETSCHED_EMULATOR_TRACE", "1")]);
        println!("{name} f16:\n{out}");
        assert!(ok, "{name} with f16 storage:\n{out}\n{err}");
        assert!(err.contains("f16 [captured]"), "{name}: no f16 GEMM in\n{err}");
    }
}

#[test]
fn squeezenet_matches_on_emulated_cuda() {
    check_model("squeezenet1_1", &[]);
}

#[test]
fn squeezenet_matches_without_graph_replay() {
    check_model("squeezenet1_1", &[("HETSCHED_CUDA_GRAPHS", "0")]);
}

#[test]
fn mobilenet_v2_matches_on_emulated_cuda() {
    check_model("mobilenet_v2", &[]);
}

#[test]
fn shufflenet_matches_on_emulated_cuda() {
    check_model("shufflenet_v2_x1_0", &[]);
}

#[test]
fn bert_tiny_matches_on_emulated_cuda() {
    check_model("bert_tiny", &[]);
}

#[test]
fn onnx_node_suite_on_emulated_cuda() {
    let Some(shared) = common::shared_dir() else { return };
    let Some(emu) = emulator() else { return };
    let (ok, out, err) = hetsched(emu, &["conformance", shared.join("onnx-node").to_str().unwrap(), "--device", "cuda", "--json"], &[]);
    assert!(ok, "conformance run failed:\n{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("conformance JSON");
    let results: Vec<hetsched::conformance::CaseResult> = serde_json::from_value(report["cases"].clone()).expect("cases");
    common::expectations::check("cuda", &results);
}
