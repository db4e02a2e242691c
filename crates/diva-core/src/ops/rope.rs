//! Rotary embedding with a fused backward, for training on CPU, in both
//! pairings: HF's `rotate_half` (the first half of a head with the second)
//! and llama.cpp's adjacent pairs (its GGUF converter permutes the q/k rows
//! so that it can rotate neighbours; the attention scores are identical).
//!
//! candle's `rope` kernels have no gradient, and the elementary form (narrows,
//! four broadcast products, two sums, a concat or stack) costs about twenty
//! passes forward and backward for every query and key tensor of every LLM
//! layer. A rotation's transpose is the rotation by the opposite angle, so
//! the backward is the same kernel with `sin` negated.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use num_traits::Float;
use rayon::prelude::*;

/// Which elements of a head rotate together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairing {
    /// `i` with `i + d/2` (HF `rotate_half`).
    Halves,
    /// `2i` with `2i + 1` (llama.cpp / GGUF).
    Adjacent,
}

/// Whether [`rope`] handles `x` (otherwise use the elementary ops).
pub fn supported(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) && x.rank() == 4
}

/// Whether [`split_heads_rope`] handles `x` (otherwise split, then rotate
/// with [`rope`] or the elementary ops).
pub fn split_supported(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) && x.rank() == 3
}

/// Rotate `x` `[b, h, t, d]` by `cos`/`sin` `[t, d/2]`, differentiable in `x`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, pairing: Pairing) -> Result<Tensor> {
    let (_, _, t, d) = x.dims4()?;
    let op = RopeKernel::new(x, cos, sin, t, d, pairing, Layouts::Heads)?;
    x.contiguous()?.apply_op1(op)
}

/// Split a projection `x` `[b, t, n_head·d]` into heads and rotate them:
/// `[b, n_head, t, d]`, contiguous, differentiable in `x`.
///
/// The same function as [`rope`] of the reshaped, transposed, copied heads,
/// as one graph node: in training, each of those steps would be a node
/// whose gradient candle zero-fills and adds into, for the queries and keys
/// of every LLM layer. The backward rotates back and merges the heads in
/// one pass.
pub fn split_heads_rope(
    x: &Tensor,
    n_head: usize,
    cos: &Tensor,
    sin: &Tensor,
    pairing: Pairing,
) -> Result<Tensor> {
    let (_, t, width) = x.dims3()?;
    if n_head == 0 || width % n_head != 0 {
        candle_core::bail!("rope: {width} features do not split into {n_head} heads");
    }
    let layouts = Layouts::Split { n_head };
    let op = RopeKernel::new(x, cos, sin, t, width / n_head, pairing, layouts)?;
    x.contiguous()?.apply_op1(op)
}

/// Where a rotation reads from and writes to.
#[derive(Clone, Copy)]
enum Layouts {
    /// `[b, h, t, d]` → `[b, h, t, d]`.
    Heads,
    /// `[b, t, h·d]` → `[b, h, t, d]` (split into heads).
    Split { n_head: usize },
    /// `[b, h, t, d]` → `[b, t, h·d]` (merge heads: the split's backward).
    Merge,
}

struct RopeKernel {
    cos: Tensor,
    sin: Tensor,
    pairing: Pairing,
    layouts: Layouts,
}

impl RopeKernel {
    fn new(
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        t: usize,
        d: usize,
        pairing: Pairing,
        layouts: Layouts,
    ) -> Result<Self> {
        if !d.is_multiple_of(2) || cos.dims() != [t, d / 2] || sin.dims() != [t, d / 2] {
            candle_core::bail!(
                "rope: x {:?} needs cos/sin [{t}, {}], got {:?}/{:?}",
                x.dims(),
                d / 2,
                cos.dims(),
                sin.dims()
            );
        }
        Ok(Self {
            cos: cos.to_dtype(x.dtype())?.contiguous()?,
            sin: sin.to_dtype(x.dtype())?.contiguous()?,
            pairing,
            layouts,
        })
    }

