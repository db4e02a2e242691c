//! Whisper's text decoder. Used two ways:
//! - transcription: token ids → logits, with a KV cache;
//! - later, the DiVA connector: learned query embeddings in, hidden states out
//!   ([`WhisperDecoder::forward_embeds`]), differentiable under `Exec::Autograd`.

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

use super::layers::{Attention, KeyValue, LayerNorm, Mlp};
use super::WhisperConfig;
use crate::models::Exec;

#[derive(Debug, Clone)]
pub struct DecoderLayer {
    pub self_attn: Attention,
    pub self_attn_layer_norm: LayerNorm,
    pub encoder_attn: Attention,
    pub encoder_attn_layer_norm: LayerNorm,
    pub mlp: Mlp,
    pub final_layer_norm: LayerNorm,
}

impl DecoderLayer {
    fn load(vb: VarBuilder, cfg: &WhisperConfig) -> Result<Self> {
        let (d, h) = (cfg.d_model, cfg.decoder_attention_heads);
        Ok(Self {
            self_attn: Attention::load(vb.pp("self_attn"), d, h)?,
            self_attn_layer_norm: LayerNorm::load(vb.pp("self_attn_layer_norm"), d)?,
            encoder_attn: Attention::load(vb.pp("encoder_attn"), d, h)?,
            encoder_attn_layer_norm: LayerNorm::load(vb.pp("encoder_attn_layer_norm"), d)?,
            mlp: Mlp::load(vb.clone(), d, cfg.decoder_ffn_dim)?,
            final_layer_norm: LayerNorm::load(vb.pp("final_layer_norm"), d)?,
        })
    }

    /// One pre-norm block. `past` is this layer's self-attention cache (its
    /// length is the absolute position of `x`'s first row); returns the
    /// output and the extended cache.
    fn forward(
        &self,
        x: &Tensor,
        cross: &KeyValue,
        past: Option<&KeyValue>,
        exec: Exec,
    ) -> Result<(Tensor, KeyValue)> {
        let h = self.self_attn_layer_norm.forward(x, exec)?;
        let new = self.self_attn.key_value(&h)?;
        let offset = past.map_or(0, KeyValue::len);
        let kv = match past {
            Some(p) => p.append(&new)?,
            None => new,
        };
        let x = (x + self.self_attn.attend(&h, &kv, Some(offset), exec)?)?;
        let h = self.encoder_attn_layer_norm.forward(&x, exec)?;
        let x = (&x + self.encoder_attn.attend(&h, cross, None, exec)?)?;
        let h = self.final_layer_norm.forward(&x, exec)?;
        Ok(((&x + self.mlp.forward(&h, exec)?)?, kv))
    }
}

/// Per-layer caches for incremental decoding.
#[derive(Debug, Clone)]
pub struct DecoderCache {
    /// Cross-attention keys/values of the encoder states, computed once.
    pub cross: Vec<KeyValue>,
    /// Self-attention keys/values of the tokens decoded so far.
    pub past: Vec<Option<KeyValue>>,
}

impl DecoderCache {
    pub fn position(&self) -> usize {
        self.past
            .first()
            .and_then(|p| p.as_ref())
            .map_or(0, KeyValue::len)
    }
}

#[derive(Debug, Clone)]
pub struct WhisperDecoder {
    /// `[vocab, d]`. Absent when only the blocks are needed (the connector).
    pub embed_tokens: Option<Tensor>,
    pub embed_positions: Tensor,
    pub layers: Vec<DecoderLayer>,
    pub layer_norm: LayerNorm,
    pub dtype: DType,
}

impl WhisperDecoder {
    /// `vb` points at the decoder (`model.decoder` in HF checkpoints).
    /// With `with_token_embeddings = false` the 51k × d table is not loaded.
    pub fn load(vb: VarBuilder, cfg: &WhisperConfig, with_token_embeddings: bool) -> Result<Self> {
        let d = cfg.d_model;
        let layers = (0..cfg.decoder_layers)
            .map(|i| DecoderLayer::load(vb.pp(format!("layers.{i}")), cfg))
            .collect::<Result<_>>()?;
        let embed_tokens = if with_token_embeddings {
            Some(vb.get((cfg.vocab_size, d), "embed_tokens.weight")?)
        } else {
            None
        };
        Ok(Self {
            embed_tokens,
            embed_positions: vb.get((cfg.max_target_positions, d), "embed_positions.weight")?,
            layers,
            layer_norm: LayerNorm::load(vb.pp("layer_norm"), d)?,
            dtype: vb.dtype(),
        })
    }

    /// Precompute the cross-attention keys/values for encoder states `[b, 1500, d]`.
    pub fn new_cache(&self, encoder_states: &Tensor) -> Result<DecoderCache> {
        let enc = encoder_states.to_dtype(self.dtype)?;
        let cross = self
            .layers
            .iter()
            .map(|l| l.encoder_attn.key_value(&enc))
            .collect::<Result<_>>()?;
        Ok(DecoderCache {
            cross,
            past: vec![None; self.layers.len()],
        })
    }

    /// Run the blocks on input embeddings `[b, t, d]` that already include
    /// positional embeddings, continuing at `cache.position()`. Returns the
    /// final-LayerNorm hidden states `[b, t, d]`.
    pub fn forward_embeds(
        &self,
        x: &Tensor,
        cache: &mut DecoderCache,
        exec: Exec,
    ) -> Result<Tensor> {
        let mut x = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let (y, kv) = layer.forward(&x, &cache.cross[i], cache.past[i].as_ref(), exec)?;
            cache.past[i] = Some(kv);
            x = y;
        }
        self.layer_norm.forward(&x, exec)
    }

    fn token_table(&self) -> Result<&Tensor> {
        self.embed_tokens.as_ref().ok_or_else(|| {
            candle_core::Error::Msg("decoder was loaded without token embeddings".into())
        })
    }

    /// Token ids `[b, t]` → logits `[b, t, vocab]` (f32), continuing at the
    /// cache position. The output projection is tied to the token embeddings.
    pub fn forward_tokens(&self, ids: &Tensor, cache: &mut DecoderCache) -> Result<Tensor> {
        let table = self.token_table()?;
        let (b, t) = ids.dims2()?;
        let pos = cache.position();
        let tok = table
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, ()))?;
        let x = tok.broadcast_add(&self.embed_positions.narrow(0, pos, t)?)?;
        let h = self.forward_embeds(&x, cache, Exec::Fused)?;
        h.broadcast_matmul(&table.t()?)?.to_dtype(DType::F32)
    }
}
