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
//! `d = max|x| / 127`, `q = round(x / d)` (nearest, ties to even). That rounding is the only error
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
    Q5_0,
    Q5_1,
    Q8_0,
    /// The K-quants (blocks of 256): candle's block types and dot products
    /// (AVX2 or scalar, its own run-time choice), driven from here.
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
}

impl QType {
    /// Bytes of one block of 32 values in the GGUF file.
    pub fn block_bytes(self) -> usize {
        use candle_core::quantized::k_quants::*;
        match self {
            QType::Q4_0 => 18,
            QType::Q4_1 => 20,
            QType::Q5_0 => 22,
            QType::Q5_1 => 24,
            QType::Q8_0 => 34,
            QType::Q2K => std::mem::size_of::<BlockQ2K>(),
            QType::Q3K => std::mem::size_of::<BlockQ3K>(),
            QType::Q4K => std::mem::size_of::<BlockQ4K>(),
            QType::Q5K => std::mem::size_of::<BlockQ5K>(),
            QType::Q6K => std::mem::size_of::<BlockQ6K>(),
        }
    }

    /// Values per block.
    pub fn block_len(self) -> usize {
        if self.is_k() {
            candle_core::quantized::k_quants::QK_K
        } else {
            BLOCK
        }
    }

    fn is_k(self) -> bool {
        matches!(
            self,
            QType::Q2K | QType::Q3K | QType::Q4K | QType::Q5K | QType::Q6K
        )
    }

    /// `w = d·q + m` (an offset per block) rather than `d·q`.
    fn has_min(self) -> bool {
        matches!(self, QType::Q4_1 | QType::Q5_1)
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

    /// Every ISA this CPU runs, slowest first; detected once (every
    /// product asks).
    pub fn available() -> &'static [Isa] {
        static ISAS: std::sync::OnceLock<Vec<Isa>> = std::sync::OnceLock::new();
        ISAS.get_or_init(|| {
            #[allow(unused_mut)]
            let mut v = vec![Isa::Portable];
            #[cfg(target_arch = "x86_64")]
            {
                let avx2 = is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c");
                if avx2 {
                    v.push(Isa::Avx2);
                    if is_x86_feature_detected!("avx512vnni")
                        && is_x86_feature_detected!("avx512vl")
                    {
                        v.push(Isa::Vnni);
                    }
                }
            }
            v
        })
    }
}

/// A weight matrix `[d_out, d_in]` as GGUF blocks, row-major (each row is
/// `d_in / block_len` blocks).
#[derive(Clone)]
pub struct QMatrix {
    pub ty: QType,
    pub d_out: usize,
    pub d_in: usize,
    data: Vec<u8>,
    /// The K-quants as candle's typed blocks (`data` is then empty).
    k: Option<std::sync::Arc<dyn KRows>>,
}

impl std::fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QMatrix({:?}, [{}, {}])", self.ty, self.d_out, self.d_in)
    }
}

/// The 32 integers of a block of a 32-value type (before `d·q (+ m)`).
fn block_ints(ty: QType, blk: &[u8]) -> [i32; 32] {
    let nib = |qs: &[u8], i: usize| -> i32 {
        let q = qs[i % 16];
        (if i < 16 { q & 15 } else { q >> 4 }) as i32
    };
    let hbit = |qh: &[u8], i: usize| -> i32 {
        ((u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]) >> i) & 1) as i32
    };
    match ty {
        QType::Q8_0 => std::array::from_fn(|i| blk[2 + i] as i8 as i32),
        QType::Q4_0 => std::array::from_fn(|i| nib(&blk[2..], i) - 8),
        QType::Q4_1 => std::array::from_fn(|i| nib(&blk[4..], i)),
        QType::Q5_0 => std::array::from_fn(|i| (nib(&blk[6..], i) | hbit(&blk[2..], i) << 4) - 16),
        QType::Q5_1 => std::array::from_fn(|i| nib(&blk[8..], i) | hbit(&blk[4..], i) << 4),
        _ => unreachable!("block_ints: {ty:?} is a K-quant"),
    }
}

