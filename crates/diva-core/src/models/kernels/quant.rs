//! `y = x Wᵀ` with `W` kept in its GGUF blocks (Q4_0, Q4_1, Q8_0) and `x`
//! quantized on the fly to 8 bits per block of 32: the integer dot products
//! that make llama.cpp fast on a CPU (inference only, no gradient).
//!
//! Per block of 32 weights: the nibbles or bytes are multiplied with the
//! activation's bytes by `maddubs` + `madd` (AVX2) or `dpbusd` (AVX-512
//! VNNI), giving 8 lanes of exact `i32` partial dots (lane `l` = bytes
//! `4l..4l+4`, the same in both instructions); the lanes are scaled by
//! `d_w · d_x` into 8 `f32` accumulators with one FMA, and reduced once per
//! row pair in a fixed order. The portable path computes exactly those
//! lanes and FMAs, so every ISA gives the same bits, and each (weight row,
//! x row) pair is the same sum whatever the number of rows: a sequence's
//! logits do not depend on its batch.
//!
//! - Q4_0 and Q8_0 use the sign trick (`|w|` as unsigned bytes times `x`
//!   carrying `w`'s sign), since `maddubs`/`dpbusd` take one unsigned
//!   operand; no pair of bytes can saturate `maddubs`' `i16` (`|w| ≤ 128`,
//!   `|x| ≤ 127`).
//! - Q4_1 (`w = d·q + m`, `q` in 0..15) multiplies `q` directly and adds
//!   `m · d_x·Σq_x` per block, the sum precomputed with the activations.
//!
//! The activations are quantized as llama.cpp's `quantize_row_q8_0/1`:
//! `d = max|x| / 127`, `q = round(x / d)`. That rounding is the only error
//! against the dequantized product: `|x·w − x̂·w| ≤ Σ_blocks d_x/2 · Σ|w|`
//! ([`error_bound`], which the tests hold every kernel to).

use half::f16;
use rayon::prelude::*;

/// Values per block, for every type here.
pub const BLOCK: usize = 32;

/// Output rows of `W` per parallel task.
const CHUNK: usize = 16;

/// x rows that share one unpacking of a weight block.
const TILE: usize = 4;

/// A GGUF block type these kernels run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QType {
    Q4_0,
    Q4_1,
    Q8_0,
}

impl QType {
    /// Bytes of one block of 32 values in the GGUF file.
    pub fn block_bytes(self) -> usize {
        match self {
            QType::Q4_0 => 18,
            QType::Q4_1 => 20,
            QType::Q8_0 => 34,
        }
    }
}

/// The instruction set a product runs on; sums are the same bits on every
/// one (see the module header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Vnni,
}

impl Isa {
    /// The fastest this CPU runs.
    pub fn best() -> Isa {
        *Isa::available().last().unwrap_or(&Isa::Portable)
    }

    /// Every ISA this CPU runs, slowest first.
    pub fn available() -> Vec<Isa> {
        #[allow(unused_mut)]
        let mut v = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            if avx2 {
                v.push(Isa::Avx2);
                if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl") {
                    v.push(Isa::Vnni);
                }
            }
        }
        v
    }
}

/// A weight matrix `[d_out, d_in]` as GGUF blocks, row-major (each row is
/// `d_in / 32` blocks).
#[derive(Clone)]
pub struct QMatrix {
    pub ty: QType,
    pub d_out: usize,
    pub d_in: usize,
    data: Vec<u8>,
}

impl std::fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QMatrix({:?}, [{}, {}])", self.ty, self.d_out, self.d_in)
    }
}

impl QMatrix {
    /// The blocks of a GGUF tensor `[d_out, d_in]` as stored.
    pub fn from_bytes(ty: QType, d_out: usize, d_in: usize, data: Vec<u8>) -> Result<Self, String> {
        if !d_in.is_multiple_of(BLOCK) {
            return Err(format!(
                "{ty:?} rows of {d_in} values are not whole blocks of {BLOCK}"
            ));
        }
        let want = d_out
            .checked_mul(d_in / BLOCK)
            .and_then(|n| n.checked_mul(ty.block_bytes()))
            .ok_or_else(|| format!("{ty:?} [{d_out}, {d_in}] overflows"))?;
        if data.len() != want {
            return Err(format!(
                "{ty:?} [{d_out}, {d_in}] needs {want} bytes of blocks, got {}",
                data.len()
            ));
        }
        Ok(Self {
            ty,
            d_out,
            d_in,
            data,
        })
    }

