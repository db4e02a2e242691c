//! Blocked multi-head attention for CPU f32 (inference, and training through
//! [`attention_with_grad`]), in the spirit of flash attention: scores never
//! exist as a whole tensor.
//!
//! The plain path writes Whisper's `[heads, 1500, 1500]` scores (54 MB per
//! layer), reads and rewrites them for the softmax and reads them again for
//! `P·V`, and copies the heads out of and back into `[b, t, d]`. Measured, that
//! traffic cost less than expected (the GEMMs dominate once `mallopt` keeps
//! the buffers): 57 → 52 ms per Whisper-tiny layer at 1 thread, 35 → 31 ms at
//! 2, and 85 MiB less peak memory in chat (docs/benchmarks.md; `cargo bench
//! -p diva-core --bench attention`). Here each task takes one (batch, head,
//! block of `BLOCK_Q` queries), computes that block's scores into a buffer
//! that stays in L2 (64 × 1500 × 4 B = 384 kB), applies the softmax there and
//! multiplies by `V` straight into the output, already laid out as
//! `[b, t, heads·head_dim]` (so no transpose copy follows). Tasks run in
//! parallel on rayon; each GEMM is single-threaded (`gemm`, the crate candle's
//! CPU matmul uses). Unlike flash attention it keeps a whole score row (the
//! rows fit in cache at these lengths), so the softmax is the exact
//! two-pass one, not the online rescaling.
//!
//! Inputs may be strided views (the query heads are a transposed view of the
//! projection, not a copy); only the last dimension must be contiguous.
//! Grouped-query attention works for free: query head `h` reads key/value
//! head `h / (heads / kv_heads)`.
//!
//! [`attention_with_grad`] is the same forward with a backward, for training
//! (`Exec::Autograd`) through the frozen LLM and the connector. The plain
//! differentiable chain (head reshapes, `kᵀ`, matmul, scale, mask, softmax,
//! matmul, head merge) is about a dozen graph nodes per layer, and candle's
//! backward zero-fills a gradient for each and adds into it on one thread;
//! for the connector's cross-attention each of those is a `[b, h, N, 1500]`
//! score-sized tensor. The backward here recomputes each head's
//! probabilities from `q` and `k` and writes `∂q`, `∂k`, `∂v` in one
//! parallel pass over (batch, key/value head): one node, one gradient each.

use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;

use super::softmax::softmax_in_place;

/// Queries per task: scores for 64 queries × 1500 keys stay in L2.
const BLOCK_Q: usize = 64;

/// Whether [`attention`] handles these inputs (CPU f32); otherwise use the
/// matmul–softmax–matmul path.
pub fn supported(q: &Tensor) -> bool {
    supported_on(q.device(), q.dtype())
}

/// [`supported`], for tensors of this device and dtype.
pub fn supported_on(device: &Device, dtype: DType) -> bool {
    device.is_cpu() && dtype == DType::F32
}

/// `softmax(scale · q·kᵀ [+ causal mask]) · v` per head.
///
/// `q`: `[b, heads, tq, d]`; `k`, `v`: `[b, kv_heads, tk, d]`. With
/// `causal_offset = Some(p)`, query `i` sits at absolute position `p + i` and
/// sees keys `0..=p+i`. Returns `[b, tq, heads·d]`.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f32,
    causal_offset: Option<usize>,
) -> Result<Tensor> {
    q.apply_op3_no_bwd(
        k,
        v,
        &BlockedAttention {
            scale,
            causal_offset,
        },
    )
}

/// [`attention`] with a backward pass: differentiable in `q`, `k` and `v`.
pub fn attention_with_grad(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f32,
    causal_offset: Option<usize>,
) -> Result<Tensor> {
    q.apply_op3(
        k,
        v,
        BlockedAttention {
            scale,
            causal_offset,
        },
    )
}

struct BlockedAttention {
    scale: f32,
    causal_offset: Option<usize>,
}

/// A 4-D strided view of an f32 buffer.
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    dims: [usize; 4],
    strides: [usize; 4],
}

