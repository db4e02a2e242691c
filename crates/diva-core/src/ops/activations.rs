//! Elementwise activations with fused forward *and* backward kernels, for
//! training on CPU: the LLM's SwiGLU product `silu(gate) ⊙ up` and the
//! connector's exact (erf) GELU.
//!
//! candle differentiates these through its elementary ops. `silu` backward is
//! five passes (negate, exp, add, reciprocal, products) and the product
//! `⊙ up` two more, each over a `[b, t, ffn]` tensor, each a fresh
//! allocation, and all on one thread (diva runs candle's elementwise ops on
//! the calling thread, see `cpu_pools`); `gelu_erf` backward evaluates erf
//! and exp per element in scalar f64. In the 2-thread training step that
//! serial elementwise work, not the GEMMs, is what keeps the second core
//! idle during the backward. Here each activation is one parallel pass each
//! way; the SwiGLU backward writes both input gradients in that one pass.
//!
//! f32 and f64 on CPU only ([`supported`]); other dtypes and devices use
//! candle's ops, which compute the same function.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor,
};
use num_traits::Float;
use rayon::prelude::*;

/// Elements per rayon task: large enough that scheduling stays cheap.
const CHUNK: usize = 8192;

/// Whether the fused kernels handle `x` (otherwise use candle's ops).
pub fn supported(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// `silu(gate) ⊙ up`, differentiable in both.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if !(supported(gate) && gate.dtype() == up.dtype() && gate.dims() == up.dims()) {
        return gate.silu()? * up;
    }
    gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)
}

/// Exact GELU `x · Φ(x)`, differentiable.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if !supported(x) {
        return x.gelu_erf();
    }
    x.contiguous()?.apply_op1(GeluErf)
}

/// The scalar functions, in f32 (vectorisable approximations, within 1e-6)
/// and f64 (exact, for gradient checks).
trait Act: Float + Send + Sync + 'static {
    fn sigmoid(x: Self) -> Self;
    /// `Φ(x)`, the standard normal CDF.
    fn normal_cdf(x: Self) -> Self;
    /// `φ(x)`, the standard normal density.
    fn normal_pdf(x: Self) -> Self;
}

const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

impl Act for f32 {
    #[inline(always)]
    fn sigmoid(x: f32) -> f32 {
        1.0 / (1.0 + super::fast_exp::exp(-x))
    }
    #[inline(always)]
    fn normal_cdf(x: f32) -> f32 {
        0.5 * (1.0 + super::gelu::erf(x * std::f32::consts::FRAC_1_SQRT_2))
    }
    #[inline(always)]
    fn normal_pdf(x: f32) -> f32 {
        FRAC_1_SQRT_2PI as f32 * super::fast_exp::exp(-0.5 * x * x)
    }
}

impl Act for f64 {
    #[inline(always)]
    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }
    #[inline(always)]
    fn normal_cdf(x: f64) -> f64 {
        0.5 * (1.0 + candle_core::cpu::erf::erf_f64(x * std::f64::consts::FRAC_1_SQRT_2))
    }
    #[inline(always)]
    fn normal_pdf(x: f64) -> f64 {
        FRAC_1_SQRT_2PI * (-0.5 * x * x).exp()
    }
}

/// Apply `f` to `CHUNK`-sized pieces of `n` outputs in parallel, each piece
/// compiled for the CPU's widest SIMD.
fn par_map<T: Default + Clone + Send + Sync>(
    n: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) -> Vec<T> {
    let mut out = vec![T::default(); n];
    if n <= CHUNK {
        // One chunk (a decode step's single row): no trip through the pool.
        super::with_best_simd(
            #[inline(always)]
            || f(0, &mut out),
        );
        return out;
    }
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(i, dst)| {
        super::with_best_simd(
            #[inline(always)]
            || f(i * CHUNK, dst),
        )
    });
    out
}

/// [`par_map`] for two results of `n` each, stacked in one `[2, n]` buffer:
/// `f(start, a, b)` fills the same positions of both in one pass.
fn par_map_pair<T: Default + Clone + Send + Sync>(
    n: usize,
    f: impl Fn(usize, &mut [T], &mut [T]) + Sync,
) -> Vec<T> {
    let mut out = vec![T::default(); 2 * n];
    let (a, b) = out.split_at_mut(n);
    a.par_chunks_mut(CHUNK)
        .zip(b.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(i, (a, b))| {
            super::with_best_simd(
                #[inline(always)]
                || f(i * CHUNK, a, b),
            )
        });
    out
}

