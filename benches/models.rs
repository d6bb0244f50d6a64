//! The four shared models at batch 1 and 8 on every device this build has (input 0 of
//! test_data_set_0 repeated along the batch, as ../shared/scripts/ort_baseline.py does, so the
//! CPU numbers compare directly with ONNX Runtime's).
//!
//! `HETSCHED_BENCH_DEVICES` (default `cpu,wgpu`), `HETSCHED_BENCH_MODELS` and
//! `HETSCHED_BENCH_BATCHES` narrow the run. On a machine without a GPU, wgpu runs on Mesa's
//! lavapipe, a CPU rasteriser: those numbers check the plumbing, not GPU speed.

use criterion::{criterion_group, criterion_main, Criterion};

// The same allocator as the hetsched binary, so the figures match what `hetsched run` sees.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
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

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.into())
}

fn bench(c: &mut Criterion) {
    let shared = std::env::var_os("HETSCHED_SHARED").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let (models, batches) = (env_or("HETSCHED_BENCH_MODELS", "squeezenet1_1,mobilenet_v2,shufflenet_v2_x1_0,bert_tiny"), env_or("HETSCHED_BENCH_BATCHES", "1,8"));
    for device in env_or("HETSCHED_BENCH_DEVICES", "cpu,wgpu").split(',') {
        match hetsched::backend::by_name(device) {
            Ok(b) => eprintln!("device {device}: {:?}", b.info().details),
            Err(e) => {
                eprintln!("SKIPPED {device}: {e}");
                continue;
            }
        }
        let mut group = c.benchmark_group(device);
        group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
        for m in models.split(',') {
            let dir = shared.join("models").join(m);
            assert!(dir.is_dir(), "model folder {} missing (set HETSCHED_SHARED)", dir.display());
            let s = Session::from_path(dir.join("model.onnx"), SessionOptions { device: device.into(), ..Default::default() }).unwrap();
            let ins = hetsched::onnx::read_tensor_set(dir.join("test_data_set_0"), "input").unwrap();
            for b in batches.split(',').map(|b| b.parse::<usize>().unwrap()) {
                let named: Vec<(String, Tensor)> = ins.iter().zip(s.inputs()).map(|((_, t), gi)| (gi.name.clone(), repeat_batch(t, b))).collect();
                s.run(named.clone()).unwrap(); // plan once outside the timing
                group.bench_function(format!("{m}/b{b}"), |bch| bch.iter(|| s.run(named.clone()).unwrap()));
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
