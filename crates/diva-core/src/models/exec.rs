//! How a forward pass executes: fast fused kernels, or differentiable ops.
//!
//! Candle's fused `layer_norm`, `rms_norm`, `softmax_last_dim`, `rope*` and
//! `sdpa` carry no gradient and silently cut the graph. Anything a loss flows
//! through (the connector, the LLM) must run in [`Exec::Autograd`]; frozen,
//! inference-only paths use [`Exec::Fused`]. Both compute the same function.
//! On CPU (f32/f64) the autograd norms and softmax are fused kernels with
//! their own backward (`ops::rowwise`); elsewhere they are elementary ops.

use candle_core::{DType, Result, Tensor, D};

use crate::ops::rowwise;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Exec {
    /// Fused kernels; no gradient.
    #[default]
    Fused,
    /// Elementary differentiable ops only.
    Autograd,
}

/// The dtype elementwise normalisations compute in: f32 for half types, as
/// the fused kernels do internally.
pub fn compute_dtype(dtype: DType) -> DType {
    if matches!(dtype, DType::F16 | DType::BF16) {
        DType::F32
    } else {
        dtype
    }
}

pub use crate::ops::attention::causal_mask;

/// LayerNorm over the last dimension with affine weight and bias.
pub fn layer_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    exec: Exec,
) -> Result<Tensor> {
    // candle's fused kernel has no f64 path; f64 is for gradient checks only.
    let exec = if x.dtype() == DType::F64 {
        Exec::Autograd
    } else {
        exec
    };
    match exec {
        Exec::Fused => candle_nn::ops::layer_norm(&x.contiguous()?, weight, bias, eps as f32),
        Exec::Autograd => {
            let dtype = x.dtype();
            let work = compute_dtype(dtype);
            let x = x.to_dtype(work)?;
            if rowwise::supported(&x) {
                // One fused pass each way; the affine part stays differentiable candle ops.
                let normed = rowwise::standardize(&x, eps)?.to_dtype(dtype)?;
                return normed.broadcast_mul(weight)?.broadcast_add(bias);
            }
            let mean = x.mean_keepdim(D::Minus1)?;
            let centred = x.broadcast_sub(&mean)?;
            let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
            let normed = centred
                .broadcast_div(&(var + eps)?.sqrt()?)?
                .to_dtype(dtype)?;
            normed.broadcast_mul(weight)?.broadcast_add(bias)
        }
    }
}

/// Softmax over the last dimension.
/// Half-precision inputs are normalised in f32: candle's CPU softmax
/// exponentiates in the input dtype, which costs ~1e-2 relative error in bf16
/// and compounds through a 30 s attention window.
pub fn softmax_last(x: &Tensor, exec: Exec) -> Result<Tensor> {
    let dtype = x.dtype();
    if matches!(dtype, DType::F16 | DType::BF16) {
        return softmax_last(&x.to_dtype(DType::F32)?, exec)?.to_dtype(dtype);
    }
    match exec {
        Exec::Fused => crate::ops::rowwise::softmax_last_dim(x),
        Exec::Autograd if rowwise::supported(x) => rowwise::softmax(x),
        Exec::Autograd => {
            let max = x.max_keepdim(D::Minus1)?.detach();
            let e = x.broadcast_sub(&max)?.exp()?;
            e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn both_modes_compute_the_same_function() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 3.0, (2, 5, 16), &dev).unwrap();
        let w = Tensor::randn(1f32, 0.1, 16, &dev).unwrap();
        let b = Tensor::randn(0f32, 0.1, 16, &dev).unwrap();
        let f = layer_norm(&x, &w, &b, 1e-5, Exec::Fused).unwrap();
        let a = layer_norm(&x, &w, &b, 1e-5, Exec::Autograd).unwrap();
        assert!(
            crate::testing::rel_l2(
                &a.to_dtype(DType::F64).unwrap(),
                &f.to_dtype(DType::F64).unwrap()
            ) < 1e-6
        );
        let f = softmax_last(&x, Exec::Fused).unwrap();
        let a = softmax_last(&x, Exec::Autograd).unwrap();
        assert!(
            crate::testing::rel_l2(
                &a.to_dtype(DType::F64).unwrap(),
                &f.to_dtype(DType::F64).unwrap()
            ) < 1e-6
        );
    }

    #[test]
    fn autograd_mode_carries_gradients_and_fused_mode_does_not() {
        // This documents the trap: the fused kernels cut the graph.
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 8), &dev).unwrap()).unwrap();
        let w = Tensor::ones(8, DType::F32, &dev).unwrap();
        let b = Tensor::zeros(8, DType::F32, &dev).unwrap();
        let coeffs = Tensor::randn(0f32, 1.0, (3, 8), &dev).unwrap();
        for exec in [Exec::Autograd, Exec::Fused] {
            let y = softmax_last(
                &layer_norm(x.as_tensor(), &w, &b, 1e-5, exec).unwrap(),
                exec,
            )
            .unwrap();
            let loss = (y * &coeffs).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            assert_eq!(grads.get(&x).is_some(), exec == Exec::Autograd, "{exec:?}");
        }
    }
}
