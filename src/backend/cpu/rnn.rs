//! RNN, GRU and LSTM (ONNX semantics: gate orders z-r-h and i-o-f-c, optional biases, initial
//! states, peepholes, per-sequence lengths, clipping, custom activations, both layouts and
//! directions). The input projection of every time step is one GEMM up front; each step then
//! multiplies the previous hidden state by R and applies the gates.

use super::fastmath::{sigmoid, tanh};
use super::epilogue::Epilogue;
use super::fused_gemm::{gemm_epilogue, PackedRhs};
use super::gemm::{sgemm, Mat, SharedOut};
use rayon::prelude::*;
use std::ops::Range;
use crate::error::Result;
use crate::graph::{RnnActivation, RnnAttrs, RnnKind};
use crate::tensor::{DType, Tensor};
use crate::bail;

/// Inputs in ONNX order: X, W, R, B, sequence_lens, initial_h, (LSTM) initial_c, P.
pub fn recurrent(at: &RnnAttrs, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
    recurrent_in_blocks(at, inputs, None)
}

/// [`recurrent`] with the blocks of hidden units per step fixed (where the step can split), so
/// tests can check every split against one block.
fn recurrent_in_blocks(at: &RnnAttrs, inputs: &[Option<&Tensor>], blocks: Option<usize>) -> Result<Vec<Tensor>> {
    let input = |i: usize| inputs.get(i).copied().flatten();
    let (Some(x), Some(w), Some(r)) = (input(0), input(1), input(2)) else { bail!("X, W and R are required") };
    let xs = x.shape();
    let (seq, batch, isz) = if at.batch_first { (xs[1], xs[0], xs[2]) } else { (xs[0], xs[1], xs[2]) };
    let (dirs, h, g) = (at.directions, at.hidden, at.kind.gates());
    if r.shape() != [dirs, g * h, h] {
        bail!("R has shape {:?}, expected {:?}", r.shape(), [dirs, g * h, h]);
    }
    // Time-major [seq, batch, input] whatever the layout.
    let xv = x.as_f32()?;
    let xt: Vec<f32> = if at.batch_first {
        (0..seq * batch).flat_map(|sb| { let (s, b) = (sb / batch, sb % batch); xv[(b * seq + s) * isz..(b * seq + s + 1) * isz].iter().copied() }).collect()
    } else {
        xv.to_vec()
    };
    let checked = |i: usize, shape: &[usize], what: &str| -> Result<Option<&[f32]>> {
        match input(i) {
            None => Ok(None),
            Some(t) if t.shape() == shape => Ok(Some(t.as_f32()?)),
            Some(t) => bail!("{what} has shape {:?}, expected {shape:?}", t.shape()),
        }
    };
    let bias = checked(3, &[dirs, 2 * g * h], "B")?;
    let state_shape = [dirs, batch, h];
    let init_h = checked(5, &state_shape, "initial_h")?;
    let init_c = if at.kind == RnnKind::Lstm { checked(6, &state_shape, "initial_c")? } else { None };
    let peep = if at.kind == RnnKind::Lstm { checked(7, &[dirs, 3 * h], "P")? } else { None };
    let lens: Vec<usize> = match input(4) {
        None => vec![seq; batch],
        Some(t) => {
            let v = t.to_f64_vec();
            if v.len() != batch || v.iter().any(|&l| l < 0.0 || l as usize > seq) {
                bail!("sequence_lens {v:?} must hold {batch} lengths of at most {seq}");
            }
            v.iter().map(|&l| l as usize).collect()
        }
    };
    let (wv, rv) = (w.as_f32()?, r.as_f32()?);
    let mut y = vec![0f32; seq * dirs * batch * h];
    let mut y_h = vec![0f32; dirs * batch * h];
    let mut y_c = vec![0f32; dirs * batch * h];
    // Only read when B is absent: one zero row serves every direction.
    let zeros = if bias.is_none() { vec![0f32; g * h] } else { vec![] };
    for d in 0..dirs {
        let reverse = at.reverse || d == 1;
        let acts = &at.activations[d * at.kind.activations()..(d + 1) * at.kind.activations()];
        let wd = &wv[d * g * h * isz..(d + 1) * g * h * isz];
        let rd = &rv[d * g * h * h..(d + 1) * g * h * h];
        let (wb, rb) = match bias {
            Some(b) => (&b[d * 2 * g * h..d * 2 * g * h + g * h], &b[d * 2 * g * h + g * h..(d + 1) * 2 * g * h]),
            None => (&zeros[..], &zeros[..]),
        };
        // X W^T + Wb for every step and sequence at once: [seq * batch, g * h].
        let mut xw = vec![0f32; seq * batch * g * h];
        sgemm(seq * batch, g * h, isz, Mat::row_major(&xt, isz), Mat::row_major(wd, isz).transposed(), &mut xw, false, 1.0);
        for row in xw.chunks_mut(g * h) {
            row.iter_mut().zip(wb).for_each(|(v, b)| *v += b);
        }
        let mut hs: Vec<f32> = init_h.map_or_else(|| vec![0.0; batch * h], |v| v[d * batch * h..(d + 1) * batch * h].to_vec());
        let mut cs: Vec<f32> = init_c.map_or_else(|| vec![0.0; batch * h], |v| v[d * batch * h..(d + 1) * batch * h].to_vec());
        let pd = peep.map(|p| &p[d * 3 * h..(d + 1) * 3 * h]);
        let cell = Cell { at, acts, h, rb, pd, rd };
        let recurrent = Recurrent::new(rd, g * h, h, batch);
        let sweep = Sweep { cell: &cell, recurrent: &recurrent, xw: &xw, lens: &lens, reverse, dirs, d, batch };
        let blocks = sweep.unit_blocks(blocks);
        sweep.run(blocks, &mut hs, &mut cs, &mut y, seq);
        y_h[d * batch * h..(d + 1) * batch * h].copy_from_slice(&hs);
        y_c[d * batch * h..(d + 1) * batch * h].copy_from_slice(&cs);
    }
    let (y_shape, state_shape) = if at.batch_first { ([batch, seq, dirs, h], [batch, dirs, h]) } else { ([seq, dirs, batch, h], [dirs, batch, h]) };
    if at.batch_first {
        // [seq, dirs, batch, h] -> [batch, seq, dirs, h]; [dirs, batch, h] -> [batch, dirs, h].
        let mut yb = vec![0f32; y.len()];
        for s in 0..seq {
            for d in 0..dirs {
                for b in 0..batch {
                    let src = ((s * dirs + d) * batch + b) * h;
                    let dst = ((b * seq + s) * dirs + d) * h;
                    yb[dst..dst + h].copy_from_slice(&y[src..src + h]);
                }
            }
        }
        y = yb;
        let swap = |v: &[f32]| -> Vec<f32> { (0..batch * dirs).flat_map(|bd| { let (b, d) = (bd / dirs, bd % dirs); v[(d * batch + b) * h..(d * batch + b + 1) * h].to_vec() }).collect() };
        y_h = swap(&y_h);
        y_c = swap(&y_c);
    }
    let mut outs = vec![Tensor::from_f32(&y_shape, y)?, Tensor::from_f32(&state_shape, y_h)?];
    if at.kind == RnnKind::Lstm {
        outs.push(Tensor::from_f32(&state_shape, y_c)?);
    }
    debug_assert!(outs.iter().all(|t| t.dtype() == DType::F32));
    Ok(outs)
}

