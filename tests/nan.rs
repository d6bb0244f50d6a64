//! Exact semantics on every available device (CUDA's run in tests/cuda.rs): NaN and infinities
//! as ONNX Runtime gives them (every case in tests/data/nan, `common::nan_case_failures`, and
//! squeezenet1_1 with one NaN pixel, whose logits ONNX Runtime gives as NaN); out-of-range
//! indices and integers beyond f32 carriers refused at run time.

mod common;
use common::*;
use hetsched::{Session, SessionOptions, Tolerance};
use std::path::PathBuf;

fn devices() -> Vec<&'static str> {
    let mut d = vec!["cpu"];
    match hetsched::backend::by_name("wgpu") {
        Ok(_) => d.push("wgpu"),
        Err(e) if std::env::var_os("CI").is_some() => panic!("CI must have a wgpu adapter: {e}"),
        Err(e) => eprintln!("SKIPPED wgpu: {e}"),
    }
    d
}

#[test]
fn nan_and_infinities_match_onnx_runtime_on_every_device() {
    let mut all = vec![];
    for device in devices() {
        let (run, failures) = nan_case_failures(device);
        println!("{device}: {run} cases run");
        all.extend(failures);
    }
    assert!(all.is_empty(), "{} failures:\n{}", all.len(), all.join("\n"));
}

/// The values only a run reveals (out-of-range indices, integers beyond an f32 carrier) fail
/// that run on every device, and the session goes on.
#[test]
fn device_checks_fail_the_run_on_every_device() {
    for device in devices() {
        check_index_errors(device);
        check_integer_exactness(device);
    }
}

#[test]
fn squeezenet_with_a_nan_pixel_gives_nan_logits_as_onnx_runtime() {
    let Some(dir) = model_dir("squeezenet1_1").filter(|d| d.is_dir()) else {
        eprintln!("SKIPPED: squeezenet1_1 not found (set HETSCHED_SHARED)");
        return;
    };
    let reference = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/nan/squeezenet_nan_pixel.pb");
    let (_, want) = hetsched::onnx::read_tensor_file(&reference).unwrap();
    for device in devices() {
        let session = Session::from_path(dir.join("model.onnx"), SessionOptions { device: device.into(), ..Default::default() }).unwrap();
        let (mut ins, _) = load_case(&session, &dir.join("test_data_set_0"));
        let x = &mut ins[0].1;
        let width = x.shape()[3];
        x.as_f32_mut().unwrap()[100 * width + 100] = f32::NAN; // (0, 0, 100, 100)
        let got = session.run(ins).unwrap();
        let rep = hetsched::compare(&got[0].1, &want, Tolerance { abs: 1e-5, rel: 1e-3 });
        let nans = |t: &hetsched::Tensor| t.to_f64_vec().iter().filter(|v| v.is_nan()).count();
        assert!(rep.elementwise_ok(), "{device}: {} of {} logits unlike ONNX Runtime's ({} NaN there, {} here)", rep.mismatches, want.numel(), nans(&want), nans(&got[0].1));
    }
}
