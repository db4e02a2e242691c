//! CTranslate2's Whisper variable names → HF `WhisperModel` names.
//!
//! CTranslate2 (`ctranslate2/specs/whisper_spec.py`) stores, per layer,
//! `…/self_attention/linear_0` as the fused `[q; k; v]` projection and, in the
//! decoder, `…/attention/linear_1` as the fused `[k; v]` of cross-attention.
//! LayerNorms are `gamma`/`beta`; head counts are int scalars `*/num_heads`.
//! We split the fused matrices so one model implementation serves both layouts.

use candle_core::{Tensor, D};

use super::WhisperConfig;
use crate::weights::TensorMap;

type R<T> = std::result::Result<T, String>;

struct Source(TensorMap);

impl Source {
    fn take(&mut self, name: &str) -> R<Tensor> {
        self.0
            .remove(name)
            .ok_or_else(|| format!("missing variable `{name}` (not a Whisper model.bin?)"))
    }
    fn scalar(&self, name: &str) -> Option<usize> {
        self.0
            .get(name)
            .and_then(|t| {
                t.to_dtype(candle_core::DType::F64)
                    .ok()?
                    .to_scalar::<f64>()
                    .ok()
            })
            .map(|v| v as usize)
    }
    fn count_layers(&self, prefix: &str) -> usize {
        (0..)
            .take_while(|i| {
                self.0
                    .keys()
                    .any(|k| k.starts_with(&format!("{prefix}/layer_{i}/")))
            })
            .count()
    }
}

fn err(e: candle_core::Error) -> String {
    e.to_string()
}

/// Split a fused `[n·d, d]` weight (or `[n·d]` bias) into `n` equal parts.
fn split(t: &Tensor, n: usize) -> R<Vec<Tensor>> {
    let rows = t.dim(0).map_err(err)?;
    if rows % n != 0 {
        return Err(format!(
            "fused projection of {rows} rows does not split into {n}"
        ));
    }
    (0..n)
        .map(|i| t.narrow(0, i * rows / n, rows / n).map_err(err))
        .collect()
}

fn layer_norm(src: &mut Source, out: &mut TensorMap, from: &str, to: &str) -> R<()> {
    out.insert(format!("{to}.weight"), src.take(&format!("{from}/gamma"))?);
    out.insert(format!("{to}.bias"), src.take(&format!("{from}/beta"))?);
    Ok(())
}

fn linear(src: &mut Source, out: &mut TensorMap, from: &str, to: &str) -> R<()> {
    out.insert(format!("{to}.weight"), src.take(&format!("{from}/weight"))?);
    out.insert(format!("{to}.bias"), src.take(&format!("{from}/bias"))?);
    Ok(())
}

fn self_attention(src: &mut Source, out: &mut TensorMap, from: &str, to: &str) -> R<()> {
    layer_norm(
        src,
        out,
        &format!("{from}/layer_norm"),
        &format!("{to}_layer_norm"),
    )?;
    let w = split(&src.take(&format!("{from}/linear_0/weight"))?, 3)?;
    let b = split(&src.take(&format!("{from}/linear_0/bias"))?, 3)?;
    // Whisper's k_proj has no bias; CTranslate2 stores zeros there.
    for (name, i) in [("q_proj", 0), ("k_proj", 1), ("v_proj", 2)] {
        out.insert(format!("{to}.{name}.weight"), w[i].clone());
        if name != "k_proj" {
            out.insert(format!("{to}.{name}.bias"), b[i].clone());
        }
    }
    linear(
        src,
        out,
        &format!("{from}/linear_1"),
        &format!("{to}.out_proj"),
    )
}

fn cross_attention(src: &mut Source, out: &mut TensorMap, from: &str, to: &str) -> R<()> {
    layer_norm(
        src,
        out,
        &format!("{from}/layer_norm"),
        &format!("{to}_layer_norm"),
    )?;
    linear(
        src,
        out,
        &format!("{from}/linear_0"),
        &format!("{to}.q_proj"),
    )?;
    let w = split(&src.take(&format!("{from}/linear_1/weight"))?, 2)?;
    let b = split(&src.take(&format!("{from}/linear_1/bias"))?, 2)?;
    out.insert(format!("{to}.k_proj.weight"), w[0].clone());
    out.insert(format!("{to}.v_proj.weight"), w[1].clone());
    out.insert(format!("{to}.v_proj.bias"), b[1].clone());
    linear(
        src,
        out,
        &format!("{from}/linear_2"),
        &format!("{to}.out_proj"),
    )
}

