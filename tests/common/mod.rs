#![allow(dead_code)]
//! Test helpers: where the shared data lives, and the model-level acceptance check.

pub mod builder;
pub mod expectations;

use std::path::PathBuf;

/// `$HETSCHED_SHARED`, else `../shared` beside the crate. In CI (`CI` set) a missing folder is
/// a failure; elsewhere the calling test says it skipped and why.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("HETSCHED_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    if dir.join("models").is_dir() {
        return Some(dir);
    }
    let msg = format!("shared data not found at {} (set HETSCHED_SHARED)", dir.display());
    if std::env::var_os("CI").is_some() {
        panic!("{msg}: CI must have it");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

pub const MODELS: [&str; 4] = ["squeezenet1_1", "mobilenet_v2", "shufflenet_v2_x1_0", "bert_tiny"];

/// Inputs (named after the model's inputs) and reference outputs of one test-data folder.
pub fn load_case(session: &hetsched::Session, dir: &std::path::Path) -> (Vec<(String, hetsched::Tensor)>, Vec<hetsched::Tensor>) {
    let ins = hetsched::onnx::read_tensor_set(dir, "input").unwrap();
    let outs = hetsched::onnx::read_tensor_set(dir, "output").unwrap();
    assert!(!ins.is_empty() && !outs.is_empty(), "no input/output .pb in {}", dir.display());
    let named = ins.into_iter().zip(session.inputs()).map(|((_, t), gi)| (gi.name.clone(), t)).collect();
    (named, outs.into_iter().map(|(_, t)| t).collect())
}

/// The acceptance check of the foundation issue: rel L2 <= 1e-4 and max abs <= 1e-3 * max |ref|.
pub fn assert_close(what: &str, out: &hetsched::Tensor, reference: &hetsched::Tensor) {
    let r = hetsched::compare(out, reference, hetsched::Tolerance::ONNX);
    assert!(
        r.model_ok(1e-4, 1e-3),
        "{what}: rel_l2 {:.3e}, max_abs {:.3e} (max |ref| {:.3e}), shape {:?} vs {:?}",
        r.rel_l2, r.max_abs, r.max_ref, out.shape(), reference.shape()
    );
}