    /// `(b, h, t, d)` of the rotation for an input of `dims`.
    fn sizes(&self, dims: &[usize]) -> Result<[usize; 4]> {
        let half = self.cos.dim(1)?;
        let sizes = match (self.layouts, dims) {
            (Layouts::Heads | Layouts::Merge, &[b, h, t, d]) => [b, h, t, d],
            (Layouts::Split { n_head }, &[b, t, w]) => [b, n_head, t, w / n_head],
            _ => candle_core::bail!("rope: unexpected input shape {dims:?}"),
        };
        if sizes[3] != 2 * half {
            candle_core::bail!("rope: head size {} for cos/sin of width {half}", sizes[3]);
        }
        Ok(sizes)
    }

    fn out_shape(&self, [b, h, t, d]: [usize; 4]) -> Shape {
        match self.layouts {
            Layouts::Merge => Shape::from((b, t, h * d)),
            _ => Shape::from((b, h, t, d)),
        }
    }
}

/// One head row `x` (length `d`) rotated into `y`: for each pair `(a, b)`,
/// `a' = a·c − b·s`, `b' = b·c + a·s`.
#[inline(always)]
fn rotate_row<T: Float>(x: &[T], y: &mut [T], c: &[T], s: &[T], pairing: Pairing) {
    let half = c.len();
    match pairing {
        Pairing::Halves => {
            let (x1, x2) = x.split_at(half);
            let (y1, y2) = y.split_at_mut(half);
            for i in 0..half {
                y1[i] = x1[i] * c[i] - x2[i] * s[i];
                y2[i] = x2[i] * c[i] + x1[i] * s[i];
            }
        }
        Pairing::Adjacent => {
            let pairs = y.chunks_exact_mut(2).zip(x.chunks_exact(2));
            for ((y, x), (&c, &s)) in pairs.zip(c.iter().zip(s)) {
                y[0] = x[0] * c - x[1] * s;
                y[1] = x[1] * c + x[0] * s;
            }
        }
    }
}

fn rotate<T: Float + Send + Sync>(
    x: &[T],
    cos: &[T],
    sin: &[T],
    [_, h, t, d]: [usize; 4],
    pairing: Pairing,
    layouts: Layouts,
) -> Vec<T> {
    let half = d / 2;
    let table = |p: usize| (&cos[p * half..][..half], &sin[p * half..][..half]);
    let mut y = vec![T::zero(); x.len()];
    match layouts {
        // Output chunks of one (batch, head): `t` rows of `d`.
        Layouts::Heads | Layouts::Split { .. } => {
            y.par_chunks_mut(t * d).enumerate().for_each(|(bh, y)| {
                let (bi, hi) = (bh / h, bh % h);
                super::with_best_simd(
                    #[inline(always)]
                    || {
                        for p in 0..t {
                            let src = match layouts {
                                Layouts::Heads => (bh * t + p) * d,
                                _ => ((bi * t + p) * h + hi) * d,
                            };
                            let (c, s) = table(p);
                            rotate_row(&x[src..][..d], &mut y[p * d..][..d], c, s, pairing);
                        }
                    },
                )
            })
        }
        // Output chunks of one (batch, position): `h` heads of `d`.
        Layouts::Merge => y.par_chunks_mut(h * d).enumerate().for_each(|(bp, y)| {
            let (bi, p) = (bp / t, bp % t);
            let (c, s) = table(p);
            super::with_best_simd(
                #[inline(always)]
                || {
                    for hi in 0..h {
                        let src = ((bi * h + hi) * t + p) * d;
                        rotate_row(&x[src..][..d], &mut y[hi * d..][..d], c, s, pairing);
                    }
                },
            )
        }),
    }
    y
}

