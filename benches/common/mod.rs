//! What the benches share: the shared models they run, found through HETSCHED_SHARED (default
//! ../shared), each missing one reported as skipped.

/// (name, model.onnx path) of each shared model present.
pub fn shared_models() -> Vec<(&'static str, std::path::PathBuf)> {
    let shared = std::env::var_os("HETSCHED_SHARED").map(std::path::PathBuf::from).unwrap_or_else(|| "../shared".into());
    ["squeezenet1_1", "mobilenet_v2", "shufflenet_v2_x1_0", "bert_tiny"]
        .into_iter()
        .filter_map(|m| {
            let path = shared.join("models").join(m).join("model.onnx");
            if path.exists() {
                Some((m, path))
            } else {
                eprintln!("SKIPPED {m}: {} not found", path.display());
                None
            }
        })
        .collect()
}