/// One direction's recurrent weights R (`gh` x `h`, row-major) as each time step multiplies
/// them: `H R^T` for the whole batch.
struct Recurrent<'a> {
    r: &'a [f32],
    /// R^T packed once for the register kernel: without it the general GEMM packs all of R
    /// again at every step, which at a batch of a few rows costs more than the product.
    packed: Option<PackedRhs>,
    gh: usize,
    h: usize,
    batch: usize,
}

impl<'a> Recurrent<'a> {
    fn new(r: &'a [f32], gh: usize, h: usize, batch: usize) -> Self {
        // One row is a matrix-vector product, which the general GEMM runs without packing.
        let packed = if batch > 1 { PackedRhs::new(Mat::row_major(r, h).transposed(), h, gh) } else { None };
        Recurrent { r, packed, gh, h, batch }
    }

    /// Columns `[c0, c0 + n)` of `hs * R^T` into `out` (row stride `ldc`); `c0` on a packed panel.
    ///
    /// # Safety
    /// `out` must be valid for writes of `(batch - 1) * ldc + n`, which no other thread accesses.
    unsafe fn columns(&self, hs: &[f32], c0: usize, n: usize, out: *mut f32, ldc: usize) {
        let packed = self.packed.as_ref().expect("column blocks need R packed");
        assert!(hs.len() >= self.batch * self.h, "recurrent product operand too small");
        // SAFETY: forwarded from the caller; hs holds batch rows of h.
        unsafe { gemm_epilogue(self.batch, n, self.h, Mat::row_major(hs, self.h), packed.columns_from(c0), out, ldc, &Epilogue::new(None, None), 0) };
    }