impl<'a> View<'a> {
    fn new(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<Self> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("blocked attention: {what} must be f32");
        };
        let (Ok(dims), Ok(strides)) = (
            <[usize; 4]>::try_from(layout.dims()),
            <[usize; 4]>::try_from(layout.stride()),
        ) else {
            candle_core::bail!(
                "blocked attention: {what} must be [batch, heads, time, head_dim], got {:?}",
                layout.dims()
            );
        };
        if strides[3] != 1 && dims[3] > 1 {
            candle_core::bail!("blocked attention: {what}'s head dimension must be contiguous");
        }
        Ok(Self {
            data: &data[layout.start_offset()..],
            dims,
            strides,
        })
    }

    /// Pointer to element `[b, h, t, 0]`.
    fn at(&self, b: usize, h: usize, t: usize) -> *const f32 {
        let i = b * self.strides[0] + h * self.strides[1] + t * self.strides[2];
        self.data[i..].as_ptr()
    }
}

/// The sizes of one attention call, checked to fit together.
struct Shapes {
    b: usize,
    heads: usize,
    tq: usize,
    d: usize,
    kv_heads: usize,
    tk: usize,
}

/// The three operands as views, and their sizes checked to fit together.
fn open<'a>(
    (qs, ql): (&'a CpuStorage, &Layout),
    (ks, kl): (&'a CpuStorage, &Layout),
    (vs, vl): (&'a CpuStorage, &Layout),
) -> Result<(View<'a>, View<'a>, View<'a>, Shapes)> {
    let (q, k, v) = (
        View::new(qs, ql, "q")?,
        View::new(ks, kl, "k")?,
        View::new(vs, vl, "v")?,
    );
    let [b, heads, tq, d] = q.dims;
    let [kb, kv_heads, tk, kd] = k.dims;
    if kb != b || kd != d || v.dims != k.dims || kv_heads == 0 || heads % kv_heads != 0 {
        candle_core::bail!(
            "blocked attention: shapes q {:?}, k {:?}, v {:?} do not fit together",
            q.dims,
            k.dims,
            v.dims
        );
    }
    if tk == 0 {
        candle_core::bail!("blocked attention: no keys to attend to");
    }
    let shapes = Shapes {
        b,
        heads,
        tq,
        d,
        kv_heads,
        tk,
    };
    Ok((q, k, v, shapes))
}

/// A strided matrix: element `[i, j]` at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
struct Mat<T> {
    ptr: T,
    rs: usize,
    cs: usize,
}

impl<T> Mat<T> {
    /// The transpose, as a view.
    fn t(self) -> Self {
        Self {
            ptr: self.ptr,
            rs: self.cs,
            cs: self.rs,
        }
    }
}

/// A row-major `[rows, cols]` buffer as a matrix.
fn dense<T>(ptr: T, cols: usize) -> Mat<T> {
    Mat {
        ptr,
        rs: cols,
        cs: 1,
    }
}

impl View<'_> {
    /// Head `h` of batch `b` from time `t` on, as a `[time, head_dim]` matrix.
    fn head(&self, b: usize, h: usize, t: usize) -> Mat<*const f32> {
        Mat {
            ptr: self.at(b, h, t),
            rs: self.strides[2],
            cs: self.strides[3],
        }
    }
}

/// `dst = scale·lhs·rhs`, or `dst += scale·lhs·rhs` with `accumulate`, for
/// `lhs` `[m, k]` and `rhs` `[k, n]`, single-threaded (callers parallelise
/// over heads).
///
/// # Safety
/// Each matrix's pointer and strides must address valid elements for its
/// whole shape, and `dst` must be written by no one else meanwhile.
unsafe fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: Mat<*mut f32>,
    accumulate: bool,
    lhs: Mat<*const f32>,
    rhs: Mat<*const f32>,
    scale: f32,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst.ptr,
        dst.cs as isize,
        dst.rs as isize,
        accumulate,
        lhs.ptr,
        lhs.cs as isize,
        lhs.rs as isize,
        rhs.ptr,
        rhs.cs as isize,
        rhs.rs as isize,
        if accumulate { 1.0 } else { 0.0 },
        scale,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// The output buffer, shared by tasks that write disjoint `[rows, head]` tiles.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: every task writes a distinct (batch, query block, head) tile.
unsafe impl Send for OutPtr {}
// SAFETY: as for `Send`: no two tasks touch the same element.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The element at `offset` (a method, so closures capture the whole
    /// `Send` wrapper rather than the raw pointer field).
    fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: callers pass offsets inside the output buffer.
        unsafe { self.0.add(offset) }
    }
}

