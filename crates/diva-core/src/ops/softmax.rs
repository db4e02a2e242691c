//! Softmax row kernels for contiguous f32: rows in parallel, max / exp /
//! normalise in three passes with [`super::fast_exp`]. A leaf: the tensor op
//! over them (with its backward, and candle's kernel for other dtypes and
//! devices) is `rowwise::softmax_last_dim` / `rowwise::softmax`.

use rayon::prelude::*;

use super::fast_exp;

/// Softmax of each length-`n` row of `src` into `dst`, rows in parallel.
pub(crate) fn softmax_rows(src: &[f32], dst: &mut [f32], n: usize) {
    dst.par_chunks_mut(n)
        .zip(src.par_chunks(n))
        .for_each(|(d, s)| {
            super::with_best_simd(
                #[inline(always)]
                || {
                    // Separate passes with no loop-carried float dependency, so
                    // each one vectorises (a running `sum +=` would serialise the exp).
                    let max = finite_max(s);
                    for (o, &v) in d.iter_mut().zip(s) {
                        *o = fast_exp::exp(v - max);
                    }
                    normalize(d);
                },
            )
        });
}

/// Softmax of one row, in place (serial: callers parallelise over rows).
#[inline]
pub(crate) fn softmax_in_place(row: &mut [f32]) {
    super::with_best_simd(
        #[inline(always)]
        || {
            let max = finite_max(row);
            for v in row.iter_mut() {
                *v = fast_exp::exp(*v - max);
            }
            normalize(row);
        },
    )
}

/// The row maximum, or 0 for an all-masked (−∞) row so `exp` stays NaN-free.
#[inline(always)]
fn finite_max(x: &[f32]) -> f32 {
    let max = max8(x);
    if max.is_finite() {
        max
    } else {
        0.0
    }
}

/// Scale a row of exponentials to sum to one.
#[inline(always)]
fn normalize(row: &mut [f32]) {
    let inv = 1.0 / sum8(row);
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// Sum with 8 independent accumulators, so the loop vectorises.
#[inline(always)]
fn sum8(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        let c: &[f32; 8] = c.try_into().expect("chunks_exact(8)");
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Max with 8 independent accumulators (NaN-free input assumed; a NaN row
/// stays NaN through the exp pass anyway).
#[inline(always)]
fn max8(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        let c: &[f32; 8] = c.try_into().expect("chunks_exact(8)");
        for i in 0..8 {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    acc.iter().copied().fold(tail, f32::max)
}
