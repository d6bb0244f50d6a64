//! The four shared models on the wgpu device at batch 1 and 8. On machines without a GPU this
//! runs on Mesa's lavapipe (a CPU rasteriser): its numbers check the plumbing, not GPU speed.

use criterion::{criterion_group, criterion_main, Criterion};
use hetsched::{Session, SessionOptions, Tensor};
use std::path::PathBuf;
use std::time::Duration;

fn repeat_batch(t: &Tensor, b: usize) -> Tensor {
    let one = t.numel() / t.shape()[0];
    let mut shape = t.shape().to_vec();
    shape[0] = b;
    let data = hetsched::map_data!(t.data(), v => v[..one].iter().cycle().take(one * b).cloned().collect());
    Tensor::new(shape, data).unwrap()
}

fn bench(c: &mut Criterion) {
    let Ok(dev) = hetsched::backend::by_name("wgpu") else {
        eprintln!("SKIPPED: no wgpu adapter");
        return;
    };
    let adapter = dev.info().details.iter().find(|(k, _)| k == "adapter").map(|(_, v)| v.clone()).unwrap_or_default();
    eprintln!("wgpu adapter: {adapter}");
    let shared = std::env::var_os("HETSCHED_SHARED").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let models = std::env::var("HETSCHED_BENCH_MODELS").unwrap_or_else(|_| "squeezenet1_1,mobilenet_v2,shufflenet_v2_x1_0,bert_tiny".into());
    let batches = std::env::var("HETSCHED_BENCH_BATCHES").unwrap_or_else(|_| "1,8".into());
    let mut group = c.benchmark_group("wgpu");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    for m in models.split(',') {
        let dir = shared.join("models").join(m);
        let s = Session::from_path(dir.join("model.onnx"), SessionOptions { device: "wgpu".into(), ..Default::default() }).unwrap();
        let ins = hetsched::onnx::read_tensor_set(dir.join("test_data_set_0"), "input").unwrap();
        for b in batches.split(',').map(|b| b.parse::<usize>().unwrap()) {
            let named: Vec<(String, Tensor)> = ins.iter().zip(s.inputs()).map(|((_, t), gi)| (gi.name.clone(), repeat_batch(t, b))).collect();
            s.run(named.clone()).unwrap();
            group.bench_function(format!("{m}/b{b}"), |bch| bch.iter(|| s.run(named.clone()).unwrap()));
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