impl BlockedAttention {
    /// Keys that queries `q0..q0 + rows` can see at all: past the last
    /// one's position, none is needed.
    fn keys_for(&self, tk: usize, q0: usize, rows: usize) -> usize {
        match self.causal_offset {
            Some(p) => tk.min(p + q0 + rows),
            None => tk,
        }
    }

    /// `P = softmax(scale·q·kᵀ + causal mask)` of query head `h` (key/value
    /// head `kh`) of batch `bi`, queries `q0..q0 + rows` against the first
    /// `n_keys` keys, into `p` (`rows × n_keys`, masked entries 0). The
    /// forward and the backward share it, so both see the same `P`.
    fn probabilities(
        &self,
        (q, k): (&View, &View),
        (bi, h, kh): (usize, usize, usize),
        q0: usize,
        rows: usize,
        n_keys: usize,
        p: &mut Vec<f32>,
    ) {
        let d = q.dims[3];
        p.clear();
        p.resize(rows * n_keys, 0.0);
        // SAFETY: the views were checked by `open`; `p` holds rows × n_keys.
        unsafe {
            matmul(
                (rows, n_keys, d),
                dense(p.as_mut_ptr(), n_keys),
                false,
                q.head(bi, h, q0),
                k.head(bi, kh, 0).t(),
                self.scale,
            );
        }
        for (r, row) in p.chunks_mut(n_keys).enumerate() {
            let visible = match self.causal_offset {
                Some(off) => n_keys.min(off + q0 + r + 1),
                None => n_keys,
            };
            softmax_in_place(&mut row[..visible]);
            row[visible..].fill(0.0);
        }
    }
}

impl CustomOp3 for BlockedAttention {
    fn name(&self) -> &'static str {
        "diva-blocked-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (
            q,
            k,
            v,
            Shapes {
                b,
                heads,
                tq,
                d,
                kv_heads,
                tk,
            },
        ) = open((qs, ql), (ks, kl), (vs, vl))?;
        let group = heads / kv_heads;
        let width = heads * d;
        let mut out = vec![0f32; b * tq * width];
        let out_ptr = OutPtr(out.as_mut_ptr());
        let blocks = tq.div_ceil(BLOCK_Q);
        // Task order (batch, head, block): a thread's consecutive tasks share
        // one head's keys and values, which stay in cache.
        (0..b * heads * blocks)
            .into_par_iter()
            .for_each_init(Vec::<f32>::new, |scores, task| {
                let (bh, blk) = (task / blocks, task % blocks);
                let (bi, h) = (bh / heads, bh % heads);
                let kh = h / group;
                let q0 = blk * BLOCK_Q;
                let rows = BLOCK_Q.min(tq - q0);
                let n_keys = self.keys_for(tk, q0, rows);
                self.probabilities((&q, &k), (bi, h, kh), q0, rows, n_keys, scores);
                // SAFETY: the views were checked by `open`; this task's
                // output tile (its rows, head `h`'s columns) is its own.
                unsafe {
                    matmul(
                        (rows, d, n_keys),
                        dense(out_ptr.at((bi * tq + q0) * width + h * d), width),
                        false,
                        dense(scores.as_ptr(), n_keys),
                        v.head(bi, kh, 0),
                        1.0,
                    );
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, tq, width))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let op = AttentionBwd {
            forward: BlockedAttention {
                scale: self.scale,
                causal_offset: self.causal_offset,
            },
            grad: grad.to_dtype(DType::F32)?.contiguous()?,
        };
        // One buffer `[∂q | ∂k | ∂v]`; each gradient is a contiguous view.
        let all = q.apply_op3_no_bwd(k, v, &op)?;
        let (nq, nk) = (q.elem_count(), k.elem_count());
        let part = |t: &Tensor, start: usize, len: usize| -> Result<Option<Tensor>> {
            Ok(if t.track_op() {
                Some(all.narrow(0, start, len)?.reshape(t.dims())?)
            } else {
                None
            })
        };
        Ok((part(q, 0, nq)?, part(k, nq, nk)?, part(v, nq + nk, nk)?))
    }
}

