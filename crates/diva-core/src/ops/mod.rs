//! CPU kernels where candle's generic ones are the bottleneck.
//!
//! `rowwise`, `rope`, `activations` and `attention` (through
//! `attention_with_grad`) carry gradients: fused backward kernels for
//! `Exec::Autograd`, each one graph node where candle's elementary ops would
//! be several, because candle's backward zero-fills and adds a gradient per
//! node on one thread. `gelu`, `softmax`, `few_rows`, `quant` (GGUF-block
//! weights times 8-bit activations, integer SIMD) and `quant_f32` (the same
//! blocks times f32 activations, expanded in registers) are inference only.

/// `$body` evaluated on the operands' elements as slices of one float type
/// (f32 or f64; bound to the same names as the storages), wrapped back into
/// a `CpuStorage`; an error naming kernel `$name` for other or mixed dtypes
/// and for non-contiguous layouts. Defined before the modules so they can
/// use it.
macro_rules! float_slices {
    ($name:expr, ($($s:ident, $l:ident),+) => $body:expr) => {
        match ($($s,)+) {
            ($(candle_core::CpuStorage::F32($s),)+) => {
                $(let $s = $crate::ops::contiguous_slice($s, $l, $name)?;)+
                candle_core::CpuStorage::F32($body)
            }
            ($(candle_core::CpuStorage::F64($s),)+) => {
                $(let $s = $crate::ops::contiguous_slice($s, $l, $name)?;)+
                candle_core::CpuStorage::F64($body)
            }
            _ => candle_core::bail!("{}: f32/f64 operands of one dtype only", $name),
        }
    };
}

pub mod activations;
pub mod attention;
pub mod fast_exp;
pub mod few_rows;
pub mod gelu;
pub mod quant;
pub mod quant_f32;
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

/// An error naming `kernel` unless all `layouts` have one shape.
pub(crate) fn same_shapes(
    kernel: &str,
    layouts: &[&candle_core::Layout],
) -> candle_core::Result<()> {
    let first = layouts[0].shape();
    if let Some(other) = layouts.iter().find(|l| l.shape() != first) {
        candle_core::bail!("{kernel}: shapes {first:?} and {:?} differ", other.shape());
    }
    Ok(())
}