fn ffn(src: &mut Source, out: &mut TensorMap, from: &str, to: &str) -> R<()> {
    layer_norm(
        src,
        out,
        &format!("{from}/layer_norm"),
        &format!("{to}.final_layer_norm"),
    )?;
    linear(src, out, &format!("{from}/linear_0"), &format!("{to}.fc1"))?;
    linear(src, out, &format!("{from}/linear_1"), &format!("{to}.fc2"))
}

/// Rename (and unfuse) a CTranslate2 Whisper into HF names, inferring the config.
pub fn to_hf(raw: TensorMap) -> R<(WhisperConfig, TensorMap)> {
    if raw
        .values()
        .any(|t| t.dtype() == candle_core::DType::I64 && t.rank() >= 2)
    {
        return Err("int8/int16-quantized CTranslate2 weights are not supported: convert with --quantization float16 or float32".into());
    }
    let mut src = Source(raw);
    let mut out = TensorMap::new();
    let enc_layers = src.count_layers("encoder");
    let dec_layers = src.count_layers("decoder");
    if enc_layers == 0 || dec_layers == 0 {
        return Err("no encoder/decoder layers found (not a Whisper model.bin?)".into());
    }
    let conv1 = src.take("encoder/conv1/weight")?;
    let (d_model, n_mels) = (conv1.dim(0).map_err(err)?, conv1.dim(1).map_err(err)?);
    out.insert("encoder.conv1.weight".into(), conv1);
    out.insert("encoder.conv1.bias".into(), src.take("encoder/conv1/bias")?);
    out.insert(
        "encoder.conv2.weight".into(),
        src.take("encoder/conv2/weight")?,
    );
    out.insert("encoder.conv2.bias".into(), src.take("encoder/conv2/bias")?);
    let enc_pos = src.take("encoder/position_encodings/encodings")?;
    let max_source_positions = enc_pos.dim(0).map_err(err)?;
    out.insert("encoder.embed_positions.weight".into(), enc_pos);
    for i in 0..enc_layers {
        let (from, to) = (format!("encoder/layer_{i}"), format!("encoder.layers.{i}"));
        self_attention(
            &mut src,
            &mut out,
            &format!("{from}/self_attention"),
            &format!("{to}.self_attn"),
        )?;
        ffn(&mut src, &mut out, &format!("{from}/ffn"), &to)?;
    }
    layer_norm(
        &mut src,
        &mut out,
        "encoder/layer_norm",
        "encoder.layer_norm",
    )?;

    let embed = src.take("decoder/embeddings/weight")?;
    let vocab_size = embed.dim(0).map_err(err)?;
    out.insert("decoder.embed_tokens.weight".into(), embed);
    let dec_pos = src.take("decoder/position_encodings/encodings")?;
    let max_target_positions = dec_pos.dim(0).map_err(err)?;
    out.insert("decoder.embed_positions.weight".into(), dec_pos);
    for i in 0..dec_layers {
        let (from, to) = (format!("decoder/layer_{i}"), format!("decoder.layers.{i}"));
        self_attention(
            &mut src,
            &mut out,
            &format!("{from}/self_attention"),
            &format!("{to}.self_attn"),
        )?;
        cross_attention(
            &mut src,
            &mut out,
            &format!("{from}/attention"),
            &format!("{to}.encoder_attn"),
        )?;
        ffn(&mut src, &mut out, &format!("{from}/ffn"), &to)?;
    }
    layer_norm(
        &mut src,
        &mut out,
        "decoder/layer_norm",
        "decoder.layer_norm",
    )?;

    let heads = |key: &str| src.scalar(key).filter(|&h| h > 0 && d_model % h == 0);
    let ffn_dim = |k: &str| {
        out.get(k)
            .map(|t| t.dim(D::Minus2).unwrap_or(0))
            .unwrap_or(0)
    };
    let config = WhisperConfig {
        num_mel_bins: n_mels,
        d_model,
        encoder_layers: enc_layers,
        encoder_attention_heads: heads("encoder/num_heads")
            .unwrap_or(d_model / WhisperConfig::HEAD_DIM),
        decoder_layers: dec_layers,
        decoder_attention_heads: heads("decoder/num_heads")
            .unwrap_or(d_model / WhisperConfig::HEAD_DIM),
        encoder_ffn_dim: ffn_dim("encoder.layers.0.fc1.weight"),
        decoder_ffn_dim: ffn_dim("decoder.layers.0.fc1.weight"),
        max_source_positions,
        max_target_positions,
        vocab_size,
    };
    Ok((config, out))
}
