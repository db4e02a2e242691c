//! `y = x Wᵀ` for a few rows of `x` against a row-major `W` `[out, in]`:
//! the decode shape (one token per running sequence; inference only, no
//! gradient).
//!
//! GEMM libraries pack `W` into panels before multiplying; for 2–16 rows
//! that copy of every weight on every decode step cost more than the
//! product (perf of `diva serve` decoding 8 streams: 42% in `gemm`'s
//! packing, 25% in its microkernel). Here each task reads its rows of `W`
//! once, straight from memory, and takes the dot product with every row of
//! `x` while the weight row is in L1. Register tiles: 3 weight rows × 8
//! rows of `x` with AVX-512 (24 of its 32 registers accumulate), 3 × 4
//! with AVX2 + FMA (16 registers), a portable loop elsewhere; chosen at run
//! time (LLVM left to itself vectorised this 2 wide). With 8 rows each
//! weight byte feeds 16 FLOPs, enough work that the hardware prefetcher no
//! longer keeps ahead of the loads: the tiles prefetch the next tile's
//! weight rows themselves (8 streams over SmolLM2's weights, one thread:
//! 115 → 71 ms a step; one row: 46 ms either way).
//!
//! Each output is the same sum in the same order whatever the number of
//! rows (the row count only decides which tile shape computes a pair), so a
//! sequence's logits do not depend on what else is in its batch.

use rayon::prelude::*;

/// Largest row count this kernel is used for; more rows go to the GEMM.
pub const MAX_ROWS: usize = 16;

/// Output rows of `W` per parallel task.
const CHUNK: usize = 32;

/// The instruction set a product runs on; [`Isa::best`] is what
/// [`matmul_t`] uses. Sums differ between ISAs (lane counts), never within
/// one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// The widest this CPU runs.
    pub fn best() -> Isa {
        *Isa::available().last().unwrap_or(&Isa::Portable)
    }

    /// Every ISA this CPU runs, narrowest first; detected once (every
    /// product asks).
    pub fn available() -> &'static [Isa] {
        static ISAS: std::sync::OnceLock<Vec<Isa>> = std::sync::OnceLock::new();
        ISAS.get_or_init(|| {
            #[allow(unused_mut)]
            let mut v = vec![Isa::Portable];
            #[cfg(target_arch = "x86_64")]
            {
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    v.push(Isa::Avx2);
                    if is_x86_feature_detected!("avx512f") {
                        v.push(Isa::Avx512);
                    }
                }
            }
            v
        })
    }
}

/// `x` `[rows, d_in]`, `w` `[d_out, d_in]` (both row-major) → `[rows, d_out]`.
pub fn matmul_t(x: &[f32], rows: usize, w: &[f32], d_out: usize, d_in: usize) -> Vec<f32> {
    matmul_t_on(Isa::best(), x, rows, w, d_out, d_in)
}