    /// `w` `[d_out, d_in]` quantized the way llama.cpp's reference
    /// quantizers do (`quantize_row_q4_0/q4_1/q8_0_ref`).
    pub fn quantize(ty: QType, w: &[f32], d_out: usize, d_in: usize) -> Result<Self, String> {
        if w.len() != d_out * d_in || !d_in.is_multiple_of(BLOCK) {
            return Err(format!(
                "cannot quantize {} values as [{d_out}, {d_in}] in blocks of {BLOCK}",
                w.len()
            ));
        }
        let mut data = Vec::with_capacity(w.len() / BLOCK * ty.block_bytes());
        for b in w.chunks_exact(BLOCK) {
            match ty {
                QType::Q8_0 => {
                    let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let d = amax / 127.0;
                    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                    data.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
                    data.extend(b.iter().map(|v| (v * id).round() as i8 as u8));
                }
                QType::Q4_0 => {
                    // The value of largest magnitude maps to -8.
                    let (mut amax, mut max) = (0f32, 0f32);
                    for &v in b {
                        if v.abs() > amax {
                            amax = v.abs();
                            max = v;
                        }
                    }
                    let d = max / -8.0;
                    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                    data.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
                    let q = |v: f32| ((v * id + 8.5) as i32).min(15) as u8;
                    data.extend((0..16).map(|j| q(b[j]) | (q(b[j + 16]) << 4)));
                }
                QType::Q4_1 => {
                    let min = b.iter().fold(f32::INFINITY, |m, &v| m.min(v));
                    let max = b.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                    let d = (max - min) / 15.0;
                    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                    data.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
                    data.extend_from_slice(&f16::from_f32(min).to_bits().to_le_bytes());
                    let q = |v: f32| (((v - min) * id + 0.5) as i32).min(15) as u8;
                    data.extend((0..16).map(|j| q(b[j]) | (q(b[j + 16]) << 4)));
                }
            }
        }
        Self::from_bytes(ty, d_out, d_in, data)
    }

    /// The f32 matrix these blocks stand for.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.d_out * self.d_in);
        for blk in self.data.chunks_exact(self.ty.block_bytes()) {
            let d = f16_at(blk, 0);
            match self.ty {
                QType::Q8_0 => out.extend(blk[2..].iter().map(|&q| d * (q as i8) as f32)),
                QType::Q4_0 => {
                    let qs = &blk[2..];
                    out.extend(qs.iter().map(|q| d * ((q & 15) as i32 - 8) as f32));
                    out.extend(qs.iter().map(|q| d * ((q >> 4) as i32 - 8) as f32));
                }
                QType::Q4_1 => {
                    let m = f16_at(blk, 2);
                    let qs = &blk[4..];
                    out.extend(qs.iter().map(|q| d * (q & 15) as f32 + m));
                    out.extend(qs.iter().map(|q| d * (q >> 4) as f32 + m));
                }
            }
        }
        out
    }

    /// Bytes of the blocks.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    fn row(&self, o: usize) -> &[u8] {
        let n = self.d_in / BLOCK * self.ty.block_bytes();
        &self.data[o * n..(o + 1) * n]
    }
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// Rows of activations quantized per block of 32: `q` the bytes, `d` the
/// scale and `sd` = `d · Σq` of each block.
pub struct QActs {
    pub rows: usize,
    pub d_in: usize,
    pub q: Vec<i8>,
    pub d: Vec<f32>,
    pub sd: Vec<f32>,
}

