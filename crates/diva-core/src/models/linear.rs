//! A dense layer `y = x Wᵀ + b` (torch `nn.Linear` layout, W `[out, in]`).
//!
//! Unlike `candle_nn::Linear`, inputs with leading batch dimensions are
//! flattened into one 2-D matmul: candle's batched path broadcasts W per batch
//! and ran ~1.8× slower on the Whisper encoder's `[1, 1500, 384]` shapes.
//! Only differentiable ops are used, so the same layer serves training.
//!
//! Training sends gradients *through* the frozen LLM to the connector. candle's
//! matmul backward always computes both operand gradients, so every frozen
//! weight would also get a `[out, in]` gradient nobody reads: a third matmul
//! per layer and a weight-sized buffer. When the input carries a gradient and
//! the weight does not, [`FrozenMatmul`] computes the same product with a
//! backward pass for the input only. The converse case, a trainable weight on
//! a constant input (the connector's cross-attention keys and values of the
//! frozen encoder's states), goes through [`ConstInputMatmul`], whose backward
//! skips the `[b·1500, d]` gradient of the encoder states.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Storage, Tensor};

#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let d_in = *dims.last().unwrap_or(&1);
        let rows = x.elem_count() / d_in.max(1);
        let x2 = x.reshape((rows, d_in))?;
        let y = if x2.track_op() && !self.weight.track_op() {
            x2.apply_op1(FrozenMatmul::new(&self.weight, &x2)?)?
        } else if !x2.track_op() && self.weight.track_op() {
            x2.apply_op2(&self.weight, ConstInputMatmul)?
        } else {
            x2.matmul(&self.weight.t()?)?
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out = dims;
        *out.last_mut().unwrap_or(&mut 0) = self.weight.dim(0)?;
        y.reshape(out)
    }
}

impl candle_core::Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Linear::forward(self, x)
    }
}

/// `x Wᵀ` for a frozen `W`: backward returns `∂x = ∂y · W` only.
pub struct FrozenMatmul {
    weight: Tensor,
}

impl FrozenMatmul {
    fn new(weight: &Tensor, x: &Tensor) -> Result<Self> {
        if weight.rank() != 2 || x.rank() != 2 || weight.dim(1)? != x.dim(1)? {
            candle_core::bail!(
                "frozen matmul: input {:?} does not fit weight {:?}",
                x.dims(),
                weight.dims()
            );
        }
        let weight = weight.to_dtype(x.dtype())?.to_device(x.device())?;
        Ok(Self { weight })
    }
}

/// `x Wᵀ` on storages: `x` `[m, k]`, `W` `[n, k]`.
fn matmul_xwt<S: BackendStorage>(
    x: &S,
    x_layout: &Layout,
    w: &S,
    w_layout: &Layout,
) -> Result<(S, Shape)> {
    let (m, k) = x_layout.shape().dims2()?;
    let (n, kw) = w_layout.shape().dims2()?;
    if k != kw {
        candle_core::bail!("matmul: input [{m}, {k}] does not fit weight [{n}, {kw}]");
    }
    let wt = w_layout.transpose(0, 1)?;
    Ok((
        x.matmul(w, (1, m, n, k), x_layout, &wt)?,
        Shape::from((m, n)),
    ))
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (w, wl) = self.weight.storage_and_layout();
        match &*w {
            Storage::Cpu(w) => matmul_xwt(x, layout, w, wl),
            _ => candle_core::bail!("frozen matmul: weight and input on different devices"),
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (w, wl) = self.weight.storage_and_layout();
        match &*w {
            Storage::Cuda(w) => matmul_xwt(x, layout, w, wl),
            _ => candle_core::bail!("frozen matmul: weight and input on different devices"),
        }
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.weight)?))
    }
}

/// `x Wᵀ` for a constant `x` and a trainable `W`: backward returns
/// `∂W = ∂yᵀ · x` only.
pub struct ConstInputMatmul;

impl CustomOp2 for ConstInputMatmul {
    fn name(&self) -> &'static str {
        "const-input-matmul"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        w: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        matmul_xwt(x, xl, w, wl)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        xl: &Layout,
        w: &candle_core::CudaStorage,
        wl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        matmul_xwt(x, xl, w, wl)
    }

    fn bwd(
        &self,
        x: &Tensor,
        _w: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((None, Some(grad.t()?.matmul(x)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    /// Each special-cased product gives the value and the gradients of the
    /// plain matmul for the operand that is trained.
    #[test]
    fn frozen_weight_and_const_input_paths_match_plain_matmul() {
        let dev = Device::Cpu;
        let x0 = Tensor::randn(0f64, 1.0, (2, 5, 4), &dev).unwrap();
        let w0 = Tensor::randn(0f64, 1.0, (3, 4), &dev).unwrap();
        let b0 = Tensor::randn(0f64, 1.0, 3, &dev).unwrap();
        let coeffs = Tensor::randn(0f64, 1.0, (2, 5, 3), &dev).unwrap();
        let loss = |y: &Tensor| (y * &coeffs).unwrap().sqr().unwrap().sum_all().unwrap();
        let plain = |x: &Tensor, w: &Tensor| {
            x.broadcast_matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(&b0)
                .unwrap()
        };
        // Trainable weight, constant input.
        let w = Var::from_tensor(&w0).unwrap();
        let layer = Linear::new(w.as_tensor().clone(), Some(b0.clone()));
        let y = layer.forward(&x0).unwrap();
        let yp = plain(&x0, w.as_tensor());
        let g = loss(&y).backward().unwrap();
        let gp = loss(&yp).backward().unwrap();
        assert!(crate::testing::rel_l2(&y, &yp) < 1e-14);
        let (gw, gwp) = (g.get(&w).unwrap(), gp.get(&w).unwrap());
        assert!(crate::testing::rel_l2(gw, gwp) < 1e-14);
        // Frozen weight, trainable input.
        let x = Var::from_tensor(&x0).unwrap();
        let layer = Linear::new(w0.clone(), Some(b0.clone()));
        let g = loss(&layer.forward(x.as_tensor()).unwrap())
            .backward()
            .unwrap();
        let gp = loss(&plain(x.as_tensor(), &w0)).backward().unwrap();
        let (gx, gxp) = (g.get(&x).unwrap(), gp.get(&x).unwrap());
        assert!(crate::testing::rel_l2(gx, gxp) < 1e-14);
        assert_eq!(gx.dtype(), DType::F64);
    }
}
