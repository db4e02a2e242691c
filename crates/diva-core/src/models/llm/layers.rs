//! The decoder's blocks: RMSNorm, projections (dense or quantized), grouped-query
//! attention with RoPE and a KV cache, and the SwiGLU MLP.

use std::sync::Arc;

use candle_core::quantized::QMatMul;
use candle_core::{DType, Module, Result, Tensor, D};

use super::rope::Rope;
use crate::models::exec::{self, Exec};
use crate::models::linear::Linear;
use crate::ops::quant::{self, QMatrix};
use crate::ops::quant_f32;
use crate::ops::{activations, attention, rowwise};

/// A projection `y = x Wᵀ (+ b)`. Quantized weights stay quantized for
/// inference, in their GGUF blocks (`Blocks`, on [`quant`] with 8-bit
/// activations or [`quant_f32`] with f32 ones; `Quantized` is candle's
/// `QMatMul`, for what `quant` does not run); training dequantizes them.
#[derive(Debug, Clone)]
pub enum Proj {
    Dense(Linear),
    Blocks {
        weight: Arc<QMatrix>,
        bias: Option<Tensor>,
        acts: BlockActs,
    },
    Quantized {
        weight: QMatMul,
        bias: Option<Tensor>,
    },
}

impl Proj {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Proj::Dense(l) => l.forward(x),
            Proj::Blocks { weight, bias, acts } => rows_through(x, bias.as_ref(), |x2| {
                let (rows, d_in) = x2.dims2()?;
                if d_in != weight.d_in {
                    candle_core::bail!("{weight:?}: input rows of {d_in}");
                }
                let x = x2.flatten_all()?.to_vec1::<f32>()?;
                // A prompt's rows go through f32 panels whatever the mode:
                // faster than the integer kernels from this many rows on
                // (`kernels::quant_f32`), and exact.
                let y = match acts {
                    BlockActs::Int8 if rows < quant_f32::PANEL_MIN_ROWS => {
                        quant::matmul_t(&x, rows, weight)
                    }
                    _ => quant_f32::matmul_t(&x, rows, weight),
                };
                Tensor::from_vec(y, (rows, weight.d_out), x2.device())
            }),
            Proj::Quantized { weight, bias } => {
                rows_through(x, bias.as_ref(), |x2| weight.forward(x2))
            }
        }
    }
}

/// What a [`Proj::Blocks`] multiplies its blocks with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockActs {
    /// Activations quantized per block to 8 bits, integer dot products
    /// (llama.cpp's arithmetic), below `quant_f32::PANEL_MIN_ROWS` rows;
    /// a prompt's rows take the f32 panels.
    Int8,
    /// f32 activations, the blocks expanded to f32 (the dense product
    /// within f32 rounding).
    F32,
}

/// A quantized product on `x` `[.., d_in]`: flattened to f32 rows `[n,
/// d_in]` for `f`, whose `[n, d_out]` comes back in `x`'s dtype and leading
/// dimensions, plus the bias.
fn rows_through(
    x: &Tensor,
    bias: Option<&Tensor>,
    f: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let mut dims = x.dims().to_vec();
    let d_in = *dims.last().unwrap_or(&1);
    let rows = x.elem_count() / d_in.max(1);
    let y = f(&x.reshape((rows, d_in))?.to_dtype(DType::F32)?)?.to_dtype(x.dtype())?;
    let y = match bias {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    if let Some(last) = dims.last_mut() {
        *last = y.dim(1)?;
    }
    y.reshape(dims)
}

#[derive(Debug, Clone)]
pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    pub fn forward(&self, x: &Tensor, exec: Exec) -> Result<Tensor> {
        // candle's fused kernel has no f64 path; f64 is for gradient checks only.
        let exec = if x.dtype() == DType::F64 {
            Exec::Autograd
        } else {
            exec
        };
        match exec {
            Exec::Fused => {
                candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps as f32)
            }
            Exec::Autograd => {
                let dtype = x.dtype();
                let work = exec::compute_dtype(dtype);
                let xf = x.to_dtype(work)?;
                if rowwise::rms_norm_const_weight_supported(&xf, &self.weight) {
                    let normed = rowwise::rms_norm_const_weight(&xf, &self.weight, self.eps)?;
                    return normed.to_dtype(dtype);
                }
                if rowwise::supported(&xf) {
                    let normed = rowwise::rms_normalize(&xf, self.eps)?.to_dtype(dtype)?;
                    return normed.broadcast_mul(&self.weight);
                }
                let ms = xf.sqr()?.mean_keepdim(D::Minus1)?;
                let normed = xf
                    .broadcast_div(&(ms + self.eps)?.sqrt()?)?
                    .to_dtype(dtype)?;
                normed.broadcast_mul(&self.weight)
            }
        }
    }
}