    /// `out (batch x gh) = hs (batch x h) * R^T`.
    fn product(&self, hs: &[f32], out: &mut [f32]) {
        let (m, n, k) = (self.batch, self.gh, self.h);
        let Some(packed) = &self.packed else {
            return sgemm(m, n, k, Mat::row_major(hs, k), Mat::row_major(self.r, k).transposed(), out, false, 1.0);
        };
        assert!(hs.len() >= m * k && out.len() >= m * n, "recurrent product operands too small");
        // Columns split between threads on panel boundaries, when there is enough work to share.
        let threads = super::threads::width();
        let tasks = if threads > 1 && m * n * k >= 1 << 18 { threads.min(n / packed.panel_width()).max(1) } else { 1 };
        let cols = n.div_ceil(tasks).next_multiple_of(packed.panel_width());
        let dst = SharedOut(out.as_mut_ptr());
        let block = |t: usize| {
            let (j0, j1) = (t * cols, ((t + 1) * cols).min(n));
            if j0 < j1 {
                // SAFETY: columns [j0, j1) of the m x n output belong to this task alone.
                unsafe { self.columns(hs, j0, j1 - j0, dst.ptr().add(j0), n) };
            }
        };
        if tasks == 1 {
            block(0);
        } else {
            (0..tasks).into_par_iter().for_each(block);
        }
    }
}

/// One direction's time loop: each step multiplies the previous hidden state by R and applies
/// the cell. The step reads the previous state and writes the next one, so with the default
/// cell it splits into blocks of hidden units, each block's rows of R (every gate) and its cell
/// updates one task: one fork per step covers both, and a step of a few rows still has work to
/// share.
struct Sweep<'a> {
    cell: &'a Cell<'a>,
    recurrent: &'a Recurrent<'a>,
    /// X W^T + Wb for every step: [seq * batch, gates * h].
    xw: &'a [f32],
    lens: &'a [usize],
    reverse: bool,
    dirs: usize,
    d: usize,
    batch: usize,
}

