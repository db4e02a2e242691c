//! CPU kernels where candle's generic ones are the bottleneck. `rowwise` and
//! `rope` carry gradients (fused backward kernels, for `Exec::Autograd`); the
//! others are inference only.

pub mod fast_exp;
pub mod gelu;
pub mod rope;
pub mod rowwise;
pub mod softmax;