/// Per-layer keys and values `[b, kv_heads, t, head_dim]` of the tokens so far.
///
/// Each layer's keys and values live in a buffer with room to grow (`[b,
/// kv_heads, capacity, head_dim]`, 1.5× the length plus 64 when it fills),
/// and `layers` holds views of its first `t` positions: a decode step writes
/// its one position in place instead of concatenating the whole cache anew
/// (which copied every cached key and value on every token). A clone shares
/// the views but not the buffers: its first append copies into a buffer of
/// its own, so conversations cloned from one prefix never write into each
/// other's memory. Appends that carry gradients (training) concatenate.
#[derive(Debug, Default)]
pub struct KvCache {
    pub layers: Vec<Option<(Tensor, Tensor)>>,
    buffers: Vec<Option<(Tensor, Tensor)>>,
}

impl Clone for KvCache {
    fn clone(&self) -> Self {
        Self {
            layers: self.layers.clone(),
            buffers: vec![None; self.layers.len()],
        }
    }
}

impl KvCache {
    pub fn new(n_layers: usize) -> Self {
        Self {
            layers: vec![None; n_layers],
            buffers: vec![None; n_layers],
        }
    }
    /// A cache holding these keys and values (no buffers yet: the first
    /// append copies them into one).
    pub fn from_layers(layers: Vec<Option<(Tensor, Tensor)>>) -> Self {
        let buffers = vec![None; layers.len()];
        Self { layers, buffers }
    }