/// `x` `[rows, d_in]` → 8-bit blocks (llama.cpp's `quantize_row_q8_1`).
pub fn quantize_acts(x: &[f32], rows: usize, d_in: usize) -> QActs {
    assert_eq!(x.len(), rows * d_in, "quant: x is not [rows, d_in]");
    assert!(
        d_in.is_multiple_of(BLOCK),
        "quant: rows are not whole blocks"
    );
    let nb = x.len() / BLOCK;
    let mut a = QActs {
        rows,
        d_in,
        q: vec![0; x.len()],
        d: vec![0.0; nb],
        sd: vec![0.0; nb],
    };
    for (i, (xb, qb)) in x
        .chunks_exact(BLOCK)
        .zip(a.q.chunks_exact_mut(BLOCK))
        .enumerate()
    {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in qb.iter_mut().zip(xb) {
            *q = (v * id).round() as i8;
            sum += *q as i32;
        }
        a.d[i] = d;
        a.sd[i] = d * sum as f32;
    }
    a
}

/// The bound the tests hold the kernels to: the activation rounding's
/// worst case for row `b` of `x` against weight row `o`, plus f32 rounding
/// of the accumulation (relative 1e-5 of the absolute products).
pub fn error_bound(w: &[f32], x: &[f32], acts: &QActs, b: usize, d_in: usize) -> f64 {
    let nb = d_in / BLOCK;
    let mut bound = 0f64;
    let mut abs = 0f64;
    for k in 0..nb {
        let ws = &w[k * BLOCK..(k + 1) * BLOCK];
        let xs = &x[b * d_in + k * BLOCK..b * d_in + (k + 1) * BLOCK];
        let wsum: f64 = ws.iter().map(|v| v.abs() as f64).sum();
        bound += acts.d[b * nb + k] as f64 / 2.0 * wsum;
        abs += ws
            .iter()
            .zip(xs)
            .map(|(a, c)| (a * c).abs() as f64)
            .sum::<f64>();
    }
    bound * 1.0001 + abs * 1e-5 + 1e-6
}

/// `x` `[rows, d_in]` (row-major) times `wᵀ` → `[rows, d_out]`.
pub fn matmul_t(x: &[f32], rows: usize, w: &QMatrix) -> Vec<f32> {
    matmul_t_on(Isa::best(), x, rows, w)
}

/// [`matmul_t`] on a given ISA; panics if the CPU lacks it.
pub fn matmul_t_on(isa: Isa, x: &[f32], rows: usize, w: &QMatrix) -> Vec<f32> {
    assert!(
        Isa::available().contains(&isa),
        "quant: this CPU has no {isa:?}"
    );
    let acts = quantize_acts(x, rows, w.d_in);
    let mut yt = vec![0f32; w.d_out * rows];
    yt.par_chunks_mut(CHUNK * rows)
        .enumerate()
        .for_each(|(c, out)| {
            let o0 = c * CHUNK;
            for (i, orow) in out.chunks_exact_mut(rows).enumerate() {
                let wrow = w.row(o0 + i);
                let mut b = 0;
                while b < rows {
                    let n = TILE.min(rows - b);
                    let mut sums = [0f32; TILE];
                    match isa {
                        Isa::Portable => portable::row(w.ty, wrow, &acts, b, n, &mut sums),
                        #[cfg(target_arch = "x86_64")]
                        // SAFETY: `Isa::available` (asserted above) found
                        // AVX2, FMA and F16C; the row and the activations
                        // have the shapes `QMatrix` and `quantize_acts` made.
                        Isa::Avx2 => unsafe { x86::row_avx2(w.ty, wrow, &acts, b, n, &mut sums) },
                        #[cfg(target_arch = "x86_64")]
                        // SAFETY: as above, plus AVX-512 VNNI and VL.
                        Isa::Vnni => unsafe { x86::row_vnni(w.ty, wrow, &acts, b, n, &mut sums) },
                    }
                    orow[b..b + n].copy_from_slice(&sums[..n]);
                    b += n;
                }
            }
        });
    let mut y = vec![0f32; rows * w.d_out];
    for o in 0..w.d_out {
        for b in 0..rows {
            y[b * w.d_out + o] = yt[o * rows + b];
        }
    }
    y
}