impl Sweep<'_> {
    /// Blocks of hidden units per step: `want`, or by default one per thread when the step is
    /// worth sharing; always one unless the cell is the fused default, R is packed and every
    /// gate's units start on a packed panel.
    fn unit_blocks(&self, want: Option<usize>) -> usize {
        let (h, g) = (self.cell.h, self.cell.at.kind.gates());
        let Some(packed) = &self.recurrent.packed else { return 1 };
        let nr = packed.panel_width();
        if !self.cell.is_default() || !h.is_multiple_of(nr) {
            return 1;
        }
        let threads = super::threads::width();
        let want = want.unwrap_or(if self.batch * g * h * h >= 1 << 20 { threads } else { 1 });
        want.clamp(1, h / nr)
    }

    /// All `seq` steps, `hs` and `cs` (batch x h) updated to the last, each step's state written
    /// to `y` ([seq, dirs, batch, h]).
    fn run(&self, blocks: usize, hs: &mut Vec<f32>, cs: &mut [f32], y: &mut [f32], seq: usize) {
        let (h, g, batch) = (self.cell.h, self.cell.at.kind.gates(), self.batch);
        let width = if blocks == 1 { h } else { h.div_ceil(blocks).next_multiple_of(self.recurrent.packed.as_ref().map_or(1, |p| p.panel_width())) };
        // Each block's H R^T for its units, [batch][gates][units]: with one block, [batch, gates * h].
        let mut hr = vec![0f32; blocks * batch * g * width];
        let mut next = vec![0f32; batch * h];
        for step in 0..seq {
            let out = (SharedOut(next.as_mut_ptr()), SharedOut(cs.as_mut_ptr()), SharedOut(y.as_mut_ptr()));
            let prev = &hs[..];
            let block = |(t, gh): (usize, &mut [f32])| {
                let (j0, j1) = (t * width, ((t + 1) * width).min(h));
                if j0 < j1 {
                    // SAFETY: units [j0, j1) of every row of `next`, `cs` and this step's `y`
                    // belong to this block alone; `prev` is only read during the step.
                    unsafe { self.units(step, j0, j1, prev, gh, out) };
                }
            };
            if blocks == 1 {
                block((0, &mut hr));
            } else {
                hr.par_chunks_mut(batch * g * width).enumerate().for_each(block);
            }
            std::mem::swap(hs, &mut next);
        }
    }

    /// Step `step` for hidden units `[j0, j1)`: the product into `gh` ([batch][gates][j1 - j0]),
    /// then the cell.
    ///
    /// # Safety
    /// `next` and `cs` must hold batch x h, `y` the whole output; no other thread may access
    /// units `[j0, j1)` of them during the call, nor write `prev`.
    unsafe fn units(&self, step: usize, j0: usize, j1: usize, prev: &[f32], gh: &mut [f32], (next, cs, y): (SharedOut, SharedOut, SharedOut)) {
        let (h, g, batch, n) = (self.cell.h, self.cell.at.kind.gates(), self.batch, j1 - j0);
        if n == h {
            // H R^T for the whole batch; rows of finished sequences are computed and ignored.
            self.recurrent.product(prev, gh);
        } else {
            for gate in 0..g {
                // SAFETY: gate `gate`'s columns of every row of `gh` (stride g * n).
                unsafe { self.recurrent.columns(prev, gate * h + j0, n, gh.as_mut_ptr().add(gate * n), g * n) };
            }
        }
        for b in 0..batch {
            // SAFETY: as the caller vouches, these units of row b are this call's alone.
            let (hn, cb) = unsafe { (std::slice::from_raw_parts_mut(next.ptr().add(b * h + j0), n), std::slice::from_raw_parts_mut(cs.ptr().add(b * h + j0), n)) };
            let hp = &prev[b * h + j0..b * h + j1];
            if step >= self.lens[b] {
                hn.copy_from_slice(hp);
                continue;
            }
            let t = if self.reverse { self.lens[b] - 1 - step } else { step };
            let gates_x = &self.xw[(t * batch + b) * g * h..(t * batch + b + 1) * g * h];
            let gates_h = &gh[b * g * n..(b + 1) * g * n];
            if self.cell.is_default() {
                fused_step(self.cell.at.kind, h, j0..j1, gates_x, gates_h, self.cell.rb, hp, hn, cb);
            } else {
                // The general cell takes whole rows (n == h here) and updates them in place.
                hn.copy_from_slice(hp);
                self.cell.step(gates_x, gates_h, hn, cb);
            }
            // SAFETY: units [j0, j1) of row (t, d, b) of y, this call's alone.
            let yr = unsafe { std::slice::from_raw_parts_mut(y.ptr().add(((t * self.dirs + self.d) * batch + b) * h + j0), n) };
            yr.copy_from_slice(hn);
        }
    }
}

