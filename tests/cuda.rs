//! The CUDA device: the test models (shared and tests/data/models) (f32 at the 1e-4 bound, f16 storage, TF32), the ONNX
//! node suite against tests/conformance/cuda.txt, submit/wait, refusal of unsupported nodes and
//! concurrent runs.
//!
//! Those tests need a device, so they are `#[ignore]`d and run two ways:
//! - on a GPU: `cuda-<hash> --include-ignored` (scripts/gpu-check.sh does this, with
//!   HETSCHED_EXPECT_CUDA=1 so a missing device fails instead of skipping);
//! - everywhere else, by `device_tests_on_the_emulator`, which re-runs this binary's ignored tests
//!   with a CPU emulator of the CUDA driver, NVRTC and cuBLAS first on LD_LIBRARY_PATH
//!   (tests/cuda_emulator: kernels compiled with g++, blocks run as fibers so barriers and warp
//!   shuffles behave as on a device, NaN-filled allocations with canaries against out-of-bounds
//!   writes, stream capture into replayable graphs). So CI runs the real CUDA code path — cudarc,
//!   NVRTC, module loading, launches, capture and replay, cuBLAS — without a GPU. What the
//!   emulator cannot show: speed, races between streams (it runs work in order), and
//!   device-specific rounding (fused multiply-adds, TF32 on tensor cores is modelled by rounding).
//!
//! The emulator needs g++: in CI its absence is a failure, elsewhere a skip.
#![cfg(all(feature = "cuda", target_os = "linux"))]

