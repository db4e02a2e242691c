//! The frozen decoder-only LLM (Llama family and Qwen2) that DiVA wraps.
//!
//! `forward_embeds` takes input embeddings — token embeddings for the
//! teacher, virtual tokens for the student — and returns the final hidden
//! states after the last RMSNorm and before `lm_head`, which is where the
//! distillation loss is taken.

use candle_core::{DType, Device, Result, Tensor};

use super::config::LlmConfig;
use super::layers::{Block, KvCache, Proj, RmsNorm};
use super::rope::Rope;
use crate::models::Exec;
use crate::ops::attention;

#[derive(Debug, Clone)]
pub struct Llm {
    pub config: LlmConfig,
    /// Token embedding table `[vocab, hidden]`, dense in the compute dtype.
    pub embed_tokens: Tensor,
    pub layers: Vec<Block>,
    pub norm: RmsNorm,
    pub lm_head: Proj,
    pub rope: Rope,
    pub dtype: DType,
    pub device: Device,
}

/// Additive attention mask `[b, 1, t, past + t]`: causal, plus padding from
/// `keep` (`[b, past + t]`, 1 for real tokens, 0 for padding).
pub fn attention_mask(
    b: usize,
    t: usize,
    past: usize,
    keep: Option<&Tensor>,
    device: &Device,
) -> Result<Tensor> {
    let total = past + t;
    let causal =
        crate::models::exec::causal_mask(t, total, past, device)?.reshape((1, 1, t, total))?;
    match keep {
        None => causal.broadcast_as((b, 1, t, total))?.contiguous(),
        Some(keep) => {
            let keep = keep.to_dtype(DType::F32)?.reshape((b, 1, 1, total))?;
            // Padding keys get a large finite penalty rather than -inf, so a row
            // with only padding before it (left padding) stays finite, not NaN.
            let pad = ((keep - 1.0)? * 1e9)?;
            causal.broadcast_add(&pad)
        }
    }
}

impl Llm {
    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    /// Token ids `[b, t]` → embeddings `[b, t, hidden]`.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        self.embed_tokens
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, self.config.hidden_size))
    }

    /// One sequence of token ids → embeddings `[1, t, hidden]`.
    pub fn embed_ids(&self, ids: &[u32]) -> Result<Tensor> {
        self.embed(&Tensor::new(ids, &self.device)?.unsqueeze(0)?)
    }

    /// Run the decoder on embeddings `[b, t, hidden]` continuing after the
    /// cache (if any); `keep` `[b, past + t]` marks real (1) vs padding (0)
    /// positions. Returns final-norm hidden states `[b, t, hidden]`.
    pub fn forward_embeds(
        &self,
        x: &Tensor,
        keep: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
        exec: Exec,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let past = cache.as_ref().map_or(0, |c| c.len());
        if past + t > self.rope.max_positions() {
            candle_core::bail!(
                "sequence of {} tokens exceeds the model's context window of {}",
                past + t,
                self.rope.max_positions()
            );
        }
        // No padding: the layers apply the causal mask themselves (the
        // blocked kernel needs no mask tensor, and one query sees every key).
        // Training (`Exec::Autograd`) uses the same kernel with its backward.
        let plain_causal =
            keep.is_none() && (t == 1 || attention::supported_on(&self.device, self.dtype));
        let mask = if plain_causal {
            None
        } else {
            Some(attention_mask(b, t, past, keep, &self.device)?.to_dtype(self.dtype)?)
        };
        let mut x = x.to_dtype(self.dtype)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let c = cache.as_deref_mut().map(|c| (c, i));
            x = layer.forward(&x, &self.rope, mask.as_ref(), c, exec)?;
        }
        self.norm.forward(&x, exec)
    }

    /// One decode step of several sequences: `ids[i]` continues `caches[i]`
    /// (each its own length). Returns final-norm hidden states `[b, 1,
    /// hidden]`, row `i` equal to what [`Self::forward_embeds`] gives that
    /// sequence alone up to the last bits of the float sums (the batched
    /// projections may block their sums differently). Continuous batching
    /// in `diva serve` runs its streams through this.
    pub fn forward_rows(&self, ids: &[u32], caches: &mut [&mut KvCache]) -> Result<Tensor> {
        if ids.len() != caches.len() || ids.is_empty() {
            candle_core::bail!(
                "forward_rows: {} ids for {} caches",
                ids.len(),
                caches.len()
            );
        }
        for c in caches.iter() {
            if c.len() + 1 > self.rope.max_positions() {
                candle_core::bail!(
                    "sequence of {} tokens exceeds the model's context window of {}",
                    c.len() + 1,
                    self.rope.max_positions()
                );
            }
        }
        let ids = Tensor::new(ids, &self.device)?.unsqueeze(1)?;
        let mut x = self.embed(&ids)?.to_dtype(self.dtype)?;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward_rows(&x, &self.rope, caches, i)?;
        }
        self.norm.forward(&x, Exec::Fused)
    }

    /// Hidden states → logits (f32).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(hidden)?.to_dtype(DType::F32)
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }
}
