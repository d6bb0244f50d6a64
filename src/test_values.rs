//! Seeded values for the unit tests (kernels, planners): xorshift32, so every run checks the
//! same cases.

/// xorshift32 (seed 0 is replaced: it would stay 0).
pub struct Rng(u32);

impl Rng {
    pub fn new(seed: u32) -> Rng {
        Rng(seed.wrapping_mul(2_654_435_761).max(1))
    }
    pub fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
    /// In `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.next() as usize % n
    }
    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 8) as f32 / (1 << 24) as f32)
    }
}

/// `len` values uniform in `[lo, hi)` from `seed`.
pub fn values(len: usize, seed: u32, lo: f32, hi: f32) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..len).map(|_| r.uniform(lo, hi)).collect()
}
