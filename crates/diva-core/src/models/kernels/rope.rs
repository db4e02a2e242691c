//! Rotary embedding (HF `rotate_half` pairing) with a fused backward, for
//! training on CPU.
//!
//! candle's `rope` kernel has no gradient, and the elementary form (two
//! narrows, four broadcast products, two sums, a concat) costs about twenty
//! passes forward and backward for every query and key tensor of every LLM
//! layer. A rotation's transpose is the rotation by the opposite angle, so
//! the backward is the same kernel with `sin` negated.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use num_traits::Float;
use rayon::prelude::*;

/// Whether [`rope_half`] handles `x` (otherwise use the elementary ops).
pub fn supported(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) && x.rank() == 4
}

/// Rotate `x` `[b, h, t, d]` by `cos`/`sin` `[t, d/2]` (first half of the
/// last dimension paired with the second), differentiable in `x`.
pub fn rope_half(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (_, _, t, d) = x.dims4()?;
    if d % 2 != 0 || cos.dims() != [t, d / 2] || sin.dims() != [t, d / 2] {
        candle_core::bail!(
            "rope: x {:?} needs cos/sin [{t}, {}], got {:?}/{:?}",
            x.dims(),
            d / 2,
            cos.dims(),
            sin.dims()
        );
    }
    let op = RopeHalf {
        cos: cos.to_dtype(x.dtype())?.contiguous()?,
        sin: sin.to_dtype(x.dtype())?.contiguous()?,
    };
    x.contiguous()?.apply_op1(op)
}

struct RopeHalf {
    cos: Tensor,
    sin: Tensor,
}

fn rotate<T: Float + Send + Sync>(x: &[T], cos: &[T], sin: &[T], t: usize, d: usize) -> Vec<T> {
    let half = d / 2;
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(t * d)
        .zip(x.par_chunks(t * d))
        .for_each(|(y, x)| {
            super::with_best_simd(
                #[inline(always)]
                || {
                    for p in 0..t {
                        let (c, s) = (&cos[p * half..][..half], &sin[p * half..][..half]);
                        let (x, y) = (&x[p * d..][..d], &mut y[p * d..][..d]);
                        let (x1, x2) = x.split_at(half);
                        let (y1, y2) = y.split_at_mut(half);
                        for i in 0..half {
                            y1[i] = x1[i] * c[i] - x2[i] * s[i];
                            y2[i] = x2[i] * c[i] + x1[i] * s[i];
                        }
                    }
                },
            )
        });
    y
}

impl CustomOp1 for RopeHalf {
    fn name(&self) -> &'static str {
        "diva-rope-half"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, _, t, d) = layout.shape().dims4()?;
        let (cos, cl) = self.cos.storage_and_layout();
        let (sin, sl) = self.sin.storage_and_layout();
        let out = match (storage, &*cos, &*sin) {
            (
                CpuStorage::F32(x),
                candle_core::Storage::Cpu(CpuStorage::F32(c)),
                candle_core::Storage::Cpu(CpuStorage::F32(s)),
            ) => CpuStorage::F32(rotate(
                super::contiguous_slice(x, layout, self.name())?,
                &c[cl.start_offset()..],
                &s[sl.start_offset()..],
                t,
                d,
            )),
            (
                CpuStorage::F64(x),
                candle_core::Storage::Cpu(CpuStorage::F64(c)),
                candle_core::Storage::Cpu(CpuStorage::F64(s)),
            ) => CpuStorage::F64(rotate(
                super::contiguous_slice(x, layout, self.name())?,
                &c[cl.start_offset()..],
                &s[sl.start_offset()..],
                t,
                d,
            )),
            _ => candle_core::bail!("rope: f32/f64 on CPU, cos/sin of the input's dtype"),
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let inverse = RopeHalf {
            cos: self.cos.clone(),
            sin: self.sin.neg()?,
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&inverse)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    /// Values and the input gradient equal the elementary `rotate_half` form.
    #[test]
    fn matches_the_elementary_rotation_with_gradient() {
        let dev = Device::Cpu;
        let (t, d) = (5, 8);
        let angles = Tensor::randn(0f64, 2.0, (t, d / 2), &dev).unwrap();
        let (cos, sin) = (angles.cos().unwrap(), angles.sin().unwrap());
        let var = Var::from_tensor(&Tensor::randn(0f64, 1.0, (2, 3, t, d), &dev).unwrap()).unwrap();
        let coeffs = Tensor::randn(0f64, 1.0, (2, 3, t, d), &dev).unwrap();
        let x = var.as_tensor();
        let elementary = {
            let x1 = x.narrow(D::Minus1, 0, d / 2).unwrap();
            let x2 = x.narrow(D::Minus1, d / 2, d / 2).unwrap();
            let a = (x1.broadcast_mul(&cos).unwrap() - x2.broadcast_mul(&sin).unwrap()).unwrap();
            let b = (x2.broadcast_mul(&cos).unwrap() + x1.broadcast_mul(&sin).unwrap()).unwrap();
            Tensor::cat(&[a, b], D::Minus1).unwrap()
        };
        let fused = rope_half(x, &cos, &sin).unwrap();
        let grad = |y: &Tensor| {
            let loss = (y * &coeffs).unwrap().sqr().unwrap().sum_all().unwrap();
            loss.backward().unwrap().get(&var).unwrap().clone()
        };
        let ey = crate::testing::rel_l2(&fused, &elementary);
        let eg = crate::testing::rel_l2(&grad(&fused), &grad(&elementary));
        assert!(ey < 1e-14 && eg < 1e-14, "value {ey:e}, grad {eg:e}");
    }
}
