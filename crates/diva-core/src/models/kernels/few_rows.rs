//! `y = x Wᵀ` for a few rows of `x` against a row-major `W` `[out, in]`:
//! the decode shape (one token per running sequence; inference only, no
//! gradient).
//!
//! GEMM libraries pack `W` into panels before multiplying; for 2–16 rows
//! that copy of every weight on every decode step cost more than the
//! product (perf of `diva serve` decoding 8 streams: 42% in `gemm`'s
//! packing, 25% in its microkernel). Here each task reads its rows of `W`
//! once, straight from memory, and takes the dot product with every row of
//! `x` while the weight row is in L1: register tiles of 3 weight rows × 4
//! rows of `x` (AVX2 + FMA intrinsics, detected at run time; a portable
//! loop elsewhere; LLVM left to itself vectorised this 2 wide). Each output
//! is the same sum in the same order whatever the number of rows, so a
//! sequence's logits do not depend on what else is in its batch.

use rayon::prelude::*;

/// Largest row count this kernel is used for; more rows go to the GEMM.
pub const MAX_ROWS: usize = 16;

/// Output rows of `W` per parallel task.
const CHUNK: usize = 32;

/// `x` `[rows, d_in]`, `w` `[d_out, d_in]` (both row-major) → `[rows, d_out]`.
pub fn matmul_t(x: &[f32], rows: usize, w: &[f32], d_out: usize, d_in: usize) -> Vec<f32> {
    assert_eq!(x.len(), rows * d_in, "few_rows: x is not [rows, d_in]");
    assert_eq!(w.len(), d_out * d_in, "few_rows: w is not [d_out, d_in]");
    // Transposed result `[d_out, rows]`: each task owns a contiguous run.
    let mut yt = vec![0f32; d_out * rows];
    #[cfg(target_arch = "x86_64")]
    let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    yt.par_chunks_mut(CHUNK * rows)
        .zip(w.par_chunks(CHUNK * d_in))
        .for_each(|(out, wc)| {
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                unsafe { avx2::block(wc, x, rows, d_in, out) };
                return;
            }
            portable::block(wc, x, rows, d_in, out);
        });
    let mut y = vec![0f32; rows * d_out];
    for o in 0..d_out {
        for b in 0..rows {
            y[b * d_out + o] = yt[o * rows + b];
        }
    }
    y
}

/// Every (weight row, x row) pair is one 8-lane accumulator over `k` in
/// steps of 8, summed across lanes in a fixed order, plus the tail in
/// order; the blocking only decides how many pairs are in flight, so the
/// result of a pair is the same bits in every block shape.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// `wc`: whole weight rows; `out[o * rows + b]` = row `o` · `x` row `b`.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `wc.len()` a multiple of `d_in`,
    /// `x.len() == rows * d_in`, `out.len() >= wc.len() / d_in * rows`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn block(wc: &[f32], x: &[f32], rows: usize, d_in: usize, out: &mut [f32]) {
        let n_w = wc.len() / d_in;
        let mut o = 0;
        if rows == 1 {
            // One x row: more weight rows in flight instead (bandwidth).
            while o + 8 <= n_w {
                tile::<8, 1>(wc, x, rows, d_in, o, 0, out);
                o += 8;
            }
        } else {
            // 3 weight rows × 4 x rows: 12 accumulators, 7 loads per 12
            // FMAs (AVX2 has 16 vector registers).
            while o + 3 <= n_w {
                let mut b = 0;
                while b + 4 <= rows {
                    tile::<3, 4>(wc, x, rows, d_in, o, b, out);
                    b += 4;
                }
                while b + 2 <= rows {
                    tile::<3, 2>(wc, x, rows, d_in, o, b, out);
                    b += 2;
                }
                if b < rows {
                    tile::<3, 1>(wc, x, rows, d_in, o, b, out);
                }
                o += 3;
            }
        }
        while o < n_w {
            for b in 0..rows {
                tile::<1, 1>(wc, x, rows, d_in, o, b, out);
            }
            o += 1;
        }
    }

    /// # Safety
    /// As [`block`], with weight rows `o..o + RO` and x rows `b..b + RB` in
    /// range: every pointer read below stays inside `wc` and `x`.
    #[inline(always)]
    unsafe fn tile<const RO: usize, const RB: usize>(
        wc: &[f32],
        x: &[f32],
        rows: usize,
        d_in: usize,
        o: usize,
        b: usize,
        out: &mut [f32],
    ) {
        let mut acc = [[_mm256_setzero_ps(); RB]; RO];
        let wp = wc.as_ptr().add(o * d_in);
        let xp = x.as_ptr().add(b * d_in);
        let full = d_in / 8 * 8;
        let mut k = 0;
        while k < full {
            let mut xs = [_mm256_setzero_ps(); RB];
            for (j, v) in xs.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(xp.add(j * d_in + k));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let wv = _mm256_loadu_ps(wp.add(i * d_in + k));
                for (j, a) in row.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(wv, xs[j], *a);
                }
            }
            k += 8;
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, a) in row.iter().enumerate() {
                let mut lanes = [0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), *a);
                let mut s = super::reduce8(lanes);
                for kk in full..d_in {
                    s += *wp.add(i * d_in + kk) * *xp.add(j * d_in + kk);
                }
                out[(o + i) * rows + b + j] = s;
            }
        }
    }
}

/// The same sums without SIMD intrinsics (other CPUs).
mod portable {
    pub fn block(wc: &[f32], x: &[f32], rows: usize, d_in: usize, out: &mut [f32]) {
        let full = d_in / 8 * 8;
        for (o, wrow) in wc.chunks_exact(d_in).enumerate() {
            for b in 0..rows {
                let xrow = &x[b * d_in..(b + 1) * d_in];
                let mut lanes = [0f32; 8];
                for (wv, xv) in wrow[..full]
                    .chunks_exact(8)
                    .zip(xrow[..full].chunks_exact(8))
                {
                    for l in 0..8 {
                        lanes[l] = wv[l].mul_add(xv[l], lanes[l]);
                    }
                }
                let mut s = super::reduce8(lanes);
                for k in full..d_in {
                    s += wrow[k] * xrow[k];
                }
                out[o * rows + b] = s;
            }
        }
    }
}

/// Lanes summed pairwise: (0+4, 1+5, 2+6, 3+7), then halves, then the pair.
#[inline(always)]
fn reduce8(l: [f32; 8]) -> f32 {
    let a = [l[0] + l[4], l[1] + l[5], l[2] + l[6], l[3] + l[7]];
    let b = [a[0] + a[2], a[1] + a[3]];
    b[0] + b[1]
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_a_plain_product_and_does_not_depend_on_the_row_count() {
        let (d_out, d_in) = (70, 77); // remainders in both loops
        let w: Vec<f32> = (0..d_out * d_in)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let x: Vec<f32> = (0..5 * d_in)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) / 14.0)
            .collect();
        let y = super::matmul_t(&x, 5, &w, d_out, d_in);
        for b in 0..5 {
            for o in 0..d_out {
                let want: f64 = (0..d_in)
                    .map(|i| x[b * d_in + i] as f64 * w[o * d_in + i] as f64)
                    .sum();
                assert!((y[b * d_out + o] as f64 - want).abs() < 1e-4, "{b},{o}");
            }
            // Row b alone gives bit-identical outputs.
            let alone = super::matmul_t(&x[b * d_in..(b + 1) * d_in], 1, &w, d_out, d_in);
            assert_eq!(alone, y[b * d_out..(b + 1) * d_out]);
        }
    }
}
