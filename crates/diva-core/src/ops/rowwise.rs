//! Row-wise ops over the last dimension with fused forward *and* backward
//! kernels, for training on CPU: softmax, RMS normalisation and
//! standardisation (LayerNorm without its affine part).
//!
//! candle's autograd builds each of these from 4–6 elementary ops, and its
//! backward from about twice as many, each a separate pass over memory with
//! its own allocation and (mostly) single-threaded. The training step runs
//! ~60 norms and ~35 softmaxes per example through the frozen LLM and the
//! connector, so those passes dominate the non-GEMM time and keep the second
//! core idle. Here each op is one parallel pass forward and one backward
//! (a `CustomOp1` whose `bwd` applies a `CustomOp2` kernel); the affine parts
//! stay candle ops, so trainable norm weights still get their gradients.
//!
//! f32 and f64 on CPU only; callers fall back to the elementary ops elsewhere
//! (see [`supported`]).

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor,
};
use num_traits::Float;
use rayon::prelude::*;

use super::contiguous_slice;

#[derive(Debug, Clone, Copy)]
enum RowOp {
    /// `y = softmax(x)`; backward keeps `y`.
    Softmax,
    /// `y = x / sqrt(mean(x²) + eps)`; backward keeps `x`.
    Rms { eps: f64 },
    /// `y = (x − mean) / sqrt(var + eps)`; backward keeps `x`.
    Standardize { eps: f64 },
}

/// Whether the fused kernels handle `x` (otherwise use the elementary ops).
pub fn supported(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) && x.rank() > 0
}

/// Softmax over the last dimension, differentiable.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Fwd(RowOp::Softmax))
}

/// Softmax over the last dimension without a backward (inference): the same
/// kernel, no graph node; candle's kernel for other dtypes and devices.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1_no_bwd(&Fwd(RowOp::Softmax))
    } else {
        candle_nn::ops::softmax_last_dim(&x.contiguous()?)
    }
}

/// `x / sqrt(mean(x²) + eps)` over the last dimension, differentiable.
pub fn rms_normalize(x: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Fwd(RowOp::Rms { eps }))
}

/// `(x − mean) / sqrt(var + eps)` over the last dimension (biased variance,
/// as LayerNorm), differentiable.
pub fn standardize(x: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Fwd(RowOp::Standardize { eps }))
}

/// `x / sqrt(mean(x²) + eps) ⊙ w` over the last dimension with a *constant*
/// weight `w` (the frozen LLM's norms), differentiable in `x` only.
///
/// With the weight as a separate `broadcast_mul`, candle's backward would
/// also compute the product's gradient for the broadcast weight (its `Mul`
/// backward always computes both sides), zero-fill it and add into it, and
/// then drop it: three wasted passes per norm, and two more for `x`'s side.
/// Here the weight is folded into the norm's one pass each way. Callers
/// check [`rms_norm_const_weight_supported`].
pub fn rms_norm_const_weight(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, RmsConstWeight { eps })
}

/// Whether [`rms_norm_const_weight`] handles `x` with `weight`: CPU f32/f64,
/// a weight of the row's length and dtype that carries no gradient.
pub fn rms_norm_const_weight_supported(x: &Tensor, weight: &Tensor) -> bool {
    supported(x)
        && !weight.track_op()
        && weight.dtype() == x.dtype()
        && weight.dims() == [x.dim(candle_core::D::Minus1).unwrap_or(0)]
}

struct Fwd(RowOp);
struct Bwd(RowOp);
struct RmsConstWeight {
    eps: f64,
}
struct RmsConstWeightBwd {
    eps: f64,
}

fn row_len(layout: &Layout) -> usize {
    layout.shape().dims().last().copied().unwrap_or(1).max(1)
}

/// Rows per rayon task: enough work per task that scheduling stays cheap.
fn min_rows(n: usize) -> usize {
    (4096 / n).max(1)
}

impl CustomOp1 for Fwd {
    fn name(&self) -> &'static str {
        "diva-rowwise"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = row_len(layout);
        let out = match storage {
            CpuStorage::F32(v) => {
                let src = contiguous_slice(v, layout, self.name())?;
                let mut dst = vec![0f32; src.len()];
                match self.0 {
                    // The inference kernel (vectorised exp) is the same function.
                    RowOp::Softmax => super::softmax::softmax_rows(src, &mut dst, n),
                    op => forward_rows(op, src, &mut dst, n),
                }
                CpuStorage::F32(dst)
            }
            CpuStorage::F64(v) => {
                let src = contiguous_slice(v, layout, self.name())?;
                let mut dst = vec![0f64; src.len()];
                forward_rows(self.0, src, &mut dst, n);
                CpuStorage::F64(dst)
            }
            _ => candle_core::bail!("{}: f32/f64 only", self.name()),
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let saved = match self.0 {
            RowOp::Softmax => res,
            RowOp::Rms { .. } | RowOp::Standardize { .. } => arg,
        };
        let grad = grad.to_dtype(saved.dtype())?.contiguous()?;
        Ok(Some(
            saved.contiguous()?.apply_op2_no_bwd(&grad, &Bwd(self.0))?,
        ))
    }
}

