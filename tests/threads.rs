//! The CPU thread-count option: sessions on one thread and on three match the references on
//! every test model (the kernels' work splits and the single-thread paths both), run
//! concurrently from several callers, and a count of zero is a clear error.

mod common;
use common::*;
use hetsched::{Session, SessionOptions};
use std::sync::Arc;

#[test]
fn one_and_three_threads_match_the_references() {
    for name in ["squeezenet1_1", "mobilenet_v2", "bert_tiny", "unet_tiny", "video3d"] {
        for threads in [1, 3] {
            check_model_on(name, SessionOptions { threads: Some(threads), ..Default::default() }, 1e-4, 1e-3);
        }
    }
}

#[test]
fn single_thread_sessions_serve_several_callers() {
    let Some(dir) = model_dir("unet_tiny") else { return };
    let s = Arc::new(Session::from_path(dir.join("model.onnx"), SessionOptions { threads: Some(1), ..Default::default() }).unwrap());
    let (ins, _) = load_case(&s, &dir.join("test_data_set_0"));
    let want = s.run(ins.clone()).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (s, ins, want) = (s.clone(), ins.clone(), want.clone());
            std::thread::spawn(move || (0..10).for_each(|_| assert_eq!(s.run(ins.clone()).unwrap(), want)))
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
}

#[test]
fn zero_threads_is_an_error() {
    let Some(dir) = model_dir("unet_tiny") else { return };
    let e = match Session::from_path(dir.join("model.onnx"), SessionOptions { threads: Some(0), ..Default::default() }) {
        Err(e) => e.to_string(),
        Ok(s) => {
            let (ins, _) = load_case(&s, &dir.join("test_data_set_0"));
            s.run(ins).unwrap_err().to_string()
        }
    };
    assert!(e.contains("threads"), "{e}");
}