impl QMatrix {
    /// The blocks of a GGUF tensor `[d_out, d_in]` as stored.
    pub fn from_bytes(ty: QType, d_out: usize, d_in: usize, data: Vec<u8>) -> Result<Self, String> {
        let bl = ty.block_len();
        if !d_in.is_multiple_of(bl) {
            return Err(format!(
                "{ty:?} rows of {d_in} values are not whole blocks of {bl}"
            ));
        }
        let want = d_out
            .checked_mul(d_in / bl)
            .and_then(|n| n.checked_mul(ty.block_bytes()))
            .ok_or_else(|| format!("{ty:?} [{d_out}, {d_in}] overflows"))?;
        if data.len() != want {
            return Err(format!(
                "{ty:?} [{d_out}, {d_in}] needs {want} bytes of blocks, got {}",
                data.len()
            ));
        }
        use candle_core::quantized::k_quants::*;
        let k: Option<std::sync::Arc<dyn KRows>> = match ty {
            QType::Q2K => Some(std::sync::Arc::new(KStore::<BlockQ2K>::new(&data, d_in))),
            QType::Q3K => Some(std::sync::Arc::new(KStore::<BlockQ3K>::new(&data, d_in))),
            QType::Q4K => Some(std::sync::Arc::new(KStore::<BlockQ4K>::new(&data, d_in))),
            QType::Q5K => Some(std::sync::Arc::new(KStore::<BlockQ5K>::new(&data, d_in))),
            QType::Q6K => Some(std::sync::Arc::new(KStore::<BlockQ6K>::new(&data, d_in))),
            _ => None,
        };
        let data = if k.is_some() { Vec::new() } else { data };
        Ok(Self {
            ty,
            d_out,
            d_in,
            data,
            k,
        })
    }

    /// `w` `[d_out, d_in]` quantized the way llama.cpp's reference
    /// quantizers do (`quantize_row_*_ref`; the K-quants by candle's).
    pub fn quantize(ty: QType, w: &[f32], d_out: usize, d_in: usize) -> Result<Self, String> {
        let bl = ty.block_len();
        if w.len() != d_out * d_in || !d_in.is_multiple_of(bl) {
            return Err(format!(
                "cannot quantize {} values as [{d_out}, {d_in}] in blocks of {bl}",
                w.len()
            ));
        }
        if ty.is_k() {
            use candle_core::quantized::k_quants::*;
            let data = match ty {
                QType::Q2K => k_bytes::<BlockQ2K>(w),
                QType::Q3K => k_bytes::<BlockQ3K>(w),
                QType::Q4K => k_bytes::<BlockQ4K>(w),
                QType::Q5K => k_bytes::<BlockQ5K>(w),
                _ => k_bytes::<BlockQ6K>(w),
            };
            return Self::from_bytes(ty, d_out, d_in, data);
        }
        let mut data = Vec::with_capacity(w.len() / BLOCK * ty.block_bytes());
        let half = |d: f32| f16::from_f32(d).to_bits().to_le_bytes();
        // Low nibbles are values 0..16, high nibbles 16..32; the fifth bits
        // of the 5-bit types are one `u32`, bit i for value i.
        let pack = |data: &mut Vec<u8>, q: &[u8; 32], five: bool| {
            if five {
                let qh = (0..32).fold(0u32, |h, i| h | (((q[i] >> 4) & 1) as u32) << i);
                data.extend_from_slice(&qh.to_le_bytes());
            }
            data.extend((0..16).map(|j| (q[j] & 15) | ((q[j + 16] & 15) << 4)));
        };
        for b in w.chunks_exact(BLOCK) {
            match ty {
                QType::Q8_0 => {
                    let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let d = amax / 127.0;
                    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                    data.extend_from_slice(&half(d));
                    data.extend(b.iter().map(|v| (v * id).round() as i8 as u8));
                }
                QType::Q4_0 | QType::Q5_0 => {
                    // The value of largest magnitude maps to the most
                    // negative level (-8, -16).
                    let (mut amax, mut max) = (0f32, 0f32);
                    for &v in b {
                        if v.abs() > amax {
                            amax = v.abs();
                            max = v;
                        }
                    }
                    let (levels, top) = if ty == QType::Q4_0 {
                        (8.0, 15)
                    } else {
                        (16.0, 31)
                    };
                    let d = max / -levels;
                    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                    data.extend_from_slice(&half(d));
                    let q: [u8; 32] =
                        std::array::from_fn(|i| ((b[i] * id + levels + 0.5) as i32).min(top) as u8);
                    pack(&mut data, &q, ty == QType::Q5_0);
                }
                _ => {
                    // Q4_1, Q5_1: from the minimum in `levels` steps.
                    let min = b.iter().fold(f32::INFINITY, |m, &v| m.min(v));
                    let max = b.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                    let top = if ty == QType::Q4_1 { 15 } else { 31 };
                    let d = (max - min) / top as f32;
                    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                    data.extend_from_slice(&half(d));
                    data.extend_from_slice(&half(min));
                    let q: [u8; 32] =
                        std::array::from_fn(|i| (((b[i] - min) * id + 0.5) as i32).min(top) as u8);
                    pack(&mut data, &q, ty == QType::Q5_1);
                }
            }
        }
        Self::from_bytes(ty, d_out, d_in, data)
    }