impl CustomOp1 for RopeKernel {
    fn name(&self) -> &'static str {
        "diva-rope"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let sizes = self.sizes(layout.dims())?;
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
                sizes,
                self.pairing,
                self.layouts,
            )),
            (
                CpuStorage::F64(x),
                candle_core::Storage::Cpu(CpuStorage::F64(c)),
                candle_core::Storage::Cpu(CpuStorage::F64(s)),
            ) => CpuStorage::F64(rotate(
                super::contiguous_slice(x, layout, self.name())?,
                &c[cl.start_offset()..],
                &s[sl.start_offset()..],
                sizes,
                self.pairing,
                self.layouts,
            )),
            _ => candle_core::bail!("rope: f32/f64 on CPU, cos/sin of the input's dtype"),
        };
        Ok((out, self.out_shape(sizes)))
    }

    /// A rotation's transpose is the rotation by the opposite angle; a
    /// split's transpose is the merge.
    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let layouts = match self.layouts {
            Layouts::Split { .. } => Layouts::Merge,
            other => other,
        };
        let inverse = RopeKernel {
            cos: self.cos.clone(),
            sin: self.sin.neg()?,
            pairing: self.pairing,
            layouts,
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&inverse)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    /// The elementary forms of both pairings (as `llm::rope` falls back to).
    fn elementary(x: &Tensor, cos: &Tensor, sin: &Tensor, pairing: Pairing) -> Tensor {
        let (b, h, t, d) = x.dims4().unwrap();
        match pairing {
            Pairing::Halves => {
                let x1 = x.narrow(D::Minus1, 0, d / 2).unwrap();
                let x2 = x.narrow(D::Minus1, d / 2, d / 2).unwrap();
                let a = (x1.broadcast_mul(cos).unwrap() - x2.broadcast_mul(sin).unwrap()).unwrap();
                let b = (x2.broadcast_mul(cos).unwrap() + x1.broadcast_mul(sin).unwrap()).unwrap();
                Tensor::cat(&[a, b], D::Minus1).unwrap()
            }
            Pairing::Adjacent => {
                let pairs = x.reshape((b, h, t, d / 2, 2)).unwrap();
                let even = pairs
                    .narrow(D::Minus1, 0, 1)
                    .unwrap()
                    .squeeze(D::Minus1)
                    .unwrap();
                let odd = pairs
                    .narrow(D::Minus1, 1, 1)
                    .unwrap()
                    .squeeze(D::Minus1)
                    .unwrap();
                let e =
                    (even.broadcast_mul(cos).unwrap() - odd.broadcast_mul(sin).unwrap()).unwrap();
                let o =
                    (even.broadcast_mul(sin).unwrap() + odd.broadcast_mul(cos).unwrap()).unwrap();
                Tensor::stack(&[e, o], D::Minus1)
                    .unwrap()
                    .reshape((b, h, t, d))
                    .unwrap()
            }
        }
    }

    /// Values and input gradients of `rope` and `split_heads_rope` equal the
    /// elementary rotation (after reshape, transpose and copy for the split),
    /// in both pairings.
    #[test]
    fn matches_the_elementary_rotation_with_gradient() {
        let dev = Device::Cpu;
        let (b, t, h, d) = (2, 5, 3, 8);
        let angles = Tensor::randn(0f64, 2.0, (t, d / 2), &dev).unwrap();
        let (cos, sin) = (angles.cos().unwrap(), angles.sin().unwrap());
        let coeffs = Tensor::randn(0f64, 1.0, (b, h, t, d), &dev).unwrap();
        for pairing in [Pairing::Halves, Pairing::Adjacent] {
            let var = Var::randn(0f64, 1.0, (b, t, h * d), &dev).unwrap();
            let x = var.as_tensor();
            let heads = x
                .reshape((b, t, h, d))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap();
            let reference = elementary(&heads, &cos, &sin, pairing);
            let grad = |y: &Tensor| {
                let loss = (y * &coeffs).unwrap().sqr().unwrap().sum_all().unwrap();
                loss.backward().unwrap().get(&var).unwrap().clone()
            };
            for (what, y) in [
                ("rope", rope(&heads, &cos, &sin, pairing).unwrap()),
                (
                    "split",
                    split_heads_rope(x, h, &cos, &sin, pairing).unwrap(),
                ),
            ] {
                assert_eq!(y.dims(), &[b, h, t, d]);
                let ey = crate::testing::rel_l2(&y, &reference);
                let eg = crate::testing::rel_l2(&grad(&y), &grad(&reference));
                assert!(
                    ey < 1e-14 && eg < 1e-14,
                    "{what} {pairing:?}: value {ey:e}, grad {eg:e}"
                );
            }
        }
        let x = Tensor::zeros((b, t, h * d), DType::F64, &dev).unwrap();
        let err = split_heads_rope(&x, 5, &cos, &sin, Pairing::Halves)
            .unwrap_err()
            .to_string();
        assert!(err.contains("do not split"), "{err}");
    }
}
