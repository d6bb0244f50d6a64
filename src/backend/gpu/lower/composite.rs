//! Ops the GPU runs as short sequences of the shared kernels, with constants prepared at
//! lowering time: batch and instance normalisation (a per-channel affine is a depthwise 1x1
//! convolution), variadic Sum/Mean/Max/Min (a chain of broadcast binaries), transposed
//! convolution (zero-insertion copy + an ordinary convolution with the flipped kernel), softmax
//! over an inner axis (moved last and back), Trilu (a select against a constant mask) and
//! CumSum/CumProd (the scan kernel).

use super::movement::dense;
use super::Builder;
use crate::backend::gpu::layout::*;
use crate::backend::gpu::{Elem, Kernel, OpSpec};
use crate::error::{Error, Result};
use crate::graph::{BinaryOp, Op};
use crate::tensor::{DType, Data, Tensor};
use petgraph::stable_graph::NodeIndex;

impl Builder<'_> {
    /// Constant input `i` of `n` as f64s, or an error naming what must be constant.
    fn const_values(&self, n: NodeIndex, i: usize, what: &str) -> Result<Vec<f64>> {
        self.g.input_const(n, i).map(|t| t.to_f64_vec()).ok_or_else(|| Error::Tensor(format!("{what} must be a constant on the GPU")))
    }

    /// `o[n, c, ...] = x[n, c, ...] * scale[c] + shift[c]` over `shape` (rank >= 2), as a depthwise
    /// 1x1 convolution: one launch of the conv kernel.
    fn channel_affine(&mut self, x: usize, shape: &[usize], scale: Vec<f32>, shift: Vec<f32>, o: usize) -> Result<()> {
        let (n, c, spatial) = (shape[0], shape[1], shape[2..].iter().product::<usize>());
        let elem = self.elem_for(Some(DType::F32));
        let w = self.data_buffer(&Tensor::from_f32(&[c, 1, 1, 1], scale)?, elem)?;
        let b = self.data_buffer(&Tensor::from_f32(&[c], shift)?, elem)?;
        let geo = [n, c, 1, spatial, c, 1, spatial, 1, 1, 1, 1, 0, 0, 1, 1].map(|v| v as u32);
        let mut p = geo.to_vec();
        p.extend([c as u32, 1]);
        p.extend(act_params(None));
        self.step(Kernel::Conv2d, OpSpec::None, &p, &[x, w, b, o], grid(n * c * spatial))
    }

    /// LayerNormalization's optional outputs, Mean and InvStdDev (1 / sqrt(variance + eps)) of
    /// each of the `rows` normalised blocks of `len` elements of `x`: a mean row pass, the
    /// centred squares summed by a second, and the scaling as broadcasting binary launches.
    pub(super) fn layer_norm_stats(&mut self, n: NodeIndex, x: usize, rows: usize, len: usize, epsilon: f32) -> Result<()> {
        let named = |slot: usize| self.g.g[n].outputs.get(slot).is_some_and(|v| !v.name.is_empty());
        let (want_mean, want_inv_std) = (named(1), named(2));
        let elem = self.elem_for(Some(DType::F32));
        let mean = if want_mean { self.output(n, 1)? } else { self.new_buffer(rows, elem)? };
        let (block, row) = ([rows, len], [rows, 1]);
        self.rows(x, rows, len, 0, 0.0, None, None, mean)?;
        if !want_inv_std {
            return Ok(());
        }
        let inv_std = self.output(n, 2)?;
        let centred = self.new_buffer(rows * len, self.buffers[x].elem)?;
        self.binary(BinaryOp::Sub, (x, &block), (mean, &row), centred, &block)?;
        let squares = self.new_buffer(rows, elem)?;
        self.rows(centred, rows, len, 7, 0.0, None, None, squares)?;
        let [per_element, eps, power] = [1.0 / len.max(1) as f32, epsilon, -0.5].map(|v| self.data_buffer(&Tensor::scalar_f32(v), elem));
        let (variance, shifted) = (self.new_buffer(rows, elem)?, self.new_buffer(rows, elem)?);
        self.binary(BinaryOp::Mul, (squares, &[rows]), (per_element?, &[]), variance, &[rows])?;
        self.binary(BinaryOp::Add, (variance, &[rows]), (eps?, &[]), shifted, &[rows])?;
        self.binary(BinaryOp::Pow, (shifted, &[rows]), (power?, &[]), inv_std, &[rows])
    }

    pub(super) fn composite(&mut self, n: NodeIndex) -> Result<()> {
        let node = &self.g.g[n];
        let out_shape = node.outputs[0].shape.clone().unwrap_or_default();
        let numel: usize = out_shape.iter().product();
        let xs = self.in_shape(n, 0);
        match &node.op {
            Op::BatchNorm { epsilon } => {
                let [scale, bias, mean, var] = [1, 2, 3, 4].map(|i| self.const_values(n, i, "BatchNormalization's parameters"));
                let (scale, bias, mean, var) = (scale?, bias?, mean?, var?);
                let c = xs.get(1).copied().unwrap_or(1);
                if [&scale, &bias, &mean, &var].iter().any(|v| v.len() != c) {
                    return Err(Error::Tensor(format!("BatchNormalization parameters must have {c} entries")));
                }
                let k: Vec<f64> = (0..c).map(|i| scale[i] / (var[i] + *epsilon as f64).sqrt()).collect();
                let shift = (0..c).map(|i| (bias[i] - mean[i] * k[i]) as f32).collect();
                let (x, o) = (self.input(n, 0)?, self.output(n, 0)?);
                let shape = if xs.len() == 1 { vec![1, xs[0]] } else { xs.clone() };
                self.channel_affine(x, &shape, k.iter().map(|&v| v as f32).collect(), shift, o)?;
            }
            Op::InstanceNorm { epsilon } => {
                let (scale, bias) = (self.const_values(n, 1, "InstanceNormalization's scale")?, self.const_values(n, 2, "InstanceNormalization's bias")?);
                let (rows, len) = (xs[0] * xs[1], xs[2..].iter().product::<usize>());
                let elem = self.elem_for(Some(DType::F32));
                let ones = self.data_buffer(&Tensor::from_f32(&[len], vec![1.0; len])?, elem)?;
                let x = self.input(n, 0)?;
                let normalised = self.new_buffer(numel, self.buffers[x].elem)?;
                self.rows(x, rows, len, 6, *epsilon, Some(ones), None, normalised)?;
                let o = self.output(n, 0)?;
                self.channel_affine(normalised, &xs, scale.iter().map(|&v| v as f32).collect(), bias.iter().map(|&v| v as f32).collect(), o)?;
            }
            Op::Variadic { op, mean } => {
                let present: Vec<usize> = (0..node.num_inputs).filter(|&i| self.g.source(n, i).is_some()).collect();
                let mut operands = vec![];
                for &i in &present {
                    operands.push((self.input(n, i)?, self.in_shape(n, i)));
                }
                let Some((first, first_shape)) = operands.first().cloned() else { return Err(Error::Tensor("no inputs".into())) };
                let launches = operands.len() - 1 + *mean as usize;
                if launches == 0 || (*mean && operands.len() == 1) {
                    self.value_buf.insert((n, 0), first);
                    return Ok(());
                }
                let o = self.output(n, 0)?;
                // Ping-pong between a scratch buffer and the output so that the last launch
                // writes the output (a launch may not read the buffer it writes).
                let spare = if launches > 1 { Some(self.new_buffer(numel, self.buffers[o].elem)?) } else { None };
                let target = |step: usize| if (launches - 1 - step) % 2 == 0 { o } else { spare.unwrap_or(o) };
                let (mut acc, mut acc_shape) = (first, first_shape);
                for (step, (b, shape)) in operands[1..].iter().enumerate() {
                    let dst = target(step);
                    self.binary(*op, (acc, &acc_shape), (*b, shape), dst, &out_shape)?;
                    (acc, acc_shape) = (dst, out_shape.clone());
                }
                if *mean {
                    let k = self.data_buffer(&Tensor::scalar_f32(1.0 / operands.len() as f32), self.buffers[o].elem)?;
                    self.binary(BinaryOp::Mul, (acc, &acc_shape), (k, &[]), target(launches - 1), &out_shape)?;
                }
            }
            Op::ConvTranspose { window, group, output_padding, output_shape } => {
                let ws = self.in_shape(n, 1);
                let (nd, kernel) = (xs.len() - 2, &ws[2..]);
                let at = |v: &[usize], i: usize, d: usize| v.get(i).copied().unwrap_or(d);
                let (zs, front) = convtranspose_zero_insertion(window, &xs, &ws, output_padding, output_shape, &out_shape)?;
                let x = self.input(n, 0)?;
                let z = self.new_buffer(zs.iter().product(), self.buffers[x].elem)?;
                self.fill(z, 0.0, &zs)?;
                let z_st = dense(&zs);
                let dst_st: Vec<isize> = (0..zs.len()).map(|i| if i < 2 { z_st[i] } else { z_st[i] * at(&window.strides, i - 2, 1) as isize }).collect();
                let base: usize = (0..nd).map(|i| front[i] * z_st[2 + i] as usize).sum();
                self.copy(x, 0, &dense(&xs), z, base, &dst_st, &xs)?;
                // W [C_in, C_out/g, k...] -> W' [C_out, C_in/g, k...], spatially flipped.
                let w = self.const_values(n, 1, "ConvTranspose's weights")?;
                let (cin, cout_g, ksize) = (ws[0], ws[1], kernel.iter().product::<usize>());
                let cin_g = cin / group;
                let mut flipped = vec![0f32; w.len()];
                for ci in 0..cin {
                    let (g, ci_local) = (ci / cin_g, ci % cin_g);
                    for co in 0..cout_g {
                        for k in 0..ksize {
                            flipped[((g * cout_g + co) * cin_g + ci_local) * ksize + (ksize - 1 - k)] = w[(ci * cout_g + co) * ksize + k] as f32;
                        }
                    }
                }
                let w_shape: Vec<usize> = [cout_g * group, cin_g].into_iter().chain(kernel.iter().copied()).collect();
                let wb = self.data_buffer(&Tensor::from_f32(&w_shape, flipped)?, self.elem_for(Some(DType::F32)))?;
                let bias = match self.g.source(n, 2) {
                    Some(_) => Some(self.input(n, 2)?),
                    None => None,
                };
                // A stride-1 convolution without padding (the zeros are in `z`), same dilations.
                let unit = crate::graph::Window { strides: vec![], pads: vec![], auto_pad: crate::graph::AutoPad::NotSet, ..window.clone() };
                let shape = ConvShape::new(&zs, &w_shape, &out_shape, &unit)?.ok_or_else(|| Error::Tensor(format!("ConvTranspose into {out_shape:?} on the GPU")))?;
                let o = self.output(n, 0)?;
                self.conv(n, shape, *group, z, wb, bias, None, o)?;
            }
            Op::Softmax { axis, log, .. } => {
                // Only reached for an inner axis: move it last, normalise rows, move it back.
                let r = xs.len();
                let ax = crate::tensor::norm_axis(*axis, r)?;
                let perm: Vec<usize> = (0..r).filter(|&d| d != ax).chain([ax]).collect();
                let moved: Vec<usize> = perm.iter().map(|&d| xs[d]).collect();
                let mut back = vec![0; r];
                for (i, &d) in perm.iter().enumerate() {
                    back[d] = i;
                }
                let x = self.input(n, 0)?;
                let elem = self.buffers[x].elem;
                let (t, u) = (self.new_buffer(numel, elem)?, self.new_buffer(numel, elem)?);
                self.permute(x, &xs, &perm, t)?;
                self.rows(t, numel / xs[ax].max(1), xs[ax], if *log { 5 } else { 4 }, 0.0, None, None, u)?;
                let o = self.output(n, 0)?;
                self.permute(u, &moved, &back, o)?;
            }
            Op::Trilu { upper } => {
                // Where(constant triangle mask, x, 0).
                let k = self.const_ints(n, 1)?.and_then(|v| v.first().copied()).unwrap_or(0);
                let (rows, cols) = (xs[xs.len() - 2], xs[xs.len() - 1]);
                let keep = |e: usize| {
                    let d = (e % cols) as i64 - (e / cols) as i64;
                    if *upper { d >= k } else { d <= k }
                };
                let mask = Tensor::new(vec![rows, cols], Data::Bool((0..rows * cols).map(keep).collect()))?;
                let x = self.input(n, 0)?;
                let (m, zero) = (self.data_buffer(&mask, Elem::F32)?, self.data_buffer(&Tensor::scalar_f32(0.0), self.buffers[x].elem)?);
                let o = self.output(n, 0)?;
                let mut p = vec![numel as u32];
                p.extend(shape6(&out_shape));
                for s in [&[rows, cols][..], &xs, &[]] {
                    p.extend(bcast_strides6(s, &out_shape));
                }
                self.step(Kernel::Where, OpSpec::None, &p, &[m, x, zero, o], grid(numel))?;
            }
            Op::Cumulative { product, exclusive, reverse } => {
                let axis = self.const_ints(n, 1)?.and_then(|v| v.first().copied()).ok_or_else(|| Error::Tensor("the axis must be a constant on the GPU".into()))?;
                let ax = crate::tensor::norm_axis(axis, xs.len())?;
                let (len, inner) = (xs[ax], xs[ax + 1..].iter().product::<usize>());
                let lanes = if len == 0 { 0 } else { numel / len };
                let (x, o) = (self.input(n, 0)?, self.output(n, 0)?);
                let p = [lanes, len, inner, *product as usize, *exclusive as usize, *reverse as usize].map(|v| v as u32);
                self.step(Kernel::Scan, OpSpec::None, &p, &[x, o], grid(lanes))?;
            }
            other => return Err(Error::Tensor(format!("{} is not a composite op", other.name()))),
        }
        Ok(())
    }
}