mod common;
use common::*;
use hetsched::{Session, SessionOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

// ---------------------------------------------------------------- tests that need a device

/// Whether the CUDA device opens. Where the caller expects one (HETSCHED_EXPECT_CUDA), its
/// absence is a failure.
fn cuda_available() -> bool {
    match hetsched::backend::by_name("cuda") {
        Ok(_) => true,
        Err(e) => {
            assert!(std::env::var_os("HETSCHED_EXPECT_CUDA").is_none(), "a CUDA device was expected: {e}");
            eprintln!("SKIPPED: {e}");
            false
        }
    }
}

fn cuda(f16: bool, tf32: bool) -> SessionOptions {
    SessionOptions { device: "cuda".into(), f16, tf32, ..Default::default() }
}

/// Every test model with `options`, at a model-level bound.
fn every_model(options: SessionOptions, rel_l2: f64, max_frac: f64) {
    if !cuda_available() {
        return;
    }
    for name in MODELS {
        check_model_on(name, options.clone(), rel_l2, max_frac);
    }
}

#[test]
#[ignore = "needs a CUDA device (or the emulator: device_tests_on_the_emulator)"]
fn models_match_the_references_in_f32() {
    every_model(cuda(false, false), 1e-4, 1e-3);
}

/// f16 storage: half the memory, about three decimal digits per value (the wgpu f16 bound).
#[test]
#[ignore = "needs a CUDA device (or the emulator: device_tests_on_the_emulator)"]
fn models_track_the_references_with_f16_storage() {
    every_model(cuda(true, false), 5e-3, 2e-2);
    // A model whose own tensors are f16 (stored as f16 whatever the session asks).
    if cuda_available() {
        check_model_on(F16_MODEL, cuda(false, false), 5e-3, 2e-2);
    }
}

/// TF32 rounds GEMM inputs to 10 mantissa bits: about 1e-3 relative error on a model.
#[test]
#[ignore = "needs a CUDA device (or the emulator: device_tests_on_the_emulator)"]
fn models_track_the_references_with_tf32() {
    every_model(cuda(false, true), 3e-3, 1e-2);
}

#[test]
#[ignore = "needs a CUDA device (or the emulator: device_tests_on_the_emulator)"]
fn onnx_node_suite() {
    let Some(shared) = shared_dir() else { return };
    if !cuda_available() {
        return;
    }
    expectations::check_suite(&shared.join("onnx-node"), "cuda");
}

/// MatMuls written straight into their Concat's output, through cuBLAS (an offset C pointer and
/// a batch stride) and through the tiled kernel.
#[test]
#[ignore = "needs a CUDA device (or the emulator: device_tests_on_the_emulator)"]
fn products_are_written_into_their_concat() {
    if !cuda_available() {
        return;
    }
    check_concat_of_products("cuda");
}

/// Einsum as permutes around one batched GEMM, against the CPU.
#[test]
#[ignore = "needs a CUDA device (or the emulator: device_tests_on_the_emulator)"]
fn einsum_matches_the_cpu() {
    if cuda_available() {
        check_einsum("cuda");
    }
}

/// TopK by ranks, against the CPU.
#[test]
#[ignore = "needs a CUDA device (or the emulator: device_tests_on_the_emulator)"]
fn top_k_matches_the_cpu() {
    if cuda_available() {
        check_top_k("cuda");
    }
}

/// NaN and infinities as ONNX Runtime gives them (tests/data/nan).
#[test]
#[ignore = "needs a CUDA device (or the emulator: device_tests_on_the_emulator)"]
fn nan_cases_match_onnx_runtime() {
    if cuda_available() {
        let (run, failures) = nan_case_failures("cuda");
        println!("cuda: {run} NaN cases run");
        assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    }
}

/// Out-of-range run-time indices and integers beyond f32 carriers fail the run (the device's
/// check flag) and leave the session usable.
#[test]
#[ignore = "needs a CUDA device (or the emulator: device_tests_on_the_emulator)"]
fn device_checks_fail_the_run() {
    if cuda_available() {
        check_index_errors("cuda");
        check_integer_exactness("cuda");
    }
}

/// A node the kernels lack is refused as unsupported, not run wrongly.
#[test]
#[ignore = "needs a CUDA device (or the emulator: device_tests_on_the_emulator)"]
fn unsupported_node_is_refused() {
    if !cuda_available() {
        return;
    }
    check_refusal("cuda");
}

/// Runs from many threads, on one plan (sharing its buffers and captured graph) and on two
/// plans at once (each captures and replays on its own streams), each get their own inputs'
/// results.
#[test]
#[ignore = "needs a CUDA device (or the emulator: device_tests_on_the_emulator)"]
fn concurrent_runs_get_their_own_results() {
    let Some(shared) = shared_dir() else { return };
    if !cuda_available() {
        return;
    }
    let models = ["bert_tiny", "squeezenet1_1"];
    let sessions: Vec<Session> = models.iter().map(|m| Session::from_path(shared.join("models").join(m).join("model.onnx"), cuda(false, false)).unwrap()).collect();
    let cases: Vec<Vec<_>> = models
        .iter()
        .zip(&sessions)
        .map(|(m, s)| ["test_data_set_0", "test_data_set_1"].iter().map(|set| load_case(s, &shared.join("models").join(m).join(set))).collect())
        .collect();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (model, s, (ins, refs)) = (models[t % 2], &sessions[t % 2], &cases[t % 2][t / 2]);
            scope.spawn(move || {
                for _ in 0..2 {
                    let outs = s.run(ins.clone()).unwrap();
                    for ((_, o), r) in outs.iter().zip(refs) {
                        assert_close(&format!("{model} thread {t}"), o, r);
                    }
                }
            });
        }
    });
}

// ---------------------------------------------------------------- the emulator

