//! `y = x Wᵀ` with `W` kept in its GGUF blocks (Q4_0, Q4_1, Q5_0, Q5_1,
//! Q8_0) and `x` in f32: each block is expanded to f32 in registers and
//! multiplied in f32 (inference only, no gradient).
//!
//! The weights are the dequantized values bit for bit (`d·q`, or
//! `d·q + m` rounded once, as candle's `dequantize`; `d·q` is exact in f32),
//! and the activations are not quantized, so the result is the f32 product
//! of the dense path within f32 rounding of the sum; only the order of the
//! sum differs. What it saves is memory traffic: a Q4_1 weight is 5 bits
//! read instead of 32, which is what bounds a decode step and a short
//! prefill (a spoken turn's ~40 rows) on the dense path.
//!
//! Below [`PANEL_MIN_ROWS`] rows (decode, batched decode, a short turn) the
//! blocks are expanded in registers and the sum is the same on every ISA: a
//! (weight row, x row) pair has 16 f32 lanes, lane `j` accumulating, block
//! after block, element `j` then element `16 + j` of the block with one FMA
//! each; the lanes are reduced in a fixed tree at the end. AVX-512 holds
//! the 16 lanes in one register, AVX2 in two, the portable path in an array
//! with `mul_add`; a row's result does not depend on how many rows (below
//! the threshold) are multiplied with it. From [`PANEL_MIN_ROWS`] rows on
//! (a prompt), the expansion would be redone for every tile of x rows, so
//! instead each task expands a panel of [`PANEL`] weight rows once into an
//! f32 scratch buffer and multiplies all rows with it on the `gemm` crate's
//! f32 kernel: the dense path's arithmetic, without its 4 bytes a weight.

use rayon::prelude::*;

use super::few_rows::Isa;
use super::quant::{QMatrix, QType, BLOCK};

/// Output rows of `W` per parallel task.
const CHUNK: usize = 16;

/// x rows per tile (one expansion of a weight block serves them all).
const TILE_ROWS: usize = 8;

/// From this many x rows on, panels of expanded weights and `gemm`.
pub const PANEL_MIN_ROWS: usize = 16;

/// Weight rows per expanded panel (and parallel task) of the prompt path.
pub const PANEL: usize = 32;