    /// The f32 matrix these blocks stand for.
    pub fn dequantize(&self) -> Vec<f32> {
        if let Some(k) = &self.k {
            return k.dequantize();
        }
        let mut out = Vec::with_capacity(self.d_out * self.d_in);
        for blk in self.data.chunks_exact(self.ty.block_bytes()) {
            let d = f16_at(blk, 0);
            let q = block_ints(self.ty, blk);
            if self.ty.has_min() {
                let m = f16_at(blk, 2);
                out.extend(q.iter().map(|&q| d * q as f32 + m));
            } else {
                out.extend(q.iter().map(|&q| d * q as f32));
            }
        }
        out
    }

    /// Rows `o0..o0 + n` dequantized into `out` (`n·d_in` values, row
    /// after row); the values [`Self::dequantize`] gives.
    pub fn dequantize_rows(&self, o0: usize, n: usize, out: &mut [f32]) {
        let out = &mut out[..n * self.d_in];
        if let Some(k) = &self.k {
            return k.dequantize_rows(o0, n, out);
        }
        let bb = self.ty.block_bytes();
        let blocks = self.data[o0 * self.row_bytes()..(o0 + n) * self.row_bytes()].chunks_exact(bb);
        for (blk, o) in blocks.zip(out.chunks_exact_mut(BLOCK)) {
            let d = f16_at(blk, 0);
            let q = block_ints(self.ty, blk);
            if self.ty.has_min() {
                let m = f16_at(blk, 2);
                o.iter_mut().zip(q).for_each(|(o, q)| *o = d * q as f32 + m);
            } else {
                o.iter_mut().zip(q).for_each(|(o, q)| *o = d * q as f32);
            }
        }
    }

    fn row_bytes(&self) -> usize {
        self.d_in / self.ty.block_len() * self.ty.block_bytes()
    }

    /// Bytes of the blocks.
    pub fn bytes(&self) -> usize {
        self.d_out * (self.d_in / self.ty.block_len()) * self.ty.block_bytes()
    }

    pub(crate) fn row(&self, o: usize) -> &[u8] {
        let n = self.row_bytes();
        &self.data[o * n..(o + 1) * n]
    }
}

/// A K-quant matrix as candle's blocks: one weight row's dot product with
/// one row of activations quantized to `BlockQ8K`.
trait KRows: Send + Sync {
    fn dot(&self, o: usize, x: &[candle_core::quantized::k_quants::BlockQ8K]) -> f32;
    fn dequantize(&self) -> Vec<f32>;
    /// Rows `o0..o0 + n` as f32 into `out` (`n·d_in` values).
    fn dequantize_rows(&self, o0: usize, n: usize, out: &mut [f32]);
}

struct KStore<T> {
    blocks: Vec<T>,
    d_in: usize,
}

impl<T: candle_core::quantized::k_quants::GgmlType> KStore<T> {
    /// `data`: whole blocks of `T` (checked by the caller).
    fn new(data: &[u8], d_in: usize) -> Self {
        let size = std::mem::size_of::<T>();
        assert_eq!(data.len() % size, 0, "KStore: not whole blocks");
        let n = data.len() / size;
        let mut blocks = vec![T::zeros(); n];
        // candle's K-quant blocks are `repr(C)` structs of `f16`s and byte
        // arrays, valid for every bit pattern.
        // SAFETY: `blocks` holds exactly `data.len()` bytes (n blocks of
        // `size`) of such plain data; the two buffers do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), blocks.as_mut_ptr() as *mut u8, data.len())
        };
        Self { blocks, d_in }
    }
}