/// One direction's cell: weights, biases and activations for its time steps.
struct Cell<'a> {
    at: &'a RnnAttrs,
    acts: &'a [RnnActivation],
    h: usize,
    /// Recurrent biases (zeros when B is absent), g * h.
    rb: &'a [f32],
    /// LSTM peepholes i, o, f.
    pd: Option<&'a [f32]>,
    rd: &'a [f32],
}

impl Cell<'_> {
    fn clip(&self, v: f32) -> f32 {
        self.at.clip.map_or(v, |c| v.clamp(-c, c))
    }
    fn rb(&self, i: usize) -> f32 {
        self.rb[i]
    }

    /// The cell as nearly every exported model has it: the default activations (sigmoid gates,
    /// tanh candidate and output), no clip, no peepholes or coupled gates. It then runs as one
    /// vectorised pass per gate set ([`fused_step`]) instead of a loop that matches on each
    /// activation per element.
    fn is_default(&self) -> bool {
        use RnnActivation::{Sigmoid, Tanh};
        let acts_default = match self.at.kind {
            RnnKind::Lstm => self.acts == [Sigmoid, Tanh, Tanh] && self.pd.is_none() && !self.at.input_forget,
            RnnKind::Gru => self.acts == [Sigmoid, Tanh] && self.at.linear_before_reset,
            RnnKind::Rnn => false,
        };
        acts_default && self.at.clip.is_none()
    }

    /// One time step of one sequence through the general cell (the default one is
    /// [`fused_step`]): `gx` is X_t W^T + Wb, `gh` is H_{t-1} R^T (no bias), both for all gates;
    /// updates `hs` (and `cs` for LSTM) in place.
    fn step(&self, gx: &[f32], gh: &[f32], hs: &mut [f32], cs: &mut [f32]) {
        let h = self.h;
        let f = Act(self.acts[0]);
        match self.at.kind {
            RnnKind::Rnn => {
                for j in 0..h {
                    hs[j] = f.apply(self.clip(gx[j] + gh[j] + self.rb(j)));
                }
            }
            RnnKind::Gru => {
                let gact = Act(self.acts[1]);
                let z: Vec<f32> = (0..h).map(|j| f.apply(self.clip(gx[j] + gh[j] + self.rb(j)))).collect();
                let r: Vec<f32> = (0..h).map(|j| f.apply(self.clip(gx[h + j] + gh[h + j] + self.rb(h + j)))).collect();
                let cand: Vec<f32> = if self.at.linear_before_reset {
                    (0..h).map(|j| gact.apply(self.clip(gx[2 * h + j] + r[j] * (gh[2 * h + j] + self.rb(2 * h + j))))).collect()
                } else {
                    // (r . H_{t-1}) R_h^T: the reset gate applies before the product.
                    let rh = &self.rd[2 * h * h..3 * h * h];
                    (0..h)
                        .map(|j| {
                            let dot: f32 = (0..h).map(|k| r[k] * hs[k] * rh[j * h + k]).sum();
                            gact.apply(self.clip(gx[2 * h + j] + dot + self.rb(2 * h + j)))
                        })
                        .collect()
                };
                for j in 0..h {
                    hs[j] = (1.0 - z[j]) * cand[j] + z[j] * hs[j];
                }
            }
            RnnKind::Lstm => {
                let (gact, hact) = (Act(self.acts[1]), Act(self.acts[2]));
                let pre = |gate: usize, j: usize| gx[gate * h + j] + gh[gate * h + j] + self.rb(gate * h + j);
                let peep = |k: usize, j: usize| self.pd.map_or(0.0, |p| p[k * h + j]);
                for j in 0..h {
                    let c_prev = cs[j];
                    let i = f.apply(self.clip(pre(0, j) + peep(0, j) * c_prev));
                    let fg = if self.at.input_forget { 1.0 - i } else { f.apply(self.clip(pre(2, j) + peep(2, j) * c_prev)) };
                    let c_new = fg * c_prev + i * gact.apply(self.clip(pre(3, j)));
                    let o = f.apply(self.clip(pre(1, j) + peep(1, j) * c_new));
                    cs[j] = c_new;
                    hs[j] = o * hact.apply(c_new);
                }
            }
        }
    }
}