thread_local! {
    /// A task's expanded panel, reused across products.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `y`'s base pointer, shared by tasks that write disjoint columns.
struct Out(*mut f32);
// SAFETY: each task writes only its own panel's columns of `y`, which
// outlives the parallel loop.
unsafe impl Sync for Out {}
impl Out {
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// The ISAs this kernel runs on this CPU, narrowest first: the SIMD paths
/// also need F16C (the blocks' scales are f16).
pub fn available() -> &'static [Isa] {
    static ISAS: std::sync::OnceLock<Vec<Isa>> = std::sync::OnceLock::new();
    ISAS.get_or_init(|| {
        #[allow(unused_mut)]
        let mut v = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("f16c") {
            v.extend(Isa::available().iter().filter(|i| **i != Isa::Portable));
        }
        v
    })
}

/// Whether this kernel runs blocks of `ty` (the 32-value types).
pub fn supports(ty: QType) -> bool {
    matches!(
        ty,
        QType::Q4_0 | QType::Q4_1 | QType::Q5_0 | QType::Q5_1 | QType::Q8_0
    )
}

/// `x` `[rows, d_in]` (row-major) times `wᵀ` → `[rows, d_out]`.
pub fn matmul_t(x: &[f32], rows: usize, w: &QMatrix) -> Vec<f32> {
    matmul_t_on(*available().last().unwrap_or(&Isa::Portable), x, rows, w)
}

/// [`matmul_t`] on a given ISA; panics if the CPU lacks it, or for fewer
/// than [`PANEL_MIN_ROWS`] rows if `w` is not a type of [`supports`] (the
/// panel path takes every type: K-quants expand through candle's
/// `to_float`).
pub fn matmul_t_on(isa: Isa, x: &[f32], rows: usize, w: &QMatrix) -> Vec<f32> {
    assert!(
        available().contains(&isa),
        "quant_f32: this CPU has no {isa:?}"
    );
    assert_eq!(x.len(), rows * w.d_in, "quant_f32: x is not [rows, d_in]");
    if rows >= PANEL_MIN_ROWS {
        return panels(isa, x, rows, w);
    }
    assert!(
        supports(w.ty),
        "quant_f32: {:?} blocks below {PANEL_MIN_ROWS} rows",
        w.ty
    );
    let mut yt = vec![0f32; w.d_out * rows];
    yt.par_chunks_mut(CHUNK * rows)
        .enumerate()
        .for_each(|(c, out)| {
            let o0 = c * CHUNK;
            let n_out = out.len() / rows.max(1);
            match isa {
                Isa::Portable => portable::chunk(w, o0, n_out, x, rows, out),
                // SAFETY: `available` (asserted above) found AVX2, FMA and
                // F16C; `w` is a supported type and `x` is `[rows, d_in]`.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => unsafe { x86::chunk_avx2(w, o0, n_out, x, rows, out) },
                // SAFETY: as above, with AVX-512F.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => unsafe { x86::chunk_avx512(w, o0, n_out, x, rows, out) },
            }
        });
    if rows == 1 {
        return yt;
    }
    let mut y = vec![0f32; rows * w.d_out];
    for o in 0..w.d_out {
        for b in 0..rows {
            y[b * w.d_out + o] = yt[o * rows + b];
        }
    }
    y
}

/// The prompt path: per task, [`PANEL`] weight rows expanded into f32 and
/// multiplied with every x row by `gemm` (one thread each; the tasks are
/// the parallelism).
fn panels(isa: Isa, x: &[f32], rows: usize, w: &QMatrix) -> Vec<f32> {
    let (d_out, d_in) = (w.d_out, w.d_in);
    let mut y = vec![0f32; rows * d_out];
    let out = Out(y.as_mut_ptr());
    (0..d_out.div_ceil(PANEL)).into_par_iter().for_each(|p| {
        let o0 = p * PANEL;
        let n = PANEL.min(d_out - o0);
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.resize(n * d_in, 0.0);
            match isa {
                _ if !supports(w.ty) => w.dequantize_rows(o0, n, &mut s),
                Isa::Portable => portable::expand(w, o0, n, &mut s),
                // SAFETY: `available` found AVX2, FMA and F16C (asserted by
                // the caller); rows `o0..o0 + n` exist; `s` holds `n·d_in`.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => unsafe { x86::expand_avx2(w, o0, n, &mut s) },
                // SAFETY: as above, with AVX-512F.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => unsafe { x86::expand_avx512(w, o0, n, &mut s) },
            }
            // SAFETY: dst is `y`'s columns `o0..o0 + n` (row stride d_out),
            // written by this task only; lhs is `x` `[rows, d_in]`; rhs is
            // the panel `[n, d_in]` read as its transpose `[d_in, n]`.
            unsafe {
                gemm::gemm(
                    rows,
                    n,
                    d_in,
                    out.get().add(o0),
                    1,
                    d_out as isize,
                    false,
                    x.as_ptr(),
                    1,
                    d_in as isize,
                    s.as_ptr(),
                    d_in as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                )
            }
        });
    });
    y
}

/// The tree the 16 lanes are summed in, on every ISA: `l[i] + l[i + 8]`,
/// then `+ 4`, `+ 2`, `+ 1`.
#[inline(always)]
fn reduce16(l: &[f32; 16]) -> f32 {
    let a: [f32; 8] = std::array::from_fn(|i| l[i] + l[i + 8]);
    let b = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    let c = [b[0] + b[2], b[1] + b[3]];
    c[0] + c[1]
}