/// Builds the emulator once per test process: libcudaemu.so and the three thin libraries
/// cudarc opens by name (libcuda.so, libnvrtc.so, libcublas.so).
fn emulator() -> Option<&'static Path> {
    // On the GPU machine the device itself is under test (and this build's paths are absent).
    if std::env::var_os("HETSCHED_EXPECT_CUDA").is_some() {
        eprintln!("SKIPPED: HETSCHED_EXPECT_CUDA is set: the real device is tested, not the emulator");
        return None;
    }
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = DIR.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cuda_emulator");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cuda-emulator");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::copy(src.join("prelude.h"), dir.join("prelude.h")).map_err(|e| format!("{}: {e}", src.display()))?;
        let run = |cmd: &mut Command| -> Result<(), String> {
            let out = cmd.current_dir(&dir).output().map_err(|e| format!("{cmd:?}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!("{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr)))
            }
        };
        let parts = ["runtime.cpp", "nvrtc.cpp", "cublas.cpp"].map(|f| src.join(f));
        run(Command::new("g++").args(["-std=c++20", "-O2", "-fPIC", "-shared", "-o", "libcudaemu.so"]).args(parts).args(["-ldl", "-lpthread"]))?;
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

/// `program ARGS` with the emulator's libraries first on the library path; returns (success,
/// stdout, stderr).
fn emulated(emu: &Path, program: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let library_path = match std::env::var("LD_LIBRARY_PATH") {
        Ok(p) if !p.is_empty() => format!("{}:{p}", emu.display()),
        _ => emu.display().to_string(),
    };
    let out = Command::new(program)
        .args(args)
        .env("LD_LIBRARY_PATH", library_path)
        .env("HETSCHED_CACHE_DIR", emu.join("ptx-cache"))
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn hetsched_cli() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hetsched"))
}

/// This binary's device tests, on the emulated device.
#[test]
fn device_tests_on_the_emulator() {
    if shared_dir().is_none() {
        return;
    }
    let Some(emu) = emulator() else { return };
    let me = std::env::current_exe().unwrap();
    let (ok, out, err) = emulated(emu, &me, &["--ignored", "--test-threads", "2"], &[("HETSCHED_EXPECT_CUDA", "1")]);
    println!("{out}");
    assert!(ok, "device tests failed on the emulator:\n{out}\n{err}");
    let passed = out.lines().filter(|l| l.starts_with("test ") && l.ends_with("... ok")).count();
    assert_eq!(passed, 11, "expected the 11 device tests to run:\n{out}");
}

#[test]
fn the_emulated_device_is_listed() {
    let Some(emu) = emulator() else { return };
    let (ok, out, err) = emulated(emu, hetsched_cli(), &["devices"], &[]);
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.starts_with("cuda")).unwrap_or_else(|| panic!("no cuda line in:\n{out}"));
    assert!(line.contains("available") && line.contains("emulator") && line.contains("compute_90"), "{line}");
}

/// Every squeezenet convolution is a cuBLAS GEMM captured into the graph (f32 unless TF32 is
/// asked for); the direct conv and tiled matmul kernels are not used.
#[test]
fn convolutions_run_as_captured_cublas_gemms() {
    let Some(shared) = shared_dir() else { return };
    let Some(emu) = emulator() else { return };
    let dir = shared.join("models/squeezenet1_1");
    let inputs = dir.join("test_data_set_0");
    let args = ["run", dir.to_str().unwrap(), "--device", "cuda", "--inputs", inputs.to_str().unwrap(), "--check"];
    let trace = [("HETSCHED_EMULATOR_TRACE", "1")];
    let (ok, out, err) = emulated(emu, hetsched_cli(), &args, &trace);
    assert!(ok, "{out}\n{err}");
    let gemms = err.lines().filter(|l| l.contains("cublas gemm") && l.ends_with("[captured]")).count();
    assert_eq!(gemms, 26, "squeezenet has 26 ungrouped convolutions:\n{err}");
    assert!(!err.contains("launch matmul ") && !err.contains("launch conv2d ") && !err.contains("tf32"), "{err}");
    let tf32 = [&args[..], &["--tf32", "--rel-l2", "3e-3", "--max-frac", "1e-2"]].concat();
    let (ok, out, err) = emulated(emu, hetsched_cli(), &tf32, &trace);
    assert!(ok, "{out}\n{err}");
    assert!(err.contains("tf32 [captured]"), "{err}");
}

