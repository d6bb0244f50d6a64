use hetsched::backend::cpu::conv::conv;
use hetsched::graph::{AutoPad, Window};
use hetsched::Tensor;
use std::time::Instant;
fn main() {
    for &(c, h, s) in &[(32usize, 112usize, 1usize), (144, 56, 1), (96, 112, 2)] {
        let x = Tensor::from_f32(&[1, c, h, h], vec![0.5; c * h * h]).unwrap();
        let w = Tensor::from_f32(&[c, 1, 3, 3], vec![0.1; c * 9]).unwrap();
        let win = Window { kernel_shape: vec![3, 3], strides: vec![s, s], pads: vec![1, 1, 1, 1], dilations: vec![1, 1], auto_pad: AutoPad::NotSet, ceil_mode: false };
        let o = h / s;
        let t = Instant::now();
        for _ in 0..20 {
            conv(&x, &w, None, &win, c, None, &[1, c, o, o]).unwrap();
        }
        let e = t.elapsed().as_secs_f64() / 20.0;
        println!("dw c{c} h{h} s{s}: {:.3} ms, {:.2} GMAC/s", e * 1e3, (c * o * o * 9) as f64 / e / 1e9);
    }
}
