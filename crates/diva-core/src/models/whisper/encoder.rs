//! Whisper's audio encoder: two convolutions, sinusoidal positions, pre-norm
//! transformer blocks, final LayerNorm. Frozen in diva; its states feed the
//! connector.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::layers::{Attention, LayerNorm, Mlp};
use super::WhisperConfig;
use crate::models::Exec;

#[derive(Debug, Clone)]
struct EncoderLayer {
    self_attn: Attention,
    self_attn_layer_norm: LayerNorm,
    mlp: Mlp,
    final_layer_norm: LayerNorm,
}

impl EncoderLayer {
    fn load(vb: VarBuilder, cfg: &WhisperConfig) -> Result<Self> {
        let d = cfg.d_model;
        Ok(Self {
            self_attn: Attention::load(vb.pp("self_attn"), d, cfg.encoder_attention_heads)?,
            self_attn_layer_norm: LayerNorm::load(vb.pp("self_attn_layer_norm"), d)?,
            mlp: Mlp::load(vb.clone(), d, cfg.encoder_ffn_dim)?,
            final_layer_norm: LayerNorm::load(vb.pp("final_layer_norm"), d)?,
        })
    }

    fn forward(&self, x: &Tensor, exec: Exec) -> Result<Tensor> {
        let h = self.self_attn_layer_norm.forward(x, exec)?;
        let kv = self.self_attn.key_value(&h)?;
        let x = (x + self.self_attn.attend(&h, &kv, None, exec)?)?;
        let h = self.final_layer_norm.forward(&x, exec)?;
        &x + self.mlp.forward(&h, exec)?
    }
}

#[derive(Debug, Clone)]
pub struct WhisperEncoder {
    conv1_w: Tensor,
    conv1_b: Tensor,
    conv2_w: Tensor,
    conv2_b: Tensor,
    embed_positions: Tensor,
    layers: Vec<EncoderLayer>,
    layer_norm: LayerNorm,
    dtype: DType,
}

impl WhisperEncoder {
    /// `vb` points at the encoder (`model.encoder` in HF checkpoints).
    pub fn load(vb: VarBuilder, cfg: &WhisperConfig) -> Result<Self> {
        let d = cfg.d_model;
        let layers = (0..cfg.encoder_layers)
            .map(|i| EncoderLayer::load(vb.pp(format!("layers.{i}")), cfg))
            .collect::<Result<_>>()?;
        Ok(Self {
            conv1_w: vb.get((d, cfg.num_mel_bins, 3), "conv1.weight")?,
            conv1_b: vb.get(d, "conv1.bias")?,
            conv2_w: vb.get((d, d, 3), "conv2.weight")?,
            conv2_b: vb.get(d, "conv2.bias")?,
            embed_positions: vb.get((cfg.max_source_positions, d), "embed_positions.weight")?,
            layers,
            layer_norm: LayerNorm::load(vb.pp("layer_norm"), d)?,
            dtype: vb.dtype(),
        })
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// `mel` `[batch, n_mels, 3000]` (any float dtype) → states `[batch, 1500, d]`.
    pub fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        let exec = Exec::Fused;
        let x = mel.to_dtype(self.dtype)?;
        let x = x
            .conv1d(&self.conv1_w, 1, 1, 1, 1)?
            .broadcast_add(&self.conv1_b.unsqueeze(1)?)?
            .gelu_erf()?;
        let x = x
            .conv1d(&self.conv2_w, 1, 2, 1, 1)?
            .broadcast_add(&self.conv2_b.unsqueeze(1)?)?
            .gelu_erf()?;
        let x = x.transpose(1, 2)?;
        let t = x.dim(1)?;
        let mut x = x.broadcast_add(&self.embed_positions.narrow(0, 0, t)?)?;
        for layer in &self.layers {
            x = layer.forward(&x, exec)?;
        }
        self.layer_norm.forward(&x, exec)
    }
}

impl Module for WhisperEncoder {
    fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        WhisperEncoder::forward(self, mel)
    }
}