/// The bound the tests hold this kernel to against the exact (f64) product
/// of the dequantized weights: at most `d_in + 4` roundings in sequence (a
/// lane adds `2·blocks` products and the tree four sums; `gemm` at most
/// `d_in`), each by at most `2⁻²⁴` of the running magnitude, itself at most
/// `Σ|w·x|`.
pub fn error_bound(abs_products: f64, d_in: usize) -> f64 {
    let depth = (d_in + 4) as f64;
    1.01 * depth * f32::EPSILON as f64 / 2.0 * abs_products + 1e-30
}

mod portable {
    use super::{reduce16, QMatrix, QType, BLOCK};

    /// The 32 weights of a block, as the SIMD paths form them.
    pub fn block_values(ty: QType, blk: &[u8]) -> [f32; 32] {
        let f16 =
            |at: usize| half::f16::from_bits(u16::from_le_bytes([blk[at], blk[at + 1]])).to_f32();
        let nib = |qs: &[u8], i: usize| -> i32 {
            let q = qs[i % 16];
            (if i < 16 { q & 15 } else { q >> 4 }) as i32
        };
        let hbit = |qh: &[u8], i: usize| -> i32 {
            ((u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]) >> i) & 1) as i32
        };
        let d = f16(0);
        match ty {
            QType::Q8_0 => std::array::from_fn(|i| blk[2 + i] as i8 as f32 * d),
            QType::Q4_0 => std::array::from_fn(|i| (nib(&blk[2..], i) - 8) as f32 * d),
            QType::Q4_1 => {
                let m = f16(2);
                std::array::from_fn(|i| (nib(&blk[4..], i) as f32).mul_add(d, m))
            }
            QType::Q5_0 => std::array::from_fn(|i| {
                ((nib(&blk[6..], i) | hbit(&blk[2..], i) << 4) - 16) as f32 * d
            }),
            QType::Q5_1 => {
                let m = f16(2);
                std::array::from_fn(|i| {
                    ((nib(&blk[8..], i) | hbit(&blk[4..], i) << 4) as f32).mul_add(d, m)
                })
            }
            _ => unreachable!("quant_f32: {ty:?}"),
        }
    }

    /// Weight rows `o0..o0 + n` as f32, row after row, into `out`.
    pub fn expand(w: &QMatrix, o0: usize, n: usize, out: &mut [f32]) {
        let bb = w.ty.block_bytes();
        for (i, orow) in out.chunks_exact_mut(w.d_in).take(n).enumerate() {
            for (blk, o) in w
                .row(o0 + i)
                .chunks_exact(bb)
                .zip(orow.chunks_exact_mut(BLOCK))
            {
                o.copy_from_slice(&block_values(w.ty, blk));
            }
        }
    }

    /// Weight rows `o0..o0 + n_out` against every x row, into `out`
    /// `[n_out, rows]`.
    pub fn chunk(w: &QMatrix, o0: usize, n_out: usize, x: &[f32], rows: usize, out: &mut [f32]) {
        let (bb, nb) = (w.ty.block_bytes(), w.d_in / BLOCK);
        for i in 0..n_out {
            let wrow = w.row(o0 + i);
            let vals: Vec<[f32; 32]> = wrow
                .chunks_exact(bb)
                .map(|blk| block_values(w.ty, blk))
                .collect();
            for r in 0..rows {
                let xr = &x[r * w.d_in..(r + 1) * w.d_in];
                let mut acc = [0f32; 16];
                for (k, v) in vals.iter().enumerate().take(nb) {
                    let xb = &xr[k * BLOCK..(k + 1) * BLOCK];
                    for j in 0..16 {
                        acc[j] = v[j].mul_add(xb[j], acc[j]);
                    }
                    for j in 0..16 {
                        acc[j] = v[16 + j].mul_add(xb[16 + j], acc[j]);
                    }
                }
                out[i * rows + r] = reduce16(&acc);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{reduce16, QMatrix, QType, BLOCK, TILE_ROWS};
    use std::arch::x86_64::*;

    const Q4_0: u8 = 0;
    const Q4_1: u8 = 1;
    const Q8_0: u8 = 2;
    const Q5_0: u8 = 3;
    const Q5_1: u8 = 4;

    fn code(ty: QType) -> u8 {
        match ty {
            QType::Q4_0 => Q4_0,
            QType::Q4_1 => Q4_1,
            QType::Q8_0 => Q8_0,
            QType::Q5_0 => Q5_0,
            QType::Q5_1 => Q5_1,
            _ => unreachable!("quant_f32: {ty:?}"),
        }
    }

    #[inline(always)]
    unsafe fn f16_at(p: *const u8) -> f32 {
        let bits = (p as *const u16).read_unaligned();
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }

    /// A block's 32 weights as 16-lane halves (`lo` = elements 0..16,
    /// `hi` = 16..32), on one ISA.
    trait Lanes: Copy {
        unsafe fn zero() -> Self;
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
        /// 16 f32 from `p`.
        unsafe fn load(p: *const f32) -> Self;
        /// The block at `p` of type `T`.
        unsafe fn expand<const T: u8>(p: *const u8) -> (Self, Self);
        unsafe fn lanes(self) -> [f32; 16];
        /// 16 f32 to `p`.
        unsafe fn store(self, p: *mut f32);
    }

    #[derive(Clone, Copy)]
    struct Z(__m512);

    impl Lanes for Z {
        #[inline(always)]
        unsafe fn zero() -> Self {
            Z(_mm512_setzero_ps())
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            Z(_mm512_fmadd_ps(a.0, b.0, c.0))
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Z(_mm512_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn expand<const T: u8>(p: *const u8) -> (Self, Self) {
            let d = _mm512_set1_ps(f16_at(p));
            let (lo, hi) = match T {
                Q8_0 => (
                    _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(2) as *const __m128i)),
                    _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(18) as *const __m128i)),
                ),
                _ => {
                    let qs = match T {
                        Q4_0 => 2,
                        Q4_1 => 4,
                        Q5_0 => 6,
                        _ => 8,
                    };
                    let v = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.add(qs) as *const __m128i));
                    let mut lo = _mm512_and_si512(v, _mm512_set1_epi32(15));
                    let mut hi = _mm512_srli_epi32::<4>(v);
                    if T == Q5_0 || T == Q5_1 {
                        let qh =
                            (p.add(if T == Q5_0 { 2 } else { 4 }) as *const u32).read_unaligned();
                        let qh = _mm512_set1_epi32(qh as i32);
                        let iota =
                            _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
                        let one = _mm512_set1_epi32(1);
                        let blo = _mm512_and_si512(_mm512_srlv_epi32(qh, iota), one);
                        let bhi = _mm512_and_si512(
                            _mm512_srlv_epi32(qh, _mm512_add_epi32(iota, _mm512_set1_epi32(16))),
                            one,
                        );
                        lo = _mm512_or_si512(lo, _mm512_slli_epi32::<4>(blo));
                        hi = _mm512_or_si512(hi, _mm512_slli_epi32::<4>(bhi));
                    }
                    let off = match T {
                        Q4_0 => 8,
                        Q5_0 => 16,
                        _ => 0,
                    };
                    if off != 0 {
                        lo = _mm512_sub_epi32(lo, _mm512_set1_epi32(off));
                        hi = _mm512_sub_epi32(hi, _mm512_set1_epi32(off));
                    }
                    (lo, hi)
                }
            };
            let (lo, hi) = (_mm512_cvtepi32_ps(lo), _mm512_cvtepi32_ps(hi));
            if T == Q4_1 || T == Q5_1 {
                let m = _mm512_set1_ps(f16_at(p.add(2)));
                (Z(_mm512_fmadd_ps(lo, d, m)), Z(_mm512_fmadd_ps(hi, d, m)))
            } else {
                (Z(_mm512_mul_ps(lo, d)), Z(_mm512_mul_ps(hi, d)))
            }
        }
        #[inline(always)]
        unsafe fn lanes(self) -> [f32; 16] {
            std::mem::transmute::<__m512, [f32; 16]>(self.0)
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm512_storeu_ps(p, self.0)
        }
    }

    /// 16 lanes in two AVX2 registers (lanes 0..8, 8..16).
    #[derive(Clone, Copy)]
    struct Y(__m256, __m256);

    impl Lanes for Y {
        #[inline(always)]
        unsafe fn zero() -> Self {
            Y(_mm256_setzero_ps(), _mm256_setzero_ps())
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            Y(
                _mm256_fmadd_ps(a.0, b.0, c.0),
                _mm256_fmadd_ps(a.1, b.1, c.1),
            )
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Y(_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)))
        }
        #[inline(always)]
        unsafe fn expand<const T: u8>(p: *const u8) -> (Self, Self) {
            let d = _mm256_set1_ps(f16_at(p));
            let eight = |at: usize| _mm_loadl_epi64(p.add(at) as *const __m128i);
            // [lo.0, lo.1, hi.0, hi.1]: elements 0..8, 8..16, 16..24, 24..32.
            let q: [__m256i; 4] = match T {
                Q8_0 => [
                    _mm256_cvtepi8_epi32(eight(2)),
                    _mm256_cvtepi8_epi32(eight(10)),
                    _mm256_cvtepi8_epi32(eight(18)),
                    _mm256_cvtepi8_epi32(eight(26)),
                ],
                _ => {
                    let qs = match T {
                        Q4_0 => 2,
                        Q4_1 => 4,
                        Q5_0 => 6,
                        _ => 8,
                    };
                    let a = _mm256_cvtepu8_epi32(eight(qs));
                    let b = _mm256_cvtepu8_epi32(eight(qs + 8));
                    let m15 = _mm256_set1_epi32(15);
                    let mut q = [
                        _mm256_and_si256(a, m15),
                        _mm256_and_si256(b, m15),
                        _mm256_srli_epi32::<4>(a),
                        _mm256_srli_epi32::<4>(b),
                    ];
                    if T == Q5_0 || T == Q5_1 {
                        let qh =
                            (p.add(if T == Q5_0 { 2 } else { 4 }) as *const u32).read_unaligned();
                        let qh = _mm256_set1_epi32(qh as i32);
                        let iota = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
                        let one = _mm256_set1_epi32(1);
                        for (g, qg) in q.iter_mut().enumerate() {
                            let sh = _mm256_add_epi32(iota, _mm256_set1_epi32(8 * g as i32));
                            let bit = _mm256_and_si256(_mm256_srlv_epi32(qh, sh), one);
                            *qg = _mm256_or_si256(*qg, _mm256_slli_epi32::<4>(bit));
                        }
                    }
                    let off = match T {
                        Q4_0 => 8,
                        Q5_0 => 16,
                        _ => 0,
                    };
                    if off != 0 {
                        for qg in q.iter_mut() {
                            *qg = _mm256_sub_epi32(*qg, _mm256_set1_epi32(off));
                        }
                    }
                    q
                }
            };
            let f = q.map(|v| _mm256_cvtepi32_ps(v));
            let f = if T == Q4_1 || T == Q5_1 {
                let m = _mm256_set1_ps(f16_at(p.add(2)));
                f.map(|v| _mm256_fmadd_ps(v, d, m))
            } else {
                f.map(|v| _mm256_mul_ps(v, d))
            };
            (Y(f[0], f[1]), Y(f[2], f[3]))
        }
        #[inline(always)]
        unsafe fn lanes(self) -> [f32; 16] {
            std::mem::transmute::<[__m256; 2], [f32; 16]>([self.0, self.1])
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm256_storeu_ps(p, self.0);
            _mm256_storeu_ps(p.add(8), self.1)
        }
    }

    /// `TW` weight rows (`w0 + t·stride` bytes) against `TR` x rows
    /// (`x + r·d_in`), `nb` blocks: `out[t][r]`.
    // Index loops over the const-sized tiles: they unroll, and the
    // accumulators stay in registers.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    unsafe fn tile<L: Lanes, const T: u8, const TW: usize, const TR: usize>(
        w0: *const u8,
        stride: usize,
        bb: usize,
        nb: usize,
        x: *const f32,
        d_in: usize,
        out: &mut [[f32; TR]; TW],
    ) {
        let mut acc = [[L::zero(); TR]; TW];
        for k in 0..nb {
            let mut wl = [L::zero(); TW];
            let mut wh = [L::zero(); TW];
            for t in 0..TW {
                let (lo, hi) = L::expand::<T>(w0.add(t * stride + k * bb));
                wl[t] = lo;
                wh[t] = hi;
            }
            for r in 0..TR {
                let xp = x.add(r * d_in + k * BLOCK);
                let (xl, xh) = (L::load(xp), L::load(xp.add(16)));
                for t in 0..TW {
                    acc[t][r] = L::fma(wl[t], xl, acc[t][r]);
                    acc[t][r] = L::fma(wh[t], xh, acc[t][r]);
                }
            }
        }
        for t in 0..TW {
            for r in 0..TR {
                out[t][r] = reduce16(&acc[t][r].lanes());
            }
        }
    }

    /// Weight rows `o0..o0 + n_out` in tiles of `TW`, x rows in tiles of
    /// up to [`TILE_ROWS`], into `out` `[n_out, rows]`.
    #[inline(always)]
    unsafe fn chunk<L: Lanes, const T: u8>(
        w: &QMatrix,
        o0: usize,
        n_out: usize,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
    ) {
        let (bb, nb, d_in) = (w.ty.block_bytes(), w.d_in / BLOCK, w.d_in);
        let stride = nb * bb;
        let base = w.row(o0).as_ptr();
        macro_rules! run {
            ($tw:literal, $o:expr, $r0:expr, $tr:literal) => {{
                let mut res = [[0f32; $tr]; $tw];
                tile::<L, T, $tw, $tr>(
                    base.add($o * stride),
                    stride,
                    bb,
                    nb,
                    x.as_ptr().add($r0 * d_in),
                    d_in,
                    &mut res,
                );
                for t in 0..$tw {
                    for r in 0..$tr {
                        out[($o + t) * rows + $r0 + r] = res[t][r];
                    }
                }
            }};
        }
        macro_rules! rows_of {
            ($tw:literal, $o:expr, $r0:expr, $n:expr) => {
                match $n {
                    1 => run!($tw, $o, $r0, 1),
                    2 => run!($tw, $o, $r0, 2),
                    3 => run!($tw, $o, $r0, 3),
                    4 => run!($tw, $o, $r0, 4),
                    5 => run!($tw, $o, $r0, 5),
                    6 => run!($tw, $o, $r0, 6),
                    7 => run!($tw, $o, $r0, 7),
                    _ => run!($tw, $o, $r0, 8),
                }
            };
        }
        // Few x rows: four weight rows a tile, so four independent sums
        // hide the FMA latency (decode 74 → 80 tok/s on SmolLM2, 2
        // threads, against one row a tile); more rows: two (registers).
        let mut o = 0;
        if rows <= 2 {
            while o + 4 <= n_out {
                match rows {
                    1 => run!(4, o, 0, 1),
                    _ => run!(4, o, 0, 2),
                }
                o += 4;
            }
        }
        while o + 2 <= n_out {
            let mut r0 = 0;
            while r0 < rows {
                let n = TILE_ROWS.min(rows - r0);
                rows_of!(2, o, r0, n);
                r0 += n;
            }
            o += 2;
        }
        while o < n_out {
            let mut r0 = 0;
            while r0 < rows {
                let n = TILE_ROWS.min(rows - r0);
                rows_of!(1, o, r0, n);
                r0 += n;
            }
            o += 1;
        }
    }

    #[inline(always)]
    unsafe fn by_type<L: Lanes>(
        w: &QMatrix,
        o0: usize,
        n_out: usize,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
    ) {
        match code(w.ty) {
            Q4_0 => chunk::<L, Q4_0>(w, o0, n_out, x, rows, out),
            Q4_1 => chunk::<L, Q4_1>(w, o0, n_out, x, rows, out),
            Q5_0 => chunk::<L, Q5_0>(w, o0, n_out, x, rows, out),
            Q5_1 => chunk::<L, Q5_1>(w, o0, n_out, x, rows, out),
            _ => chunk::<L, Q8_0>(w, o0, n_out, x, rows, out),
        }
    }

    /// Rows `o0..o0 + n` of `w` as f32 into `out` (`n·d_in`).
    #[inline(always)]
    unsafe fn expand<L: Lanes, const T: u8>(w: &QMatrix, o0: usize, n: usize, out: &mut [f32]) {
        let (bb, nb) = (w.ty.block_bytes(), w.d_in / BLOCK);
        let src = w.row(o0).as_ptr();
        let dst = out.as_mut_ptr();
        for b in 0..n * nb {
            let (lo, hi) = L::expand::<T>(src.add(b * bb));
            lo.store(dst.add(b * BLOCK));
            hi.store(dst.add(b * BLOCK + 16));
        }
    }

    #[inline(always)]
    unsafe fn expand_by_type<L: Lanes>(w: &QMatrix, o0: usize, n: usize, out: &mut [f32]) {
        match code(w.ty) {
            Q4_0 => expand::<L, Q4_0>(w, o0, n, out),
            Q4_1 => expand::<L, Q4_1>(w, o0, n, out),
            Q5_0 => expand::<L, Q5_0>(w, o0, n, out),
            Q5_1 => expand::<L, Q5_1>(w, o0, n, out),
            _ => expand::<L, Q8_0>(w, o0, n, out),
        }
    }

    /// # Safety
    /// The CPU has AVX2, FMA and F16C; rows `o0..o0 + n` exist; `out`
    /// holds `n·w.d_in` values.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn expand_avx2(w: &QMatrix, o0: usize, n: usize, out: &mut [f32]) {
        assert!(out.len() >= n * w.d_in);
        expand_by_type::<Y>(w, o0, n, out)
    }

    /// # Safety
    /// As [`expand_avx2`], and the CPU has AVX-512F.
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    pub unsafe fn expand_avx512(w: &QMatrix, o0: usize, n: usize, out: &mut [f32]) {
        assert!(out.len() >= n * w.d_in);
        expand_by_type::<Z>(w, o0, n, out)
    }

    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `w` is a 32-value block type; `x`
    /// is `[rows, w.d_in]`; rows `o0..o0 + n_out` exist; `out` is
    /// `[n_out, rows]`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn chunk_avx2(
        w: &QMatrix,
        o0: usize,
        n_out: usize,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
    ) {
        by_type::<Y>(w, o0, n_out, x, rows, out)
    }

    /// # Safety
    /// As [`chunk_avx2`], and the CPU has AVX-512F.
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    pub unsafe fn chunk_avx512(
        w: &QMatrix,
        o0: usize,
        n_out: usize,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
    ) {
        by_type::<Z>(w, o0, n_out, x, rows, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random_blocks(ty: QType, d_out: usize, d_in: usize, seed: u64) -> QMatrix {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n = d_out * d_in / BLOCK * ty.block_bytes();
        let mut data: Vec<u8> = (0..n).map(|_| rng.random()).collect();
        // Finite, moderate scales (random f16 bits can be NaN or huge).
        for blk in data.chunks_exact_mut(ty.block_bytes()) {
            let d = half::f16::from_f32(rng.random_range(-0.05..0.05f32));
            blk[..2].copy_from_slice(&d.to_bits().to_le_bytes());
            if matches!(ty, QType::Q4_1 | QType::Q5_1) {
                let m = half::f16::from_f32(rng.random_range(-0.2..0.2f32));
                blk[2..4].copy_from_slice(&m.to_bits().to_le_bytes());
            }
        }
        QMatrix::from_bytes(ty, d_out, d_in, data).expect("blocks")
    }

    const TYPES: [QType; 5] = [
        QType::Q4_0,
        QType::Q4_1,
        QType::Q5_0,
        QType::Q5_1,
        QType::Q8_0,
    ];

    #[test]
    fn block_values_are_candles_dequantized_weights_bit_for_bit() {
        for ty in TYPES {
            let w = random_blocks(ty, 3, 64, 1);
            let deq = w.dequantize();
            let ours: Vec<f32> = (0..3)
                .flat_map(|o| {
                    w.row(o)
                        .chunks_exact(ty.block_bytes())
                        .flat_map(|b| portable::block_values(ty, b))
                        .collect::<Vec<_>>()
                })
                .collect();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&ours), bits(&deq), "{ty:?}");
        }
    }

    #[test]
    fn every_isa_and_tile_shape_is_the_f64_product_within_f32_rounding_and_the_same_bits() {
        let (d_out, d_in) = (37, 96); // odd d_out: 4-, 2- and 1-row weight tiles
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for ty in TYPES {
            let w = random_blocks(ty, d_out, d_in, 3);
            let deq = w.dequantize();
            for rows in [1usize, 2, 3, 8, 9, 15, PANEL_MIN_ROWS, 33] {
                let x: Vec<f32> = (0..rows * d_in)
                    .map(|i| rng.random_range(-1.0..1.0f32) * if i % 29 == 0 { 40.0 } else { 1.0 })
                    .collect();
                let mut first: Option<Vec<f32>> = None;
                for &isa in available() {
                    let y = matmul_t_on(isa, &x, rows, &w);
                    for r in 0..rows {
                        for o in 0..d_out {
                            let (mut exact, mut abs) = (0f64, 0f64);
                            for i in 0..d_in {
                                let p = deq[o * d_in + i] as f64 * x[r * d_in + i] as f64;
                                exact += p;
                                abs += p.abs();
                            }
                            let got = y[r * d_out + o] as f64;
                            assert!(
                                (got - exact).abs() <= error_bound(abs, d_in),
                                "{ty:?} {isa:?} rows {rows} ({r}, {o}): {got} vs {exact}"
                            );
                        }
                    }
                    // Below the panel path, row r alone gives the bits it
                    // gets among `rows`.
                    let alone = matmul_t_on(isa, &x[(rows - 1) * d_in..], 1, &w);
                    if rows < PANEL_MIN_ROWS {
                        assert_eq!(
                            alone.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                            y[(rows - 1) * d_out..]
                                .iter()
                                .map(|v| v.to_bits())
                                .collect::<Vec<_>>(),
                            "{ty:?} {isa:?}: a row's result depends on its batch"
                        );
                    }
                    match &first {
                        None => first = Some(y),
                        Some(f) => assert_eq!(
                            f.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                            "{ty:?} {isa:?} differs from {:?}",
                            available()[0]
                        ),
                    }
                }
            }
        }
    }

    #[test]
    fn the_panel_path_runs_k_quants_within_f32_rounding() {
        let (d_out, d_in, rows) = (40, 512, PANEL_MIN_ROWS + 3);
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let wf: Vec<f32> = (0..d_out * d_in)
            .map(|_| rng.random_range(-1.0..1.0f32))
            .collect();
        let x: Vec<f32> = (0..rows * d_in)
            .map(|_| rng.random_range(-1.0..1.0f32))
            .collect();
        for ty in [QType::Q2K, QType::Q3K, QType::Q4K, QType::Q5K, QType::Q6K] {
            let w = QMatrix::quantize(ty, &wf, d_out, d_in).expect("quantize");
            let deq = w.dequantize();
            for &isa in available() {
                let y = matmul_t_on(isa, &x, rows, &w);
                for r in 0..rows {
                    for o in 0..d_out {
                        let (mut exact, mut abs) = (0f64, 0f64);
                        for i in 0..d_in {
                            let p = deq[o * d_in + i] as f64 * x[r * d_in + i] as f64;
                            exact += p;
                            abs += p.abs();
                        }
                        let got = y[r * d_out + o] as f64;
                        assert!(
                            (got - exact).abs() <= error_bound(abs, d_in),
                            "{ty:?} {isa:?} ({r}, {o}): {got} vs {exact}"
                        );
                    }
                }
            }
        }
    }
}