impl CustomOp2 for Bwd {
    fn name(&self) -> &'static str {
        "diva-rowwise-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        super::same_shapes(self.name(), &[l1, l2])?;
        let n = row_len(l1);
        let out = float_slices!(self.name(), (s1, l1, s2, l2) => {
            let mut dst = vec![Default::default(); s1.len()];
            backward_rows(self.0, s1, s2, &mut dst, n);
            dst
        });
        Ok((out, l1.shape().clone()))
    }
}

impl CustomOp2 for RmsConstWeight {
    fn name(&self) -> &'static str {
        "diva-rms-norm-const-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = row_len(l1);
        if l2.shape().elem_count() != n {
            candle_core::bail!("{}: weight {:?} for rows of {n}", self.name(), l2.shape());
        }
        let op = RowOp::Rms { eps: self.eps };
        let out = float_slices!(self.name(), (s1, l1, s2, l2) => {
            let mut dst = vec![Default::default(); s1.len()];
            scaled_rms_rows(op, s1, s2, &mut dst, n);
            dst
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.to_dtype(x.dtype())?.contiguous()?;
        let dx = x.apply_op3_no_bwd(weight, &grad, &RmsConstWeightBwd { eps: self.eps })?;
        Ok((Some(dx), None))
    }
}

impl CustomOp3 for RmsConstWeightBwd {
    fn name(&self) -> &'static str {
        "diva-rms-norm-const-weight-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        super::same_shapes(self.name(), &[l1, l3])?;
        let n = row_len(l1);
        let op = RowOp::Rms { eps: self.eps };
        let out = float_slices!(self.name(), (s1, l1, s2, l2, s3, l3) => {
            let mut dst = vec![Default::default(); s1.len()];
            scaled_rms_backward_rows(op, s1, s2, s3, &mut dst, n);
            dst
        });
        Ok((out, l1.shape().clone()))
    }
}

/// `y = x · r · w` per row, `r = 1 / sqrt(mean(x²) + eps)`.
fn scaled_rms_rows<T: Float + Send + Sync>(op: RowOp, src: &[T], w: &[T], dst: &mut [T], n: usize) {
    dst.par_chunks_mut(n)
        .zip(src.par_chunks(n))
        .with_min_len(min_rows(n))
        .for_each(|(y, x)| {
            super::with_best_simd(
                #[inline(always)]
                || {
                    let (_, inv) = centre_and_scale(op, x);
                    for ((o, &v), &w) in y.iter_mut().zip(x).zip(w) {
                        *o = v * inv * w;
                    }
                },
            )
        });
}

/// `∂x = (g' − x·r · mean(g' ⊙ x·r)) · r` with `g' = ∂y ⊙ w`.
fn scaled_rms_backward_rows<T: Float + Send + Sync>(
    op: RowOp,
    x: &[T],
    w: &[T],
    g: &[T],
    dx: &mut [T],
    n: usize,
) {
    let nf = T::from(n).expect("row length fits");
    dx.par_chunks_mut(n)
        .zip(x.par_chunks(n).zip(g.par_chunks(n)))
        .with_min_len(min_rows(n))
        .for_each(|(d, (x, g))| {
            super::with_best_simd(
                #[inline(always)]
                || {
                    let (_, inv) = centre_and_scale(op, x);
                    let dot = x
                        .iter()
                        .zip(g)
                        .zip(w)
                        .fold(T::zero(), |a, ((&x, &gy), &w)| a + x * inv * gy * w)
                        / nf;
                    for (((o, &x), &gy), &w) in d.iter_mut().zip(x).zip(g).zip(w) {
                        *o = (gy * w - x * inv * dot) * inv;
                    }
                },
            )
        });
}

/// Mean and `1 / sqrt(mean-square-or-variance + eps)` of a row, per op.
#[inline(always)]
fn centre_and_scale<T: Float>(op: RowOp, x: &[T]) -> (T, T) {
    let n = T::from(x.len()).expect("row length fits");
    match op {
        RowOp::Rms { eps } => {
            let ms = x.iter().fold(T::zero(), |s, &v| s + v * v) / n;
            (T::zero(), (ms + T::from(eps).expect("eps")).sqrt().recip())
        }
        RowOp::Standardize { eps } => {
            let mean = x.iter().fold(T::zero(), |s, &v| s + v) / n;
            let var = x
                .iter()
                .fold(T::zero(), |s, &v| s + (v - mean) * (v - mean))
                / n;
            (mean, (var + T::from(eps).expect("eps")).sqrt().recip())
        }
        RowOp::Softmax => unreachable!("softmax has no centre/scale"),
    }
}