impl<T> KRows for KStore<T>
where
    T: candle_core::quantized::k_quants::GgmlType<
        VecDotType = candle_core::quantized::k_quants::BlockQ8K,
    >,
{
    fn dot(&self, o: usize, x: &[candle_core::quantized::k_quants::BlockQ8K]) -> f32 {
        let per = x.len();
        T::vec_dot(self.d_in, &self.blocks[o * per..(o + 1) * per], x)
    }

    fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.blocks.len() * T::BLCK_SIZE];
        T::to_float(&self.blocks, &mut out);
        out
    }

    fn dequantize_rows(&self, o0: usize, n: usize, out: &mut [f32]) {
        let per = self.d_in / T::BLCK_SIZE;
        T::to_float(
            &self.blocks[o0 * per..(o0 + n) * per],
            &mut out[..n * self.d_in],
        );
    }
}

/// `w` as K-quant blocks of `T`, as bytes.
fn k_bytes<T: candle_core::quantized::k_quants::GgmlType>(w: &[f32]) -> Vec<u8> {
    let mut blocks = vec![T::zeros(); w.len() / T::BLCK_SIZE];
    T::from_float(w, &mut blocks);
    let n = blocks.len() * std::mem::size_of::<T>();
    // SAFETY: the blocks are plain `repr(C)` data (see `KStore::new`), read
    // as the `n` bytes they occupy while `blocks` is alive.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr() as *const u8, n) }.to_vec()
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
            *q = round_away(v * id) as i8;
            sum += *q as i32;
        }
        a.d[i] = d;
        a.sd[i] = d * sum as f32;
    }
    a
}

/// `r.round()` (nearest, ties away from zero, as llama.cpp's reference
/// `quantize_row_q8_*`'s `roundf`) for `|r| < 2³¹`, without the `roundf`
/// call that `f32::round` is on baseline x86-64 (12% of a Q8_0 decode): the
/// cast truncates, and `r - trunc(r)` is exact. (Ties to even instead, as
/// llama.cpp's SIMD quantizer rounds, doubled SmolLM2's logit error on a
/// parity prompt: ties are common in its activations.)
#[inline(always)]
fn round_away(r: f32) -> i32 {
    let t = r as i32;
    let frac = r - t as f32;
    t + (frac >= 0.5) as i32 - (frac <= -0.5) as i32
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
    assert_eq!(x.len(), rows * w.d_in, "quant: x is not [rows, d_in]");
    if let Some(k) = &w.k {
        return k_matmul_t(x, rows, w, k.as_ref());
    }
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
    untranspose(&yt, rows, w.d_out)
}

/// `[d_out, rows]` → `[rows, d_out]`.
fn untranspose(yt: &[f32], rows: usize, d_out: usize) -> Vec<f32> {
    let mut y = vec![0f32; rows * d_out];
    for o in 0..d_out {
        for b in 0..rows {
            y[b * d_out + o] = yt[o * rows + b];
        }
    }
    y
}

