//! A dense layer `y = x Wᵀ + b` (torch `nn.Linear` layout, W `[out, in]`).
//!
//! Unlike `candle_nn::Linear`, inputs with leading batch dimensions are
//! flattened into one 2-D matmul: candle's batched path broadcasts W per batch
//! and ran ~1.8× slower on the Whisper encoder's `[1, 1500, 384]` shapes.
//! Only differentiable ops are used, so the same layer serves training.

use candle_core::{Result, Tensor};

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
        let y = x.reshape((rows, d_in))?.matmul(&self.weight.t()?)?;
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