    /// Positions cached in layer `i`.
    pub fn layer_len(&self, i: usize) -> usize {
        self.layers
            .get(i)
            .and_then(|l| l.as_ref())
            .map_or(0, |(k, _)| k.dim(2).unwrap_or(0))
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.layer_len(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append keys and values `[b, kv_heads, t, head_dim]` to layer `i`;
    /// returns views of all its positions.
    pub fn append(&mut self, i: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        if self.buffers.len() < self.layers.len() {
            self.buffers.resize(self.layers.len(), None);
        }
        if k.track_op() || v.track_op() {
            let kv = match &self.layers[i] {
                Some((pk, pv)) => (Tensor::cat(&[pk, k], 2)?, Tensor::cat(&[pv, v], 2)?),
                None => (k.clone(), v.clone()),
            };
            self.buffers[i] = None;
            self.layers[i] = Some(kv.clone());
            return Ok(kv);
        }
        let t = k.dim(2)?;
        let len = self.layer_len(i);
        let need = len + t;
        let room = self.buffers[i]
            .as_ref()
            .is_some_and(|(b, _)| b.dim(2).unwrap_or(0) >= need);
        if !room {
            let cap = need + need / 2 + 64;
            let (b, h, _, d) = k.dims4()?;
            let bk = Tensor::zeros((b, h, cap, d), k.dtype(), k.device())?;
            let bv = Tensor::zeros((b, h, cap, d), v.dtype(), v.device())?;
            if let Some((pk, pv)) = &self.layers[i] {
                bk.slice_set(&pk.contiguous()?, 2, 0)?;
                bv.slice_set(&pv.contiguous()?, 2, 0)?;
            }
            self.buffers[i] = Some((bk, bv));
        }
        let Some((bk, bv)) = &self.buffers[i] else {
            candle_core::bail!("kv cache: no buffer for layer {i}");
        };
        bk.slice_set(&k.contiguous()?, 2, len)?;
        bv.slice_set(&v.contiguous()?, 2, len)?;
        let kv = (bk.narrow(2, 0, need)?, bv.narrow(2, 0, need)?);
        self.layers[i] = Some(kv.clone());
        Ok(kv)
    }
}

#[derive(Debug, Clone)]
pub struct Attention {
    pub q_proj: Proj,
    pub k_proj: Proj,
    pub v_proj: Proj,
    pub o_proj: Proj,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

impl Attention {
    fn heads(&self, x: &Tensor, n: usize) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        x.reshape((b, t, n, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// `mask`: additive `[b, 1, t, past + t]`; `None` means plain causal
    /// attention (query `i` sees keys `0..=past+i`). With `cache` (the cache
    /// and this layer's index) the new keys and values are appended to it.
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        mask: Option<&Tensor>,
        cache: Option<(&mut KvCache, usize)>,
        exec: Exec,
    ) -> Result<Tensor> {
        let q = self.q_proj.forward(x)?;
        let k = self.k_proj.forward(x)?;
        let v = self.v_proj.forward(x)?;
        let out = self.attend(&q, &k, &v, rope, mask, cache, exec)?;
        self.o_proj.forward(&out)
    }

    /// One decode step of `b` independent sequences, each one token `[b, 1,
    /// hidden]` after its own cache (`caches[i]`, layer `layer`): the
    /// projections run once for all rows (the weights are read once per
    /// step, not once per sequence), the attention row by row against each
    /// row's keys and values.
    pub fn forward_rows(
        &self,
        x: &Tensor,
        rope: &Rope,
        caches: &mut [&mut KvCache],
        layer: usize,
    ) -> Result<Tensor> {
        let q = self.q_proj.forward(x)?;
        let k = self.k_proj.forward(x)?;
        let v = self.v_proj.forward(x)?;
        // RoPE for all rows at once, each at its own position.
        let offsets: Vec<usize> = caches.iter().map(|c| c.layer_len(layer)).collect();
        let q = rope.split_heads_at(&q, self.num_heads, &offsets)?;
        let k = rope.split_heads_at(&k, self.num_kv_heads, &offsets)?;
        let v = self.heads(&v, self.num_kv_heads)?;
        let mut outs = Vec::with_capacity(caches.len());
        for (i, cache) in caches.iter_mut().enumerate() {
            let row = |t: &Tensor| t.narrow(0, i, 1);
            outs.push(self.attend_heads(
                row(&q)?,
                row(&k)?,
                row(&v)?,
                None,
                Some((&mut **cache, layer)),
                Exec::Fused,
            )?);
        }
        self.o_proj.forward(&Tensor::cat(&outs, 0)?)
    }

    /// Attention of projected queries, keys and values `[b, t, heads·dim]`
    /// (RoPE at the cache's offset), before the output projection.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        rope: &Rope,
        mask: Option<&Tensor>,
        cache: Option<(&mut KvCache, usize)>,
        exec: Exec,
    ) -> Result<Tensor> {
        let offset = cache.as_ref().map_or(0, |(c, i)| c.layer_len(*i));
        let q = rope.split_heads(q, self.num_heads, offset, exec)?;
        let k = rope.split_heads(k, self.num_kv_heads, offset, exec)?;
        let v = self.heads(v, self.num_kv_heads)?;
        self.attend_heads(q, k, v, mask, cache, exec)
    }

    /// Attention of rotated heads `q` `[b, heads, t, dim]`, `k`, `v` `[b,
    /// kv_heads, t, dim]` (appended to the cache when there is one), before
    /// the output projection.
    fn attend_heads(
        &self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Option<&Tensor>,
        cache: Option<(&mut KvCache, usize)>,
        exec: Exec,
    ) -> Result<Tensor> {
        let (b, _, t, _) = q.dims4()?;
        let offset = cache.as_ref().map_or(0, |(c, i)| c.layer_len(*i));
        let (k, v) = match cache {
            Some((c, i)) => c.append(i, &k, &v)?,
            None => (k, v),
        };
        if mask.is_none() && attention::supported(&q) {
            let scale = (self.head_dim as f32).powf(-0.5);
            let out = match exec {
                Exec::Fused => attention::attention(&q, &k, &v, scale, Some(offset))?,
                Exec::Autograd => attention::attention_with_grad(&q, &k, &v, scale, Some(offset))?,
            };
            return Ok(out);
        }
        let causal;
        let mask = match mask {
            Some(m) => Some(m),
            None if t > 1 => {
                causal = exec::causal_mask(t, k.dim(2)?, offset, q.device())?
                    .to_dtype(q.dtype())?
                    .reshape((1, 1, t, k.dim(2)?))?;
                Some(&causal)
            }
            None => None,
        };
        // Grouped-query attention: each kv head serves `group` query heads.
        let group = self.num_heads / self.num_kv_heads;
        let q = q.reshape((b, self.num_kv_heads, group * t, self.head_dim))?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let scores = (q.matmul(&k.t()?)? * scale)?;
        let scores = scores.reshape((b, self.num_heads, t, k.dim(2)?))?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores,
        };
        let probs = exec::softmax_last(&scores, exec)?.reshape((
            b,
            self.num_kv_heads,
            group * t,
            k.dim(2)?,
        ))?;
        let out = probs
            .matmul(&v)?
            .reshape((b, self.num_heads, t, self.head_dim))?;
        let out = out
            .transpose(1, 2)?
            .reshape((b, t, self.num_heads * self.head_dim))?;
        Ok(out)
    }
}

#[derive(Debug, Clone)]
pub struct Mlp {
    pub gate_proj: Proj,
    pub up_proj: Proj,
    pub down_proj: Proj,
}

impl Mlp {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = self.gate_proj.forward(x)?;
        let up = self.up_proj.forward(x)?;
        self.down_proj.forward(&activations::swiglu(&gate, &up)?)
    }
}

#[derive(Debug, Clone)]
pub struct Block {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

impl Block {
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        mask: Option<&Tensor>,
        cache: Option<(&mut KvCache, usize)>,
        exec: Exec,
    ) -> Result<Tensor> {
        let h = self.input_layernorm.forward(x, exec)?;
        let a = self.self_attn.forward(&h, rope, mask, cache, exec)?;
        let x = (x + a)?;
        let h = self.post_attention_layernorm.forward(&x, exec)?;
        &x + self.mlp.forward(&h)?
    }

    /// [`Self::forward`] for one token of each of `b` sequences (see
    /// [`Attention::forward_rows`]).
    pub fn forward_rows(
        &self,
        x: &Tensor,
        rope: &Rope,
        caches: &mut [&mut KvCache],
        layer: usize,
    ) -> Result<Tensor> {
        let h = self.input_layernorm.forward(x, Exec::Fused)?;
        let a = self.self_attn.forward_rows(&h, rope, caches, layer)?;
        let x = (x + a)?;
        let h = self.post_attention_layernorm.forward(&x, Exec::Fused)?;
        &x + self.mlp.forward(&h)?
    }
}
