use hetsched::backend::cpu::gemm::{sgemm, Mat};
use std::time::Instant;
fn main() {
    for &(m, n, k) in &[(96usize, 12544usize, 16usize), (144, 3136, 24), (24, 3136, 144), (512, 512, 512), (1024, 1024, 1024), (960, 49, 160)] {
        let a = vec![1.0f32; m * k];
        let b = vec![1.0f32; k * n];
        let mut c = vec![0f32; m * n];
        sgemm(m, n, k, Mat::row_major(&a, k), Mat::row_major(&b, n), &mut c, false, 1.0);
        let reps = (2e9 / (2.0 * (m * n * k) as f64)).max(3.0) as usize;
        let t = Instant::now();
        for _ in 0..reps {
            sgemm(m, n, k, Mat::row_major(&a, k), Mat::row_major(&b, n), &mut c, false, 1.0);
        }
        let s = t.elapsed().as_secs_f64() / reps as f64;
        println!("{m}x{n}x{k}: {:.3} ms  {:.1} GFLOP/s", s * 1e3, 2.0 * (m * n * k) as f64 / s / 1e9);
    }
}