/// Lanes summed pairwise: (0+4, 1+5, 2+6, 3+7), then halves, then the pair.
#[inline(always)]
fn reduce8(l: [f32; 8]) -> f32 {
    let a = [l[0] + l[4], l[1] + l[5], l[2] + l[6], l[3] + l[7]];
    let b = [a[0] + a[2], a[1] + a[3]];
    b[0] + b[1]
}

/// The lanes and FMAs of the SIMD paths, in scalar code.
mod portable {
    use super::{f16_at, reduce8, QActs, QType, BLOCK};

    /// Weight row `wrow` against x rows `b..b + n`.
    pub fn row(ty: QType, wrow: &[u8], a: &QActs, b: usize, n: usize, sums: &mut [f32; 4]) {
        let nb = a.d_in / BLOCK;
        for (j, s) in sums.iter_mut().enumerate().take(n) {
            let r = b + j;
            let mut acc = [[0f32; 8]; 2];
            let mut mterm = [0f32; 2];
            for (k, blk) in wrow.chunks_exact(ty.block_bytes()).enumerate() {
                let xq = &a.q[r * a.d_in + k * BLOCK..r * a.d_in + (k + 1) * BLOCK];
                let dw = f16_at(blk, 0);
                let w: [i32; 32] = match ty {
                    QType::Q8_0 => std::array::from_fn(|i| blk[2 + i] as i8 as i32),
                    QType::Q4_0 => std::array::from_fn(|i| {
                        let q = blk[2 + i % 16];
                        (if i < 16 { q & 15 } else { q >> 4 }) as i32 - 8
                    }),
                    QType::Q4_1 => std::array::from_fn(|i| {
                        let q = blk[4 + i % 16];
                        (if i < 16 { q & 15 } else { q >> 4 }) as i32
                    }),
                };
                let scale = dw * a.d[r * nb + k];
                let e = k % 2;
                for (l, acc) in acc[e].iter_mut().enumerate() {
                    let lane: i32 = (4 * l..4 * l + 4).map(|i| w[i] * xq[i] as i32).sum();
                    *acc = scale.mul_add(lane as f32, *acc);
                }
                if ty == QType::Q4_1 {
                    mterm[e] = f16_at(blk, 2).mul_add(a.sd[r * nb + k], mterm[e]);
                }
            }
            let lanes: [f32; 8] = std::array::from_fn(|l| acc[0][l] + acc[1][l]);
            *s = reduce8(lanes) + (mterm[0] + mterm[1]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{reduce8, QActs, QType, BLOCK};
    use std::arch::x86_64::*;

    /// How 32 unsigned bytes times 32 signed bytes become 8 `i32` lanes.
    trait Dot {
        /// # Safety
        /// The caller's target features include the instruction's.
        unsafe fn dot(u: __m256i, s: __m256i) -> __m256i;
    }
    struct Madd;
    struct Vnni;
    impl Dot for Madd {
        #[inline(always)]
        unsafe fn dot(u: __m256i, s: __m256i) -> __m256i {
            _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
        }
    }
    impl Dot for Vnni {
        #[inline(always)]
        unsafe fn dot(u: __m256i, s: __m256i) -> __m256i {
            _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
        }
    }

    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `wrow` is a whole row of `ty`
    /// blocks for `a.d_in` values; rows `b..b + n` exist in `a`, `n ≤ 4`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn row_avx2(
        ty: QType,
        wrow: &[u8],
        a: &QActs,
        b: usize,
        n: usize,
        sums: &mut [f32; 4],
    ) {
        dispatch::<Madd>(ty, wrow, a, b, n, sums)
    }

    /// # Safety
    /// As [`row_avx2`], and the CPU has AVX-512 VNNI and VL.
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    pub unsafe fn row_vnni(
        ty: QType,
        wrow: &[u8],
        a: &QActs,
        b: usize,
        n: usize,
        sums: &mut [f32; 4],
    ) {
        dispatch::<Vnni>(ty, wrow, a, b, n, sums)
    }

    const Q4_0: u8 = 0;
    const Q4_1: u8 = 1;
    const Q8_0: u8 = 2;

    /// One instance of [`row`] per block type and row count, so neither is
    /// a branch in the loop.
    #[inline(always)]
    unsafe fn dispatch<D: Dot>(
        ty: QType,
        wrow: &[u8],
        a: &QActs,
        b: usize,
        n: usize,
        sums: &mut [f32; 4],
    ) {
        macro_rules! rows {
            ($t:expr) => {
                match n {
                    1 => row::<D, { $t }, 1>(wrow, a, b, sums),
                    2 => row::<D, { $t }, 2>(wrow, a, b, sums),
                    3 => row::<D, { $t }, 3>(wrow, a, b, sums),
                    _ => row::<D, { $t }, 4>(wrow, a, b, sums),
                }
            };
        }
        match ty {
            QType::Q4_0 => rows!(Q4_0),
            QType::Q4_1 => rows!(Q4_1),
            QType::Q8_0 => rows!(Q8_0),
        }
    }

    #[inline(always)]
    unsafe fn f16_at(p: *const u8) -> f32 {
        let bits = (p as *const u16).read_unaligned();
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }

    /// The 32 weights of a block as bytes (signed for Q4_0 and Q8_0).
    #[inline(always)]
    unsafe fn unpack<const T: u8>(p: *const u8) -> __m256i {
        if T == Q8_0 {
            return _mm256_loadu_si256(p.add(2) as *const __m256i);
        }
        let off = if T == Q4_0 { 2 } else { 4 };
        let qs = _mm_loadu_si128(p.add(off) as *const __m128i);
        let m = _mm_set1_epi8(15);
        let lo = _mm_and_si128(qs, m);
        let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), m);
        let q = _mm256_set_m128i(hi, lo);
        if T == Q4_0 {
            _mm256_sub_epi8(q, _mm256_set1_epi8(8))
        } else {
            q
        }
    }