/// With graph replay off, the same plan runs kernel by kernel and still matches. Repeated runs
/// report their device time (timing events around the kernels) either way.
#[test]
fn runs_match_without_graph_replay() {
    let Some(shared) = shared_dir() else { return };
    let Some(emu) = emulator() else { return };
    let dir = shared.join("models/mobilenet_v2");
    let inputs = dir.join("test_data_set_1");
    let args = ["run", dir.to_str().unwrap(), "--device", "cuda", "--inputs", inputs.to_str().unwrap(), "--check", "--repeat", "2"];
    for graphs in ["0", "1"] {
        let (ok, out, err) = emulated(emu, hetsched_cli(), &args, &[("HETSCHED_CUDA_GRAPHS", graphs), ("HETSCHED_EMULATOR_TRACE", "1")]);
        assert!(ok && out.contains("OK"), "{out}\n{err}");
        assert_eq!(err.contains("[captured]"), graphs == "1", "graphs {graphs}:\n{err}");
        let timing = out.lines().find(|l| l.starts_with("median of 1 runs")).unwrap_or_else(|| panic!("no timing:\n{out}"));
        assert!(timing.contains("host to host") && timing.contains("ms on the device"), "{timing}");
    }
}

/// HETSCHED_PROFILE times each step between events (launching one by one instead of replaying):
/// summed per kind, or listed per step with `nodes`.
#[test]
fn profile_reports_device_time_per_step() {
    let Some(shared) = shared_dir() else { return };
    let Some(emu) = emulator() else { return };
    let dir = shared.join("models/squeezenet1_1");
    let args = ["run", dir.to_str().unwrap(), "--device", "cuda"];
    let (ok, out, err) = emulated(emu, hetsched_cli(), &args, &[("HETSCHED_PROFILE", "1")]);
    assert!(ok, "{out}\n{err}");
    let gemm = err.lines().find(|l| l.starts_with("cublas gemm")).unwrap_or_else(|| panic!("no GEMM row:\n{err}"));
    assert!(gemm.contains(" 26 launches"), "{gemm}");
    let summary = err.lines().find(|l| l.contains("steps,") && l.contains("ms on the device")).unwrap_or_else(|| panic!("no total:\n{err}"));
    let steps: usize = summary.split_whitespace().next().unwrap().parse().unwrap();
    let (ok, out, err) = emulated(emu, hetsched_cli(), &args, &[("HETSCHED_PROFILE", "nodes")]);
    assert!(ok, "{out}\n{err}");
    let rows = err.lines().filter(|l| l.trim_start().split_whitespace().next().is_some_and(|w| w.parse::<usize>().is_ok()) && l.ends_with(" ms")).count();
    assert_eq!(rows, steps, "one row per step:\n{err}");
}

/// HETSCHED_CUDA_GEMM=kernel: every Matmul (convolutions included) in the tiled kernel with its
/// epilogue fused, no cuBLAS; the results still match, in f32 and with f16 storage.
#[test]
fn the_tiled_gemm_kernel_matches_too() {
    let Some(shared) = shared_dir() else { return };
    let Some(emu) = emulator() else { return };
    for (name, f16) in [("squeezenet1_1", false), ("bert_tiny", false), ("mobilenet_v2", true)] {
        let dir = shared.join("models").join(name);
        let inputs = dir.join("test_data_set_1");
        let mut args = vec!["run", dir.to_str().unwrap(), "--device", "cuda", "--inputs", inputs.to_str().unwrap(), "--check"];
        if f16 {
            args.extend(["--f16", "--rel-l2", "5e-3", "--max-frac", "2e-2"]);
        }
        let (ok, out, err) = emulated(emu, hetsched_cli(), &args, &[("HETSCHED_CUDA_GEMM", "kernel"), ("HETSCHED_EMULATOR_TRACE", "1")]);
        assert!(ok, "{name} (f16 {f16}):\n{out}\n{err}");
        assert!(err.contains("launch matmul ") && !err.contains("cublas gemm") && !err.contains("launch bias_act "), "{name}: {err}");
    }
}