/// The K-quants: each row of `x` quantized once to `BlockQ8K` (candle's
/// `quantize_row_q8_K`), then candle's dot product per (weight row, x row).
fn k_matmul_t(x: &[f32], rows: usize, w: &QMatrix, k: &dyn KRows) -> Vec<f32> {
    use candle_core::quantized::k_quants::{BlockQ8K, GgmlType, QK_K};
    let per = w.d_in / QK_K;
    let xq: Vec<Vec<BlockQ8K>> = x
        .chunks_exact(w.d_in)
        .map(|r| {
            let mut q = vec![BlockQ8K::zeros(); per];
            BlockQ8K::from_float(r, &mut q);
            q
        })
        .collect();
    let mut yt = vec![0f32; w.d_out * rows];
    yt.par_chunks_mut(CHUNK * rows)
        .enumerate()
        .for_each(|(c, out)| {
            for (i, orow) in out.chunks_exact_mut(rows).enumerate() {
                for (b, y) in orow.iter_mut().enumerate() {
                    *y = k.dot(c * CHUNK + i, &xq[b]);
                }
            }
        });
    untranspose(&yt, rows, w.d_out)
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
    use super::{block_ints, f16_at, reduce8, QActs, QType, BLOCK};

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
                let w = block_ints(ty, blk);
                let scale = dw * a.d[r * nb + k];
                let e = k % 2;
                for (l, acc) in acc[e].iter_mut().enumerate() {
                    let lane: i32 = (4 * l..4 * l + 4).map(|i| w[i] * xq[i] as i32).sum();
                    *acc = scale.mul_add(lane as f32, *acc);
                }
                if ty.has_min() {
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
    const Q5_0: u8 = 3;
    const Q5_1: u8 = 4;

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
            QType::Q5_0 => rows!(Q5_0),
            QType::Q5_1 => rows!(Q5_1),
            QType::Q8_0 => rows!(Q8_0),
            _ => unreachable!("{ty:?} runs on candle's K-quant dot products"),
        }
    }

    #[inline(always)]
    unsafe fn f16_at(p: *const u8) -> f32 {
        let bits = (p as *const u16).read_unaligned();
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }

    /// Byte `i` is 0xFF where bit `i` of the `u32` at `p` is set
    /// (llama.cpp's `bytes_from_bits_32`).
    #[inline(always)]
    unsafe fn bits_to_bytes(p: *const u8) -> __m256i {
        let x = (p as *const u32).read_unaligned() as i32;
        let shuf = _mm256_set_epi64x(
            0x0303030303030303,
            0x0202020202020202,
            0x0101010101010101,
            0,
        );
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x), shuf);
        let mask = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe_u64 as i64);
        _mm256_cmpeq_epi8(_mm256_or_si256(bytes, mask), _mm256_set1_epi64x(-1))
    }

    /// The 32 weights of a block as bytes (signed for Q4_0, Q5_0, Q8_0).
    #[inline(always)]
    unsafe fn unpack<const T: u8>(p: *const u8) -> __m256i {
        if T == Q8_0 {
            return _mm256_loadu_si256(p.add(2) as *const __m256i);
        }
        let off = match T {
            Q4_0 => 2,
            Q4_1 => 4,
            Q5_0 => 6,
            _ => 8,
        };
        let qs = _mm_loadu_si128(p.add(off) as *const __m128i);
        let m = _mm_set1_epi8(15);
        let lo = _mm_and_si128(qs, m);
        let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), m);
        let q = _mm256_set_m128i(hi, lo);
        match T {
            Q4_0 => _mm256_sub_epi8(q, _mm256_set1_epi8(8)),
            // q - 16 where the fifth bit is clear: q | 0xF0 as i8.
            Q5_0 => _mm256_or_si256(
                q,
                _mm256_andnot_si256(bits_to_bytes(p.add(2)), _mm256_set1_epi8(0xF0_u8 as i8)),
            ),
            Q5_1 => _mm256_or_si256(
                q,
                _mm256_and_si256(bits_to_bytes(p.add(4)), _mm256_set1_epi8(0x10)),
            ),
            _ => q,
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
            Q5_0 => 22,
            Q5_1 => 24,
            _ => 34,
        };
        // Offset blocks (`d·q + m`) multiply unsigned `q`; the others use
        // the sign trick.
        let min = T == Q4_1 || T == Q5_1;
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
                let wu = if min { w } else { _mm256_sign_epi8(w, w) };
                let m = if min { f16_at(p.add(2)) } else { 0.0 };
                for j in 0..RB {
                    let x = _mm256_loadu_si256(xq.add(j * a.d_in + k * BLOCK) as *const __m256i);
                    let xs = if min { x } else { _mm256_sign_epi8(x, w) };
                    let lanes = _mm256_cvtepi32_ps(D::dot(wu, xs));
                    let scale = _mm256_set1_ps(dw * *xd.add(j * nb + k));
                    $acc[j] = _mm256_fmadd_ps(scale, lanes, $acc[j]);
                    if min {
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
        for ty in [
            QType::Q4_0,
            QType::Q4_1,
            QType::Q5_0,
            QType::Q5_1,
            QType::Q8_0,
        ] {
            let w = QMatrix::quantize(ty, &data(d_out * d_in, 1), d_out, d_in).unwrap();
            let wd = w.dequantize();
            for rows in [1, 3, 4, 9] {
                let x = data(rows * d_in, 2 + rows as u64);
                let acts = quantize_acts(&x, rows, d_in);
                let mut first: Option<Vec<f32>> = None;
                for &isa in Isa::available() {
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
        for ty in [
            QType::Q4_0,
            QType::Q4_1,
            QType::Q5_0,
            QType::Q5_1,
            QType::Q8_0,
        ] {
            let q = QMatrix::quantize(ty, &w, d_out, d_in).unwrap();
            assert_eq!(q.bytes(), d_out * d_in / BLOCK * ty.block_bytes());
            for (blk, back) in w.chunks(BLOCK).zip(q.dequantize().chunks(BLOCK)) {
                let range = blk.iter().fold(0f32, |m, v| m.max(v.abs())) * 2.0;
                let tol = match ty {
                    QType::Q8_0 => range / 2.0 / 127.0 * 0.51,
                    QType::Q4_0 => range / 2.0 / 8.0 * 1.01,
                    QType::Q4_1 => range / 15.0 * 0.51,
                    QType::Q5_0 => range / 2.0 / 16.0 * 1.01,
                    _ => range / 31.0 * 0.51,
                };
                for (a, b) in blk.iter().zip(back) {
                    assert!((a - b).abs() <= tol + 1e-3, "{ty:?}: {a} vs {b}");
                }
            }
        }
    }

    /// The K-quants (candle's blocks and dot products, driven from here):
    /// the dequantized product within the bound of the activations'
    /// 8-bit blocks of 256, and the same bits alone or batched.
    #[test]
    fn k_quants_are_the_dequantized_product_within_the_activation_bound() {
        let (d_out, d_in) = (19, 512);
        for ty in [QType::Q2K, QType::Q3K, QType::Q4K, QType::Q5K, QType::Q6K] {
            let w = QMatrix::quantize(ty, &data(d_out * d_in, 3), d_out, d_in).unwrap();
            assert_eq!(w.bytes(), d_out * d_in / 256 * ty.block_bytes());
            let wd = w.dequantize();
            let rows = 5;
            let x = data(rows * d_in, 4);
            let y = matmul_t(&x, rows, &w);
            for b in 0..rows {
                let xr = &x[b * d_in..(b + 1) * d_in];
                for o in 0..d_out {
                    let wr = &wd[o * d_in..(o + 1) * d_in];
                    let want: f64 = wr.iter().zip(xr).map(|(a, c)| *a as f64 * *c as f64).sum();
                    // Q8_K: one scale per 256 values, |x - x̂| ≤ amax/127/2.
                    let mut bound = 1e-5;
                    for (wb, xb) in wr.chunks(256).zip(xr.chunks(256)) {
                        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
                        let wsum: f64 = wb.iter().map(|v| v.abs() as f64).sum();
                        let abs: f64 = wb.iter().zip(xb).map(|(a, c)| (a * c).abs() as f64).sum();
                        bound += amax / 127.0 / 2.0 * wsum * 1.0001 + abs * 1e-5;
                    }
                    let got = y[b * d_out + o] as f64;
                    assert!(
                        (got - want).abs() <= bound,
                        "{ty:?} ({b},{o}): {got} vs {want}, bound {bound}"
                    );
                }
                assert_eq!(matmul_t(xr, 1, &w), y[b * d_out..(b + 1) * d_out], "{ty:?}");
            }
        }
    }

    #[test]
    fn rounding_is_f32_round() {
        let mut edge = vec![
            0.5f32,
            1.5,
            2.5,
            -0.5,
            -1.5,
            0.49999997,
            -0.49999997,
            126.5,
            -127.0,
            3.2,
            0.0,
            -0.0,
        ];
        edge.extend(data(100_000, 7).iter().map(|v| v * 127.0));
        for r in edge {
            assert_eq!(round_away(r) as f32, r.round(), "{r}");
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