    /// Weight row `wrow` against x rows `b..b + RB`. Even and odd blocks
    /// accumulate apart (two FMA chains in flight), summed at the end.
    #[inline(always)]
    unsafe fn row<D: Dot, const T: u8, const RB: usize>(
        wrow: &[u8],
        a: &QActs,
        b: usize,
        sums: &mut [f32; 4],
    ) {
        let nb = a.d_in / BLOCK;
        let bb = match T {
            Q4_0 => 18,
            Q4_1 => 20,
            _ => 34,
        };
        let mut acc0 = [_mm256_setzero_ps(); RB];
        let mut acc1 = [_mm256_setzero_ps(); RB];
        let mut m0 = [0f32; RB];
        let mut m1 = [0f32; RB];
        let wp = wrow.as_ptr();
        let xq = a.q.as_ptr().add(b * a.d_in);
        let xd = a.d.as_ptr().add(b * nb);
        let xsd = a.sd.as_ptr().add(b * nb);
        // One block into one pair of accumulators (named, not indexed, so
        // they stay in registers; a macro, since a closure would not
        // inherit this function's target features).
        macro_rules! step {
            ($k:expr, $acc:ident, $mt:ident) => {{
                let k = $k;
                let p = wp.add(k * bb);
                let dw = f16_at(p);
                let w = unpack::<T>(p);
                let wu = if T == Q4_1 { w } else { _mm256_sign_epi8(w, w) };
                let m = if T == Q4_1 { f16_at(p.add(2)) } else { 0.0 };
                for j in 0..RB {
                    let x = _mm256_loadu_si256(xq.add(j * a.d_in + k * BLOCK) as *const __m256i);
                    let xs = if T == Q4_1 { x } else { _mm256_sign_epi8(x, w) };
                    let lanes = _mm256_cvtepi32_ps(D::dot(wu, xs));
                    let scale = _mm256_set1_ps(dw * *xd.add(j * nb + k));
                    $acc[j] = _mm256_fmadd_ps(scale, lanes, $acc[j]);
                    if T == Q4_1 {
                        $mt[j] = m.mul_add(*xsd.add(j * nb + k), $mt[j]);
                    }
                }
            }};
        }
        let mut k = 0;
        while k + 2 <= nb {
            // The next row, a row ahead of the loads (a prefetch never
            // faults; `wrapping_add` keeps the address defined past the end).
            _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add((k + nb) * bb) as *const i8);
            step!(k, acc0, m0);
            step!(k + 1, acc1, m1);
            k += 2;
        }
        if k < nb {
            step!(k, acc0, m0);
        }
        let (acc, mterm) = ([acc0, acc1], [m0, m1]);
        for j in 0..RB {
            let mut l = [0f32; 8];
            _mm256_storeu_ps(l.as_mut_ptr(), _mm256_add_ps(acc[0][j], acc[1][j]));
            sums[j] = reduce8(l) + (mterm[0][j] + mterm[1][j]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 2.0
            })
            .collect()
    }

    #[test]
    fn every_kernel_is_the_dequantized_product_within_the_activation_bound() {
        let (d_out, d_in) = (37, 96);
        for ty in [QType::Q4_0, QType::Q4_1, QType::Q8_0] {
            let w = QMatrix::quantize(ty, &data(d_out * d_in, 1), d_out, d_in).unwrap();
            let wd = w.dequantize();
            for rows in [1, 3, 4, 9] {
                let x = data(rows * d_in, 2 + rows as u64);
                let acts = quantize_acts(&x, rows, d_in);
                let mut first: Option<Vec<f32>> = None;
                for isa in Isa::available() {
                    let y = matmul_t_on(isa, &x, rows, &w);
                    for b in 0..rows {
                        for o in 0..d_out {
                            let wr = &wd[o * d_in..(o + 1) * d_in];
                            let want: f64 = (0..d_in)
                                .map(|i| wr[i] as f64 * x[b * d_in + i] as f64)
                                .sum();
                            let got = y[b * d_out + o] as f64;
                            let bound = error_bound(wr, &x, &acts, b, d_in);
                            assert!(
                                (got - want).abs() <= bound,
                                "{ty:?} {isa:?} rows {rows} ({b},{o}): {got} vs {want}, bound {bound}"
                            );
                        }
                        // Row b alone: the same bits.
                        let xb = &x[b * d_in..(b + 1) * d_in];
                        let alone = matmul_t_on(isa, xb, 1, &w);
                        assert_eq!(alone, y[b * d_out..(b + 1) * d_out], "{ty:?} {isa:?}");
                    }
                    // Every ISA: the same bits.
                    match &first {
                        None => first = Some(y),
                        Some(f) => assert_eq!(f, &y, "{ty:?} {isa:?} differs from portable"),
                    }
                }
            }
        }
    }

    #[test]
    fn quantize_then_dequantize_is_within_half_a_step() {
        // Q4_0 maps the value of largest magnitude to -8, so the other end
        // of its range clamps at +7: up to one whole step there.
        let (d_out, d_in) = (5, 64);
        let w = data(d_out * d_in, 9);
        for ty in [QType::Q4_0, QType::Q4_1, QType::Q8_0] {
            let q = QMatrix::quantize(ty, &w, d_out, d_in).unwrap();
            assert_eq!(q.bytes(), d_out * d_in / BLOCK * ty.block_bytes());
            for (blk, back) in w.chunks(BLOCK).zip(q.dequantize().chunks(BLOCK)) {
                let range = blk.iter().fold(0f32, |m, v| m.max(v.abs())) * 2.0;
                let tol = match ty {
                    QType::Q8_0 => range / 2.0 / 127.0 * 0.51,
                    QType::Q4_0 => range / 2.0 / 8.0 * 1.01,
                    QType::Q4_1 => range / 15.0 * 0.51,
                };
                for (a, b) in blk.iter().zip(back) {
                    assert!((a - b).abs() <= tol + 1e-3, "{ty:?}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(QMatrix::from_bytes(QType::Q4_1, 2, 30, vec![0; 40]).is_err());
        assert!(QMatrix::from_bytes(QType::Q4_1, 2, 32, vec![0; 39]).is_err());
        assert!(QMatrix::from_bytes(QType::Q4_1, usize::MAX, 64, vec![]).is_err());
        assert!(QMatrix::from_bytes(QType::Q4_1, 2, 32, vec![0; 40]).is_ok());
    }
}
