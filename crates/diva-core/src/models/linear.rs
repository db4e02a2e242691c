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
//! backward pass for the input only.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};

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

impl FrozenMatmul {
    fn run<S: BackendStorage>(
        &self,
        x: &S,
        x_layout: &Layout,
        w: &S,
        w_layout: &Layout,
    ) -> Result<(S, Shape)> {
        let (m, k) = x_layout.shape().dims2()?;
        let n = w_layout.shape().dims()[0];
        let wt = w_layout.transpose(0, 1)?;
        Ok((
            x.matmul(w, (1, m, n, k), x_layout, &wt)?,
            Shape::from((m, n)),
        ))
    }
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (w, wl) = self.weight.storage_and_layout();
        match &*w {
            Storage::Cpu(w) => self.run(x, layout, w, wl),
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
            Storage::Cuda(w) => self.run(x, layout, w, wl),
            _ => candle_core::bail!("frozen matmul: weight and input on different devices"),
        }
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.weight)?))
    }
}