#[inline(always)]
fn swiglu_fwd<T: Act>(g: &[T], u: &[T], start: usize, dst: &mut [T]) {
    let (g, u) = (&g[start..][..dst.len()], &u[start..][..dst.len()]);
    for ((o, &g), &u) in dst.iter_mut().zip(g).zip(u) {
        *o = g * T::sigmoid(g) * u;
    }
}

/// `∂gate` and `∂up` of positions `start..start + dg.len()`, from one
/// sigmoid per element.
#[inline(always)]
fn swiglu_bwd<T: Act>(g: &[T], u: &[T], dy: &[T], start: usize, dg: &mut [T], du: &mut [T]) {
    let len = dg.len();
    let (g, u, dy) = (&g[start..][..len], &u[start..][..len], &dy[start..][..len]);
    for i in 0..len {
        let s = T::sigmoid(g[i]);
        // d silu(g) / dg = σ(g) · (1 + g · (1 − σ(g)))
        dg[i] = dy[i] * u[i] * s * (T::one() + g[i] * (T::one() - s));
        du[i] = dy[i] * g[i] * s;
    }
}

#[inline(always)]
fn gelu_fwd<T: Act>(x: &[T], start: usize, dst: &mut [T]) {
    for (o, &x) in dst.iter_mut().zip(&x[start..]) {
        *o = x * T::normal_cdf(x);
    }
}

#[inline(always)]
fn gelu_bwd<T: Act>(x: &[T], dy: &[T], start: usize, dst: &mut [T]) {
    for ((o, &x), &g) in dst.iter_mut().zip(&x[start..]).zip(&dy[start..]) {
        *o = g * (T::normal_cdf(x) + x * T::normal_pdf(x));
    }
}

struct SwiGlu;
struct SwiGluBwd;
struct GeluErf;
struct GeluErfBwd;

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "diva-swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        super::same_shapes(self.name(), &[l1, l2])?;
        let n = l1.shape().elem_count();
        let out = float_slices!(self.name(), (s1, l1, s2, l2) =>
            par_map(n, #[inline(always)] |start, dst| swiglu_fwd(s1, s2, start, dst)));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.to_dtype(gate.dtype())?.contiguous()?;
        // One pass writes both gradients, stacked; each half is a
        // contiguous view of it.
        let both = gate.apply_op3_no_bwd(up, &grad, &SwiGluBwd)?;
        Ok((Some(both.get(0)?), Some(both.get(1)?)))
    }
}