/// The backward of [`BlockedAttention`] for `∂out` = `grad` `[b, tq, heads·d]`:
/// `[∂q | ∂k | ∂v]` flat, in `[b, heads, tq, d]` and `[b, kv_heads, tk, d]`
/// layout. Per head, with `P = softmax(scale·q·kᵀ + mask)`:
/// `∂v += Pᵀ·∂o`, `∂S = P ⊙ (∂o·vᵀ − rowsum(P ⊙ ∂o·vᵀ))`,
/// `∂q = scale·∂S·k`, `∂k += scale·∂Sᵀ·q`. Tasks are (batch, key/value head),
/// so the query heads sharing a key/value head accumulate without races.
struct AttentionBwd {
    forward: BlockedAttention,
    grad: Tensor,
}

impl CustomOp3 for AttentionBwd {
    fn name(&self) -> &'static str {
        "diva-blocked-attention-bwd"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (
            q,
            k,
            v,
            Shapes {
                b,
                heads,
                tq,
                d,
                kv_heads,
                tk,
            },
        ) = open((qs, ql), (ks, kl), (vs, vl))?;
        let group = heads / kv_heads;
        let width = heads * d;
        let (g_storage, g_layout) = self.grad.storage_and_layout();
        let Storage::Cpu(CpuStorage::F32(g)) = &*g_storage else {
            candle_core::bail!(
                "{}: the output gradient must be f32 on the CPU",
                self.name()
            );
        };
        let g = super::contiguous_slice(g, g_layout, self.name())?;
        if g.len() != b * tq * width {
            candle_core::bail!(
                "{}: output gradient {:?} for [{b}, {tq}, {width}]",
                self.name(),
                g_layout.dims()
            );
        }
        let fwd = &self.forward;
        let scale = fwd.scale;
        let n_keys = fwd.keys_for(tk, 0, tq);
        let (nq, nk) = (b * heads * tq * d, b * kv_heads * tk * d);
        let mut all = vec![0f32; nq + 2 * nk];
        let (dq, dkv) = all.split_at_mut(nq);
        let (dk, dv) = dkv.split_at_mut(nk);
        dq.par_chunks_mut(group * tq * d)
            .zip(dk.par_chunks_mut(tk * d).zip(dv.par_chunks_mut(tk * d)))
            .enumerate()
            .for_each_init(
                || (Vec::<f32>::new(), Vec::<f32>::new()),
                |(p, ds), (task, (dq, (dk, dv)))| {
                    let (bi, kh) = (task / kv_heads, task % kv_heads);
                    ds.clear();
                    ds.resize(tq * n_keys, 0.0);
                    let (dk, dv) = (dense(dk.as_mut_ptr(), d), dense(dv.as_mut_ptr(), d));
                    for gi in 0..group {
                        let h = kh * group + gi;
                        fwd.probabilities((&q, &k), (bi, h, kh), 0, tq, n_keys, p);
                        let g_h = dense(g[(bi * tq) * width + h * d..].as_ptr(), width);
                        let (p_m, ds_m) = (dense(p.as_ptr(), n_keys), dense(ds.as_ptr(), n_keys));
                        // SAFETY (every matmul here): the views were checked
                        // by `open` and `g`'s length above; `p`/`ds` hold
                        // tq × n_keys; `dq`, `dk`, `dv` are this task's own
                        // chunks of group·tq·d and tk·d elements.
                        // ∂P = ∂o·vᵀ
                        // SAFETY: as above (`ds` holds tq × n_keys).
                        unsafe {
                            matmul(
                                (tq, n_keys, d),
                                dense(ds.as_mut_ptr(), n_keys),
                                false,
                                g_h,
                                v.head(bi, kh, 0).t(),
                                1.0,
                            );
                        }
                        // ∂S = P ⊙ (∂P − rowsum(P ⊙ ∂P)), in place.
                        for (p_row, ds_row) in p.chunks(n_keys).zip(ds.chunks_mut(n_keys)) {
                            let dot: f32 =
                                p_row.iter().zip(ds_row.iter()).map(|(a, b)| a * b).sum();
                            for (s, &pr) in ds_row.iter_mut().zip(p_row) {
                                *s = pr * (*s - dot);
                            }
                        }
                        // SAFETY: as above (`dq` is this task's group·tq·d chunk).
                        unsafe {
                            // ∂q = scale · ∂S·k
                            let dq_h = dense(dq[gi * tq * d..].as_mut_ptr(), d);
                            matmul((tq, d, n_keys), dq_h, false, ds_m, k.head(bi, kh, 0), scale);
                            // ∂k += scale · ∂Sᵀ·q
                            matmul((n_keys, d, tq), dk, true, ds_m.t(), q.head(bi, h, 0), scale);
                            // ∂v += Pᵀ·∂o
                            matmul((n_keys, d, tq), dv, true, p_m.t(), g_h, 1.0);
                        }
                    }
                },
            );
        let n = all.len();
        Ok((CpuStorage::F32(all), Shape::from(n)))
    }
}

