//! The two depthwise kernels on the same shapes, one thread: the per-plane kernel
//! (`depthwise.rs`) against the channel-blocked one (`depthwise_blocked.rs`), over the
//! depthwise convolutions of MobileNet- and EfficientNet-style networks at 224 and 96 pixels.
//! Where the blocked kernel wins sets `PLANE_KERNEL_WIDTH`. `cargo bench --bench conv_kernels`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hetsched::backend::cpu::conv::{conv, force_depthwise_kernel, DepthwiseKernel};
use hetsched::graph::{Activation, AutoPad, Window};
use hetsched::tensor::Tensor;
use std::time::Duration;

/// (channels, input height = width, kernel, stride)
const SHAPES: [(usize, usize, usize, usize); 13] = [
    (32, 112, 3, 1),
    (96, 112, 3, 2),
    (144, 56, 3, 2),
    (144, 56, 3, 1),
    (96, 48, 3, 1),
    (96, 40, 3, 1),
    (192, 28, 3, 1),
    (144, 28, 5, 1),
    (96, 24, 3, 2),
    (240, 12, 3, 1),
    (480, 14, 5, 1),
    (672, 7, 5, 1),
    (1152, 3, 5, 1),
];

fn depthwise(c: &mut Criterion) {
    // One thread, as in a server that runs one request per core.
    let _ = rayon::ThreadPoolBuilder::new().num_threads(1).build_global();
    let mut group = c.benchmark_group("depthwise");
    group.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500)).sample_size(20);
    for (ch, hw, k, s) in SHAPES {
        let pad = k / 2;
        let window = Window { kernel_shape: vec![k, k], strides: vec![s, s], pads: vec![pad; 4], dilations: vec![1, 1], auto_pad: AutoPad::NotSet, ceil_mode: false };
        let out = (hw + 2 * pad - k) / s + 1;
        let x = Tensor::from_f32(&[1, ch, hw, hw], (0..ch * hw * hw).map(|i| (i % 97) as f32 / 97.0 - 0.5).collect()).unwrap();
        let w = Tensor::from_f32(&[ch, 1, k, k], (0..ch * k * k).map(|i| (i % 13) as f32 / 13.0 - 0.5).collect()).unwrap();
        let b = Tensor::from_f32(&[ch], vec![0.1; ch]).unwrap();
        let shape = format!("c{ch}_{hw}x{hw}_k{k}_s{s}");
        for (name, kernel) in [("per_plane", DepthwiseKernel::PerPlane), ("channel_blocked", DepthwiseKernel::ChannelBlocked)] {
            group.bench_with_input(BenchmarkId::new(name, &shape), &kernel, |bench, &kernel| {
                force_depthwise_kernel(kernel);
                bench.iter(|| conv(&x, &w, Some(&b), &window, ch, Some(Activation::Swish(1.0)), &[1, ch, out, out]).unwrap());
            });
        }
    }
    force_depthwise_kernel(DepthwiseKernel::ByShape);
    group.finish();
}

criterion_group!(benches, depthwise);
criterion_main!(benches);