fn forward_rows<T: Float + Send + Sync>(op: RowOp, src: &[T], dst: &mut [T], n: usize) {
    dst.par_chunks_mut(n)
        .zip(src.par_chunks(n))
        .with_min_len(min_rows(n))
        .for_each(|(y, x)| {
            super::with_best_simd(
                #[inline(always)]
                || match op {
                    RowOp::Softmax => {
                        let max = x.iter().fold(T::neg_infinity(), |m, &v| m.max(v));
                        let max = if max.is_finite() { max } else { T::zero() };
                        let mut sum = T::zero();
                        for (o, &v) in y.iter_mut().zip(x) {
                            *o = (v - max).exp();
                            sum = sum + *o;
                        }
                        let inv = sum.recip();
                        y.iter_mut().for_each(|o| *o = *o * inv);
                    }
                    _ => {
                        let (mean, inv) = centre_and_scale(op, x);
                        for (o, &v) in y.iter_mut().zip(x) {
                            *o = (v - mean) * inv;
                        }
                    }
                },
            )
        });
}

/// `saved` is `y` for softmax and `x` for the norms; `g` is ∂L/∂y.
fn backward_rows<T: Float + Send + Sync>(op: RowOp, saved: &[T], g: &[T], dx: &mut [T], n: usize) {
    let nf = T::from(n).expect("row length fits");
    dx.par_chunks_mut(n)
        .zip(saved.par_chunks(n).zip(g.par_chunks(n)))
        .with_min_len(min_rows(n))
        .for_each(|(d, (s, g))| {
            super::with_best_simd(
                #[inline(always)]
                || match op {
                    // ∂x = y ⊙ (∂y − Σ ∂y ⊙ y)
                    RowOp::Softmax => {
                        let dot = s.iter().zip(g).fold(T::zero(), |a, (&y, &gy)| a + y * gy);
                        for ((o, &y), &gy) in d.iter_mut().zip(s).zip(g) {
                            *o = y * (gy - dot);
                        }
                    }
                    // ∂x = (∂y − y · mean(∂y ⊙ y)) / r
                    RowOp::Rms { .. } => {
                        let (_, inv) = centre_and_scale(op, s);
                        let dot = s
                            .iter()
                            .zip(g)
                            .fold(T::zero(), |a, (&x, &gy)| a + x * inv * gy)
                            / nf;
                        for ((o, &x), &gy) in d.iter_mut().zip(s).zip(g) {
                            *o = (gy - x * inv * dot) * inv;
                        }
                    }
                    // ∂x = (∂y − mean(∂y) − y · mean(∂y ⊙ y)) / σ
                    RowOp::Standardize { .. } => {
                        let (mean, inv) = centre_and_scale(op, s);
                        let (sum_g, dot) = s
                            .iter()
                            .zip(g)
                            .fold((T::zero(), T::zero()), |(a, b), (&x, &gy)| {
                                (a + gy, b + (x - mean) * inv * gy)
                            });
                        let (mean_g, mean_dot) = (sum_g / nf, dot / nf);
                        for ((o, &x), &gy) in d.iter_mut().zip(s).zip(g) {
                            *o = (gy - mean_g - (x - mean) * inv * mean_dot) * inv;
                        }
                    }
                },
            )
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    #[test]
    fn softmax_last_dim_equals_candle_including_masked_rows() {
        let x = Tensor::randn(0f32, 4.0, (3, 7, 300), &Device::Cpu).unwrap();
        let mask = crate::ops::attention::causal_mask(7, 300, 5, &Device::Cpu).unwrap();
        let x = x.broadcast_add(&mask).unwrap();
        let ours = softmax_last_dim(&x).unwrap();
        let theirs = candle_nn::ops::softmax_last_dim(&x).unwrap();
        let d = (ours - theirs)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-6, "max diff {d}");
    }

    /// The elementary-op definitions these kernels replace.
    fn reference(x: &Tensor, which: &str) -> Tensor {
        match which {
            "softmax" => {
                let max = x.max_keepdim(D::Minus1).unwrap().detach();
                let e = x.broadcast_sub(&max).unwrap().exp().unwrap();
                e.broadcast_div(&e.sum_keepdim(D::Minus1).unwrap()).unwrap()
            }
            "rms" => {
                let ms = x.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
                x.broadcast_div(&(ms + 1e-5).unwrap().sqrt().unwrap())
                    .unwrap()
            }
            _ => {
                let c = x
                    .broadcast_sub(&x.mean_keepdim(D::Minus1).unwrap())
                    .unwrap();
                let var = c.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
                c.broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
                    .unwrap()
            }
        }
    }

    fn fused(x: &Tensor, which: &str) -> Tensor {
        match which {
            "softmax" => softmax(x),
            "rms" => rms_normalize(x, 1e-5),
            _ => standardize(x, 1e-5),
        }
        .unwrap()
    }

    /// Values and input gradients equal the elementary ops' (f64, tight; f32
    /// within the vectorised exp's error), on a non-contiguous input.
    #[test]
    fn values_and_gradients_match_the_elementary_ops() {
        let dev = Device::Cpu;
        for dtype in [DType::F64, DType::F32] {
            let base = Tensor::randn(0f64, 2.0, (3, 40, 7), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let coeffs = Tensor::randn(0f64, 1.0, (3, 7, 40), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            for which in ["softmax", "rms", "standardize"] {
                let var = Var::from_tensor(&base).unwrap();
                let x = var.as_tensor().transpose(1, 2).unwrap(); // non-contiguous
                let (mut ys, mut gs) = (Vec::new(), Vec::new());
                for y in [fused(&x, which), reference(&x, which)] {
                    let loss = (&y * &coeffs).unwrap().sqr().unwrap().sum_all().unwrap();
                    let g = loss.backward().unwrap().get(&var).unwrap().clone();
                    ys.push(y.to_dtype(DType::F64).unwrap());
                    gs.push(g.to_dtype(DType::F64).unwrap());
                }
                let ey = crate::testing::rel_l2(&ys[0], &ys[1]);
                let eg = crate::testing::rel_l2(&gs[0], &gs[1]);
                assert!(
                    ey < tol && eg < tol,
                    "{which} {dtype:?}: value {ey:e}, grad {eg:e}"
                );
            }
        }
    }

    /// The norm with a folded constant weight equals `rms_normalize(x) ⊙ w`
    /// in value and input gradient, and gives the weight no gradient.
    #[test]
    fn rms_norm_with_a_constant_weight_matches_the_two_op_form() {
        let dev = Device::Cpu;
        for dtype in [DType::F64, DType::F32] {
            let tol = if dtype == DType::F64 { 1e-13 } else { 1e-5 };
            let base = Tensor::randn(0f64, 2.0, (3, 33, 5), &dev).unwrap();
            let w = Tensor::randn(1f64, 0.3, 33, &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let coeffs = Tensor::randn(0f64, 1.0, (3, 5, 33), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let (mut ys, mut gs) = (Vec::new(), Vec::new());
            for folded in [true, false] {
                let var = Var::from_tensor(&base.to_dtype(dtype).unwrap()).unwrap();
                let x = var.as_tensor().transpose(1, 2).unwrap(); // non-contiguous
                assert!(rms_norm_const_weight_supported(&x, &w));
                let y = if folded {
                    rms_norm_const_weight(&x, &w, 1e-5).unwrap()
                } else {
                    rms_normalize(&x, 1e-5).unwrap().broadcast_mul(&w).unwrap()
                };
                let loss = (&y * &coeffs).unwrap().sqr().unwrap().sum_all().unwrap();
                let g = loss.backward().unwrap();
                gs.push(g.get(&var).unwrap().to_dtype(DType::F64).unwrap());
                ys.push(y.to_dtype(DType::F64).unwrap());
            }
            let ey = crate::testing::rel_l2(&ys[0], &ys[1]);
            let eg = crate::testing::rel_l2(&gs[0], &gs[1]);
            assert!(ey < tol && eg < tol, "{dtype:?}: value {ey:e}, grad {eg:e}");
        }
        let trainable = Var::ones(33, DType::F32, &dev).unwrap();
        let x = Tensor::ones((2, 33), DType::F32, &dev).unwrap();
        assert!(!rms_norm_const_weight_supported(&x, trainable.as_tensor()));
    }

    /// Masked softmax rows (−∞ entries) get zero probability and zero gradient.
    #[test]
    fn masked_softmax_rows_stay_finite() {
        let dev = Device::Cpu;
        let mask = crate::ops::attention::causal_mask(5, 5, 0, &dev)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        let var = Var::from_tensor(&Tensor::randn(0f64, 1.0, (5, 5), &dev).unwrap()).unwrap();
        let y = softmax(&var.as_tensor().broadcast_add(&mask).unwrap()).unwrap();
        let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let g = g.get(&var).unwrap().to_vec2::<f64>().unwrap();
        let y = y.to_vec2::<f64>().unwrap();
        for i in 0..5 {
            for j in i + 1..5 {
                assert_eq!((y[i][j], g[i][j]), (0.0, 0.0));
            }
            assert!(g[i].iter().all(|v| v.is_finite()));
        }
    }
}