impl CustomOp3 for SwiGluBwd {
    fn name(&self) -> &'static str {
        "diva-swiglu-bwd"
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
        super::same_shapes(self.name(), &[l1, l2, l3])?;
        let n = l1.shape().elem_count();
        let out = float_slices!(self.name(), (s1, l1, s2, l2, s3, l3) =>
            par_map_pair(n, #[inline(always)] |start, dg, du| swiglu_bwd(s1, s2, s3, start, dg, du)));
        let mut dims = vec![2];
        dims.extend_from_slice(l1.dims());
        Ok((out, Shape::from(dims)))
    }
}

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "diva-gelu-erf-train"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = l1.shape().elem_count();
        let out = float_slices!(self.name(), (s1, l1) =>
            par_map(n, #[inline(always)] |start, dst| gelu_fwd(s1, start, dst)));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.to_dtype(x.dtype())?.contiguous()?;
        Ok(Some(x.apply_op2_no_bwd(&grad, &GeluErfBwd)?))
    }
}

impl CustomOp2 for GeluErfBwd {
    fn name(&self) -> &'static str {
        "diva-gelu-erf-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        super::same_shapes(self.name(), &[l1, l2])?;
        let n = l1.shape().elem_count();
        let out = float_slices!(self.name(), (s1, l1, s2, l2) =>
            par_map(n, #[inline(always)] |start, dst| gelu_bwd(s1, s2, start, dst)));
        Ok((out, l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::rel_l2;
    use candle_core::{Device, Var};

    fn f64s(t: &Tensor) -> Tensor {
        t.to_dtype(DType::F64).unwrap()
    }

    /// Values and gradients equal candle's elementary ops (f64 tightly, f32
    /// within the vectorised exp/erf), on non-contiguous inputs and a size
    /// that is not a multiple of the task size.
    #[test]
    fn swiglu_and_gelu_match_candles_ops_with_gradients() {
        let dev = Device::Cpu;
        let shape = (3, 7, CHUNK / 5 + 3);
        for dtype in [DType::F64, DType::F32] {
            let tol = if dtype == DType::F64 { 1e-13 } else { 2e-6 };
            let base_g = Tensor::randn(0f64, 3.0, shape, &dev).unwrap();
            let base_u = Tensor::randn(0f64, 1.0, shape, &dev).unwrap();
            let coeffs = Tensor::randn(0f64, 1.0, shape, &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let (mut vals, mut grads) = (Vec::new(), Vec::new());
            for fused in [true, false] {
                let g = Var::from_tensor(&base_g.transpose(0, 1).unwrap().to_dtype(dtype).unwrap())
                    .unwrap();
                let u = Var::from_tensor(&base_u.transpose(0, 1).unwrap().to_dtype(dtype).unwrap())
                    .unwrap();
                let coeffs = coeffs.transpose(0, 1).unwrap();
                let (gt, ut) = (g.as_tensor(), u.as_tensor());
                let (y, h) = if fused {
                    (swiglu(gt, ut).unwrap(), gelu_erf(ut).unwrap())
                } else {
                    ((gt.silu().unwrap() * ut).unwrap(), ut.gelu_erf().unwrap())
                };
                let loss = ((&y * &coeffs).unwrap().sum_all().unwrap()
                    + (&h * &coeffs).unwrap().sqr().unwrap().sum_all().unwrap())
                .unwrap();
                let gs = loss.backward().unwrap();
                vals.push([f64s(&y), f64s(&h)]);
                grads.push([f64s(gs.get(&g).unwrap()), f64s(gs.get(&u).unwrap())]);
            }
            // candle's gelu_erf backward rounds 1/√(2π) to 0.398942 (7e-7
            // relative); the finite-difference test below checks ours exactly.
            let gelu_grad_tol = tol.max(1e-6);
            for (what, a, b, tol) in [
                ("swiglu", &vals[0][0], &vals[1][0], tol),
                ("gelu", &vals[0][1], &vals[1][1], tol),
                ("∂gate", &grads[0][0], &grads[1][0], tol),
                (
                    "∂up (swiglu + gelu)",
                    &grads[0][1],
                    &grads[1][1],
                    gelu_grad_tol,
                ),
            ] {
                let e = rel_l2(a, b);
                assert!(e < tol, "{what} {dtype:?}: rel L2 {e:e}");
            }
        }
    }

    /// The fused backward is the derivative: central finite differences of
    /// the f64 ops agree with the analytic gradients.
    #[test]
    fn gradients_match_finite_differences() {
        let dev = Device::Cpu;
        let g0: Vec<f64> = vec![-9.0, -2.5, -0.3, 0.0, 0.7, 3.1, 12.0];
        let u0: Vec<f64> = vec![0.4, -1.2, 2.0, 0.9, -0.6, 1.5, -0.2];
        let loss = |g: &[f64], u: &[f64]| -> f64 {
            let g = Tensor::new(g, &dev).unwrap();
            let u = Tensor::new(u, &dev).unwrap();
            let y = swiglu(&g, &u).unwrap();
            let h = gelu_erf(&g).unwrap();
            ((y.sqr().unwrap() + h).unwrap())
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let g = Var::new(g0.as_slice(), &dev).unwrap();
        let u = Var::new(u0.as_slice(), &dev).unwrap();
        let y = swiglu(g.as_tensor(), u.as_tensor()).unwrap();
        let h = gelu_erf(g.as_tensor()).unwrap();
        let grads = (y.sqr().unwrap() + h)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let dg = grads.get(&g).unwrap().to_vec1::<f64>().unwrap();
        let du = grads.get(&u).unwrap().to_vec1::<f64>().unwrap();
        let eps = 1e-6;
        for i in 0..g0.len() {
            let (mut gp, mut gm) = (g0.clone(), g0.clone());
            gp[i] += eps;
            gm[i] -= eps;
            let fd = (loss(&gp, &u0) - loss(&gm, &u0)) / (2.0 * eps);
            assert!(
                (fd - dg[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                "∂g[{i}] {fd} vs {}",
                dg[i]
            );
            let (mut up, mut um) = (u0.clone(), u0.clone());
            up[i] += eps;
            um[i] -= eps;
            let fd = (loss(&g0, &up) - loss(&g0, &um)) / (2.0 * eps);
            assert!(
                (fd - du[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                "∂u[{i}] {fd} vs {}",
                du[i]
            );
        }
    }
}