/// An activation with the vectorisable sigmoid and tanh of `fastmath` in place of libm's.
#[derive(Clone, Copy)]
struct Act(RnnActivation);

impl Act {
    #[inline]
    fn apply(self, x: f32) -> f32 {
        match self.0 {
            RnnActivation::Sigmoid => sigmoid(x),
            RnnActivation::Tanh => tanh(x),
            a => a.apply(x),
        }
    }
}

/// A default LSTM or GRU (linear_before_reset) step of one sequence over hidden units `units`,
/// with AVX2 and FMA where the CPU has them. `gx` and `rb` hold every gate's h values; `gh`
/// holds each gate's values for these units only, gate after gate; `prev` is the state before
/// the step and `hs` after it, and `cs` (LSTM) is updated in place, all over these units.
#[allow(clippy::too_many_arguments)]
fn fused_step(kind: RnnKind, h: usize, units: Range<usize>, gx: &[f32], gh: &[f32], rb: &[f32], prev: &[f32], hs: &mut [f32], cs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { fused_step_avx2(kind, h, units, gx, gh, rb, prev, hs, cs) };
    }
    fused_step_generic(kind, h, units, gx, gh, rb, prev, hs, cs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn fused_step_avx2(kind: RnnKind, h: usize, units: Range<usize>, gx: &[f32], gh: &[f32], rb: &[f32], prev: &[f32], hs: &mut [f32], cs: &mut [f32]) {
    fused_step_generic(kind, h, units, gx, gh, rb, prev, hs, cs)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn fused_step_generic(kind: RnnKind, h: usize, units: Range<usize>, gx: &[f32], gh: &[f32], rb: &[f32], prev: &[f32], hs: &mut [f32], cs: &mut [f32]) {
    // Every slice cut to exactly the units, so the loops run without bounds checks.
    let n = units.len();
    fn cut<'a>(v: &'a [f32], k: usize, h: usize, units: &Range<usize>) -> &'a [f32] {
        &v[k * h + units.start..k * h + units.end]
    }
    let full = |v, k| cut(v, k, h, &units);
    let own = |k: usize| &gh[k * n..(k + 1) * n];
    let (hs, prev) = (&mut hs[..n], &prev[..n]);
    match kind {
        RnnKind::Lstm => {
            let cs = &mut cs[..n];
            let (xi, xo, xf, xc) = (full(gx, 0), full(gx, 1), full(gx, 2), full(gx, 3));
            let (hi, ho, hf, hc) = (own(0), own(1), own(2), own(3));
            let (bi, bo, bf, bc) = (full(rb, 0), full(rb, 1), full(rb, 2), full(rb, 3));
            for j in 0..n {
                let i = sigmoid(xi[j] + hi[j] + bi[j]);
                let o = sigmoid(xo[j] + ho[j] + bo[j]);
                let f = sigmoid(xf[j] + hf[j] + bf[j]);
                let c = f * cs[j] + i * tanh(xc[j] + hc[j] + bc[j]);
                cs[j] = c;
                hs[j] = o * tanh(c);
            }
        }
        RnnKind::Gru => {
            let (xz, xr, xn) = (full(gx, 0), full(gx, 1), full(gx, 2));
            let (hz, hr, hn) = (own(0), own(1), own(2));
            let (bz, br, bn) = (full(rb, 0), full(rb, 1), full(rb, 2));
            for j in 0..n {
                let z = sigmoid(xz[j] + hz[j] + bz[j]);
                let r = sigmoid(xr[j] + hr[j] + br[j]);
                let c = tanh(xn[j] + r * (hn[j] + bn[j]));
                hs[j] = (1.0 - z) * c + z * prev[j];
            }
        }
        RnnKind::Rnn => unreachable!("plain RNNs take the general step"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step's recurrent product, through R packed once and split between threads where the
    /// product is big enough, against a direct loop: ragged hidden sizes, batches from 1 (the
    /// unpacked path) to 9, repeated steps with the same packing.
    #[test]
    fn recurrent_products_match_a_direct_loop() {
        let mut rng = crate::test_values::Rng::new(11);
        for (batch, h, g) in [(1, 37, 4), (2, 5, 3), (3, 37, 4), (8, 200, 4), (9, 129, 3)] {
            let r: Vec<f32> = (0..g * h * h).map(|_| rng.uniform(-1.0, 1.0)).collect();
            let rec = Recurrent::new(&r, g * h, h, batch);
            for step in 0..2 {
                let hs: Vec<f32> = (0..batch * h).map(|_| rng.uniform(-1.0, 1.0)).collect();
                let mut got = vec![f32::NAN; batch * g * h];
                rec.product(&hs, &mut got);
                for b in 0..batch {
                    for j in 0..g * h {
                        let want: f64 = (0..h).map(|k| hs[b * h + k] as f64 * r[j * h + k] as f64).sum();
                        let v = got[b * g * h + j] as f64;
                        assert!((v - want).abs() <= 1e-4 * (1.0 + want.abs()), "batch {batch} h {h} step {step} at ({b},{j}): {v} vs {want}");
                    }
                }
            }
        }
    }

    /// Whole LSTM and GRU layers in every split of the hidden units per step against one block
    /// (bit for bit: each value is the same sum in the same order) and, forward, against the
    /// cell equations in f64: bidirectional, ragged sequence lengths, initial states, biases.
    #[test]
    fn layers_split_into_unit_blocks_match_one_block_and_the_equations() {
        let mut rng = crate::test_values::Rng::new(5);
        let (seq, batch, isz, h) = (4, 3, 5, 64);
        for (kind, dirs) in [(RnnKind::Lstm, 2), (RnnKind::Gru, 2), (RnnKind::Lstm, 1), (RnnKind::Gru, 1)] {
            let g = kind.gates();
            let mut t = |shape: &[usize], scale: f32| Tensor::from_f32(shape, (0..shape.iter().product()).map(|_| rng.uniform(-scale, scale)).collect()).unwrap();
            let (x, w, r, b, h0) = (t(&[seq, batch, isz], 1.0), t(&[dirs, g * h, isz], 0.4), t(&[dirs, g * h, h], 0.2), t(&[dirs, 2 * g * h], 0.3), t(&[dirs, batch, h], 0.5));
            let lens = if dirs == 2 { Some(Tensor::from_f32(&[batch], vec![4.0, 2.0, 3.0]).unwrap()) } else { None };
            let acts = match kind {
                RnnKind::Lstm => vec![RnnActivation::Sigmoid, RnnActivation::Tanh, RnnActivation::Tanh],
                _ => vec![RnnActivation::Sigmoid, RnnActivation::Tanh],
            };
            let at = RnnAttrs { kind, hidden: h, directions: dirs, reverse: false, batch_first: false, clip: None, activations: acts.repeat(dirs), linear_before_reset: true, input_forget: false };
            let inputs = [Some(&x), Some(&w), Some(&r), Some(&b), lens.as_ref(), Some(&h0)];
            let one = recurrent_in_blocks(&at, &inputs, Some(1)).unwrap();
            for blocks in [2, 3, 4] {
                let split = recurrent_in_blocks(&at, &inputs, Some(blocks)).unwrap();
                for (o, s) in one.iter().zip(&split) {
                    let same = o.as_f32().unwrap().iter().zip(s.as_f32().unwrap()).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{kind:?} x{dirs} in {blocks} blocks differs from one block");
                }
            }
            if dirs == 2 {
                continue;
            }
            let f = |v: &Tensor| v.as_f32().unwrap().iter().map(|&v| v as f64).collect::<Vec<f64>>();
            let (xv, wv, rv, bv) = (f(&x), f(&w), f(&r), f(&b));
            let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
            let (mut hs, mut cs) = (f(&h0), vec![0f64; batch * h]);
            let y = one[0].as_f32().unwrap();
            for s in 0..seq {
                for bi in 0..batch {
                    let pre = |k: usize, j: usize, hs: &[f64]| -> (f64, f64) {
                        let row = k * h + j;
                        let xp: f64 = (0..isz).map(|i| xv[(s * batch + bi) * isz + i] * wv[row * isz + i]).sum::<f64>() + bv[row];
                        let hp: f64 = (0..h).map(|i| hs[bi * h + i] * rv[row * h + i]).sum::<f64>() + bv[g * h + row];
                        (xp, hp)
                    };
                    let next: Vec<(f64, f64)> = (0..h)
                        .map(|j| {
                            let p = |k| pre(k, j, &hs);
                            match kind {
                                RnnKind::Lstm => {
                                    let sum = |k| { let (a, b) = p(k); a + b };
                                    let c = sig(sum(2)) * cs[bi * h + j] + sig(sum(0)) * sum(3).tanh();
                                    (sig(sum(1)) * c.tanh(), c)
                                }
                                _ => {
                                    let ((zx, zh), (rx, rh), (nx, nh)) = (p(0), p(1), p(2));
                                    let (z, r) = (sig(zx + zh), sig(rx + rh));
                                    let n = (nx + r * nh).tanh();
                                    ((1.0 - z) * n + z * hs[bi * h + j], 0.0)
                                }
                            }
                        })
                        .collect();
                    for (j, (hn, cn)) in next.into_iter().enumerate() {
                        let got = y[(s * batch + bi) * h + j] as f64;
                        assert!((got - hn).abs() < 1e-5, "{kind:?} step {s} batch {bi} unit {j}: {got} vs {hn}");
                        cs[bi * h + j] = cn;
                    }
                }
                for bi in 0..batch {
                    for j in 0..h {
                        hs[bi * h + j] = y[(s * batch + bi) * h + j] as f64;
                    }
                }
            }
        }
    }

    /// The fused LSTM and GRU steps against the cell equations in f64, on a ragged hidden size.
    #[test]
    fn fused_steps_match_the_cell_equations() {
        let mut rng = crate::test_values::Rng::new(3);
        let mut next = move || rng.uniform(-3.0, 3.0);
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        for h in [1usize, 7, 37] {
            for kind in [RnnKind::Lstm, RnnKind::Gru] {
                let g = kind.gates();
                let (gx, gh, rb): (Vec<f32>, Vec<f32>, Vec<f32>) = ((0..g * h).map(|_| next()).collect(), (0..g * h).map(|_| next()).collect(), (0..g * h).map(|_| next()).collect());
                let (h0, c0): (Vec<f32>, Vec<f32>) = ((0..h).map(|_| next()).collect(), (0..h).map(|_| next()).collect());
                let (mut hs, mut cs) = (vec![f32::NAN; h], c0.clone());
                fused_step(kind, h, 0..h, &gx, &gh, &rb, &h0, &mut hs, &mut cs);
                let pre = |k: usize, j: usize| (gx[k * h + j] + gh[k * h + j] + rb[k * h + j]) as f64;
                for j in 0..h {
                    let (want_h, want_c) = match kind {
                        RnnKind::Lstm => {
                            let c = sig(pre(2, j)) * c0[j] as f64 + sig(pre(0, j)) * pre(3, j).tanh();
                            (sig(pre(1, j)) * c.tanh(), c)
                        }
                        _ => {
                            let (z, r) = (sig(pre(0, j)), sig(pre(1, j)));
                            let n = (gx[2 * h + j] as f64 + r * (gh[2 * h + j] + rb[2 * h + j]) as f64).tanh();
                            ((1.0 - z) * n + z * h0[j] as f64, c0[j] as f64)
                        }
                    };
                    assert!((hs[j] as f64 - want_h).abs() < 2e-6, "{kind:?} h={h} at {j}: h {} vs {want_h}", hs[j]);
                    assert!((cs[j] as f64 - want_c).abs() < 2e-6 * (1.0 + want_c.abs()), "{kind:?} h={h} at {j}: c {} vs {want_c}", cs[j]);
                }
            }
        }
    }
}
