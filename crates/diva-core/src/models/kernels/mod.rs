//! CPU kernels where candle's generic ones are the bottleneck.
//!
//! `rowwise`, `rope`, `activations` and `attention` (through
//! `attention_with_grad`) carry gradients: fused backward kernels for
//! `Exec::Autograd`, each one graph node where candle's elementary ops would
//! be several, because candle's backward zero-fills and adds a gradient per
//! node on one thread. `gelu` and `softmax` are inference only.

pub mod activations;
pub mod attention;
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

/// Run `f` compiled for the widest SIMD level this CPU has, detected at run
/// time (AVX2 + FMA on x86-64 where present, NEON on aarch64).
///
/// diva is built for baseline x86-64 so one binary runs anywhere, and there
/// the kernels' loops auto-vectorise to 4-wide SSE2 only. `f` and everything
/// it calls must be `#[inline(always)]` to be compiled inside the dispatched
/// function; call this per task or per row, inside the parallel loop (rayon's
/// closures are separate functions).
#[inline(always)]
pub(crate) fn with_best_simd<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}