/// [`matmul_t`] on a given ISA; panics if the CPU lacks it (use
/// [`Isa::available`]).
pub fn matmul_t_on(
    isa: Isa,
    x: &[f32],
    rows: usize,
    w: &[f32],
    d_out: usize,
    d_in: usize,
) -> Vec<f32> {
    assert_eq!(x.len(), rows * d_in, "few_rows: x is not [rows, d_in]");
    assert_eq!(w.len(), d_out * d_in, "few_rows: w is not [d_out, d_in]");
    assert!(
        Isa::available().contains(&isa),
        "few_rows: this CPU has no {isa:?}"
    );
    // Transposed result `[d_out, rows]`: each task owns a contiguous run.
    let mut yt = vec![0f32; d_out * rows];
    yt.par_chunks_mut(CHUNK * rows)
        .zip(w.par_chunks(CHUNK * d_in))
        .for_each(|(out, wc)| match isa {
            Isa::Portable => portable::block(wc, x, rows, d_in, out),
            // SAFETY: the CPU has AVX2 and FMA (asserted above through
            // `Isa::available`); the slices have the shapes asserted above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::block(wc, x, rows, d_in, out) },
            // SAFETY: the CPU has AVX-512F (as above); shapes as above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { avx512::block(wc, x, rows, d_in, out) },
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
    use super::prefetch_next_tile;
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
            if k % 16 == 0 {
                prefetch_next_tile::<RO>(wp, d_in, k);
            }
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

/// Every (weight row, x row) pair is one 16-lane accumulator over `k` in
/// steps of 16, reduced by `_mm512_reduce_add_ps`, plus the tail in order.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::prefetch_next_tile;
    use std::arch::x86_64::*;

    /// As [`super::avx2::block`], 16 lanes wide.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `wc.len()` a multiple of `d_in`,
    /// `x.len() == rows * d_in`, `out.len() >= wc.len() / d_in * rows`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn block(wc: &[f32], x: &[f32], rows: usize, d_in: usize, out: &mut [f32]) {
        let n_w = wc.len() / d_in;
        let mut o = 0;
        if rows == 1 {
            while o + 8 <= n_w {
                tile::<8, 1>(wc, x, rows, d_in, o, 0, out);
                o += 8;
            }
        } else {
            // 3 weight rows × 8 x rows: 24 accumulators + 3 weights + 1 x
            // of the 32 registers; one pass over the weights per 8 rows.
            while o + 3 <= n_w {
                let mut b = 0;
                while b + 8 <= rows {
                    tile::<3, 8>(wc, x, rows, d_in, o, b, out);
                    b += 8;
                }
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
        let mut acc = [[_mm512_setzero_ps(); RB]; RO];
        let wp = wc.as_ptr().add(o * d_in);
        let xp = x.as_ptr().add(b * d_in);
        let full = d_in / 16 * 16;
        let mut k = 0;
        while k < full {
            prefetch_next_tile::<RO>(wp, d_in, k);
            let mut ws = [_mm512_setzero_ps(); RO];
            for (i, v) in ws.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(wp.add(i * d_in + k));
            }
            for j in 0..RB {
                let xv = _mm512_loadu_ps(xp.add(j * d_in + k));
                for (i, row) in acc.iter_mut().enumerate() {
                    row[j] = _mm512_fmadd_ps(ws[i], xv, row[j]);
                }
            }
            k += 16;
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, a) in row.iter().enumerate() {
                let mut s = _mm512_reduce_add_ps(*a);
                for kk in full..d_in {
                    s += *wp.add(i * d_in + kk) * *xp.add(j * d_in + kk);
                }
                out[(o + i) * rows + b + j] = s;
            }
        }
    }
}

/// Asks for the cache line at column `k` of the `RO` weight rows after the
/// tile's own (the next tile's), a tile's worth of weights ahead of the
/// loads. A prefetch never faults, so past the end of `W` it is a no-op;
/// the address is formed with `wrapping_add` so it is never UB to compute.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_next_tile<const RO: usize>(wp: *const f32, d_in: usize, k: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    for i in 0..RO {
        // SAFETY: prefetching has no architectural effect besides the
        // cache and never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add((i + RO) * d_in + k) as *const i8) };
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
    use super::{matmul_t_on, Isa};

    #[test]
    fn every_isa_matches_a_plain_product_and_does_not_depend_on_the_row_count() {
        // Remainders in both loops, and row counts that use every tile
        // shape: 16 = 2×8, 15 = 8+4+2+1, 5 = 4+1.
        let (d_out, d_in) = (70, 77);
        let w: Vec<f32> = (0..d_out * d_in)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let isas = Isa::available();
        assert!(isas.contains(&Isa::best()));
        for &isa in isas {
            for rows in [1, 2, 5, 8, 15, 16] {
                let x: Vec<f32> = (0..rows * d_in)
                    .map(|i| ((i * 13 % 29) as f32 - 14.0) / 14.0)
                    .collect();
                let y = matmul_t_on(isa, &x, rows, &w, d_out, d_in);
                for b in 0..rows {
                    for o in 0..d_out {
                        let want: f64 = (0..d_in)
                            .map(|i| x[b * d_in + i] as f64 * w[o * d_in + i] as f64)
                            .sum();
                        let got = y[b * d_out + o] as f64;
                        assert!((got - want).abs() < 1e-4, "{isa:?} rows {rows}: {b},{o}");
                    }
                    // Row b alone gives bit-identical outputs.
                    let xb = &x[b * d_in..(b + 1) * d_in];
                    let alone = matmul_t_on(isa, xb, 1, &w, d_out, d_in);
                    assert_eq!(alone, y[b * d_out..(b + 1) * d_out], "{isa:?} rows {rows}");
                }
            }
        }
    }
}
