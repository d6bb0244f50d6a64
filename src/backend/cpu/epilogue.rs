//! What every convolution and fused GEMM output goes through last, in one place for the kernels
//! that apply it in registers (`fused_gemm.rs`, `depthwise.rs`) and for those that apply it as
//! a pass over what they stored (`conv.rs` through the general GEMM).

use super::simd;
use crate::graph::Activation;

/// What every convolution output goes through last: the per-channel bias, then the fused
/// activation as a clamp (Relu is `[0, inf)`, Clip its bounds, none `(-inf, inf)`), or a Swish.
/// Kernels that clamp in registers apply the clamp; the Swish then runs over what they stored
/// ([`Epilogue::finish`]) while it is in cache.
pub struct Epilogue<'a> {
    bias: Option<&'a [f32]>,
    pub lo: f32,
    pub hi: f32,
    /// What runs after the clamp: nothing, Swish (its alpha) or HardSwish.
    post: Post,
}

#[derive(Clone, Copy, PartialEq)]
enum Post {
    None,
    Swish(f32),
    HardSwish,
}

impl<'a> Epilogue<'a> {
    pub fn new(bias: Option<&'a [f32]>, act: Option<Activation>) -> Self {
        let unbounded = (f32::NEG_INFINITY, f32::INFINITY);
        let ((lo, hi), post) = match act {
            None => (unbounded, Post::None),
            Some(Activation::Swish(alpha)) => (unbounded, Post::Swish(alpha)),
            Some(Activation::HardSwish) => (unbounded, Post::HardSwish),
            Some(Activation::Relu) => ((0.0, f32::INFINITY), Post::None),
            Some(Activation::Clip { min, max }) => ((min, max), Post::None),
        };
        Epilogue { bias, lo, hi, post }
    }
    pub fn bias(&self, channel: usize) -> f32 {
        self.bias.map_or(0.0, |b| b[channel])
    }
    /// The clamp on one value, as kernels that clamp in registers apply it. Comparisons, not
    /// `max`/`min`: a NaN stays NaN (as in ONNX Runtime).
    #[inline(always)]
    pub fn clamp(&self, v: f32) -> f32 {
        let v = if v < self.lo { self.lo } else { v };
        if v > self.hi { self.hi } else { v }
    }
    fn is_identity(&self) -> bool {
        self.bias.is_none() && self.lo == f32::NEG_INFINITY && self.hi == f32::INFINITY
    }
    pub fn apply(&self, row: &mut [f32], channel: usize) {
        if !self.is_identity() {
            simd::bias_act(row, self.bias(channel), self.lo, self.hi);
        }
        self.finish(row);
    }
    /// The part of the activation a clamp cannot express (Swish, HardSwish), over values the bias and
    /// clamp have already been applied to.
    pub fn finish(&self, row: &mut [f32]) {
        match self.post {
            Post::None => {}
            Post::Swish(alpha) => simd::swish(row, alpha),
            Post::HardSwish => simd::hard_swish(row),
        }
    }
}
