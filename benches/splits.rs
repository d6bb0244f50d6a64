//! Splits of the shared models measured side by side, as `hetsched bench` does: eight batch-1
//! requests through each split (criterion reports requests/s):
//! - `cpu/sequential`: `Session::run` eight times, one after the other (the baseline);
//! - `cpu/pipelined`: the same session's `submit`, two requests in flight;
//! - `cpu+vgpu/auto`: `auto`'s plan over the CPU and a paced virtual GPU (its steps held to
//!   the times its profile predicts, its outputs computed by the CPU kernels), pipelined;
//! - `cpu/replicas`: two threads each running the CPU session, what a user would do instead.
//!
//! `cargo bench --bench splits` (HETSCHED_SHARED for the models' folder, default ../shared).

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hetsched::{Session, SessionOptions, Tensor};
use std::sync::Arc;

const REQUESTS: usize = 8;

/// A GPU reached over a PCIe-like link, fast enough to win the large convolutions.
const VGPU: &str = "vgpu:gflops=400,gbps=100,launch_us=8,link_gbps=12,link_us=10,paced=1";

fn submit_all(s: &Session, inputs: &[(String, Tensor)]) {
    let tickets: Vec<_> = (0..REQUESTS).map(|_| s.submit(inputs.to_vec()).unwrap()).collect();
    for t in tickets {
        t.wait().unwrap();
    }
}

fn bench(c: &mut Criterion) {
    for (m, path) in common::shared_models() {
        let cpu = Arc::new(Session::from_path(&path, SessionOptions { inflight: Some(2), ..Default::default() }).unwrap());
        let bindings = hetsched::session::default_bindings(cpu.graph(), 1, 16, &Default::default());
        let inputs = cpu.random_inputs(&bindings, 0).unwrap();
        let vgpu = hetsched::cost::virtual_device::parse_spec(VGPU).unwrap();
        let split = Session::from_path(&path, SessionOptions { devices: vec!["cpu".into(), "vgpu".into()], virtual_devices: vec![vgpu], inflight: Some(2), ..Default::default() }).unwrap();
        let mut group = c.benchmark_group(format!("splits/{m}"));
        group.throughput(Throughput::Elements(REQUESTS as u64));
        group.bench_function("cpu/sequential", |b| b.iter(|| (0..REQUESTS).for_each(|_| drop(cpu.run(inputs.clone()).unwrap()))));
        group.bench_function("cpu/pipelined", |b| b.iter(|| submit_all(&cpu, &inputs)));
        group.bench_function("cpu+vgpu/auto", |b| b.iter(|| submit_all(&split, &inputs)));
        group.bench_function("cpu/replicas", |b| {
            b.iter(|| {
                let threads: Vec<_> = (0..2)
                    .map(|_| {
                        let (s, x) = (cpu.clone(), inputs.clone());
                        std::thread::spawn(move || (0..REQUESTS / 2).for_each(|_| drop(s.run(x.clone()).unwrap())))
                    })
                    .collect();
                threads.into_iter().for_each(|t| t.join().unwrap());
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
