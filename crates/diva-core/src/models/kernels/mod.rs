//! CPU kernels where candle's generic ones are the bottleneck. `rowwise` and
//! `rope` carry gradients (fused backward kernels, for `Exec::Autograd`); the
//! others are inference only.

pub mod fast_exp;
pub mod gelu;
pub mod rope;
pub mod rowwise;
pub mod softmax;

/// The elements of a contiguous storage view, or an error naming the kernel.
pub(crate) fn contiguous_slice<'a, T>(
    v: &'a [T],
    layout: &candle_core::Layout,
    kernel: &str,
) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{kernel}: input must be contiguous"),
    }
}