/// Additive mask `[tq, tk]`: 0 where key `j ≤ offset + i`, −∞ elsewhere
/// (query `i` sits at absolute position `offset + i`).
pub fn causal_mask(
    tq: usize,
    tk: usize,
    offset: usize,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let v: Vec<f32> = (0..tq)
        .flat_map(|i| {
            (0..tk).map(move |j| {
                if j <= offset + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Tensor::from_vec(v, (tq, tk), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::D;

    /// The plain path: matmul, additive mask, softmax, matmul, heads merged.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, causal: Option<usize>) -> Tensor {
        let (b, h, tq, d) = q.dims4().unwrap();
        let kv_heads = k.dim(1).unwrap();
        let rep = h / kv_heads;
        let expand = |t: &Tensor| {
            let (b, hk, tk, d) = t.dims4().unwrap();
            t.unsqueeze(2)
                .unwrap()
                .expand((b, hk, rep, tk, d))
                .unwrap()
                .reshape((b, h, tk, d))
                .unwrap()
        };
        let (k, v) = (expand(k), expand(v));
        let mut s = (q.contiguous().unwrap().matmul(&k.t().unwrap()).unwrap() * scale).unwrap();
        if let Some(p) = causal {
            let m = causal_mask(tq, k.dim(2).unwrap(), p, &Device::Cpu).unwrap();
            s = s.broadcast_add(&m).unwrap();
        }
        let max = s.max_keepdim(D::Minus1).unwrap();
        let e = s.broadcast_sub(&max).unwrap().exp().unwrap();
        let p = e.broadcast_div(&e.sum_keepdim(D::Minus1).unwrap()).unwrap();
        p.matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, tq, h * d))
            .unwrap()
    }

    fn rel(a: &Tensor, b: &Tensor) -> f64 {
        crate::testing::rel_l2(
            &a.to_dtype(DType::F64).unwrap(),
            &b.to_dtype(DType::F64).unwrap(),
        )
    }

    #[test]
    fn equals_the_plain_path_full_causal_and_grouped() {
        let dev = Device::Cpu;
        // tq spans several query blocks with a ragged last one; the query
        // heads are a transposed (strided) view, as the models pass them.
        let (b, h, tq, d) = (2, 4, 2 * BLOCK_Q + 7, 16);
        let q = Tensor::randn(0f32, 1.0, (b, tq, h, d), &dev)
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        for (kv_heads, tk, causal) in [
            (4, 300, None),
            (4, tq, Some(0)),
            (4, tq + 5, Some(5)), // a KV cache of 5 earlier positions
            (2, 77, None),        // grouped-query attention
            (1, tq, Some(0)),
        ] {
            let k = Tensor::randn(0f32, 1.0, (b, kv_heads, tk, d), &dev).unwrap();
            let v = Tensor::randn(0f32, 1.0, (b, kv_heads, tk, d), &dev).unwrap();
            let scale = (d as f64).powf(-0.5);
            let ours = attention(&q, &k, &v, scale as f32, causal).unwrap();
            let theirs = reference(&q, &k, &v, scale, causal);
            assert_eq!(ours.dims(), &[b, tq, h * d]);
            let e = rel(&ours, &theirs);
            assert!(
                e < 1e-5,
                "kv_heads {kv_heads} tk {tk} causal {causal:?}: rel {e}"
            );
        }
    }

    /// The backward equals autograd through the plain path: causal self
    /// attention (with a cache offset), grouped-query and cross attention,
    /// on a strided query view.
    #[test]
    fn gradients_equal_autograd_through_the_plain_path() {
        use candle_core::Var;
        let dev = Device::Cpu;
        let (b, h, tq, d) = (2, 6, 19, 8);
        for (kv_heads, tk, causal) in [(6, tq, Some(0)), (2, tq + 3, Some(3)), (3, 41, None)] {
            let q =
                Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, tq, h, d), &dev).unwrap()).unwrap();
            let k = Var::randn(0f32, 1.0, (b, kv_heads, tk, d), &dev).unwrap();
            let v = Var::randn(0f32, 1.0, (b, kv_heads, tk, d), &dev).unwrap();
            let coeffs = Tensor::randn(0f32, 1.0, (b, tq, h * d), &dev).unwrap();
            let scale = (d as f64).powf(-0.5);
            let mut results = Vec::new();
            for fused in [true, false] {
                let qh = q.as_tensor().transpose(1, 2).unwrap(); // strided, as the models pass it
                let out = if fused {
                    attention_with_grad(&qh, &k, &v, scale as f32, causal).unwrap()
                } else {
                    reference(&qh, &k, &v, scale, causal)
                };
                let loss = (&out * &coeffs).unwrap().sqr().unwrap().sum_all().unwrap();
                let grads = loss.backward().unwrap();
                let g = |var: &Var| grads.get(var).unwrap().clone();
                results.push([out, g(&q), g(&k), g(&v)]);
            }
            for (i, what) in ["out", "∂q", "∂k", "∂v"].iter().enumerate() {
                let e = rel(&results[0][i], &results[1][i]);
                assert!(
                    e < 1e-5,
                    "{what}, kv_heads {kv_heads} causal {causal:?}: rel {e}"
                );
            }
        }
    }

    /// Only inputs that carry a gradient get one (constant keys and values,
    /// as the frozen encoder's would be, get none).
    #[test]
    fn constant_inputs_get_no_gradient() {
        use candle_core::Var;
        let dev = Device::Cpu;
        let q = Var::randn(0f32, 1.0, (1, 2, 3, 4), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (1, 2, 5, 4), &dev).unwrap();
        let out = attention_with_grad(&q, &k, &k, 0.5, None).unwrap();
        let grads = out.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&q).is_some());
        assert!(grads.get(&k).is_none());
    }

    #[test]
    fn one_query_against_a_cache_sees_every_key() {
        // Decoding: one new query at position p sees all p + 1 keys.
        let dev = Device::Cpu;
        let (b, h, d, tk) = (1, 3, 8, 40);
        let q = Tensor::randn(0f32, 1.0, (b, h, 1, d), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (b, h, tk, d), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (b, h, tk, d), &dev).unwrap();
        let ours = attention(&q, &k, &v, 0.5, Some(tk - 1)).unwrap();
        let full = reference(&q, &k, &v, 0.5, None);
        assert!(rel(&ours, &full) < 1e-5);
        // …and a causal offset that hides keys changes the answer.
        let hidden = attention(&q, &k, &v, 0.5, Some(tk - 10)).unwrap();
        assert!(rel(&hidden, &full) > 1e-3);
    }

    #[test]
    fn mismatched_shapes_are_an_error_not_a_panic() {
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 3, 4, 8), DType::F32, &dev).unwrap();
        let k = Tensor::zeros((1, 2, 5, 8), DType::F32, &dev).unwrap();
        let err = attention(&q, &k, &k, 1.0, None).unwrap_err().to_string();
        assert!(err.contains("do not fit together"), "{err}");
        let k3 = Tensor::zeros((1, 5, 8), DType::F32, &dev).unwrap();
        let err = attention(&q, &k3, &k3, 1.0, None).unwrap_err().to_string();
        assert!(err.contains("[batch, heads, time, head_dim]"), "{err}");
    }
}
