//! Building an [`Llm`] from a local HF directory or a GGUF file.
//!
//! GGUF tensor names (`blk.N.attn_q.weight`, …) map one-to-one onto HF's
//! (`model.layers.N.self_attn.q_proj.weight`, …); both loaders fill the same
//! structs. GGUF weights stay quantized in [`WeightMode::Quantized`] and are
//! dequantized in [`WeightMode::Dense`] (training, parity tests).

use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::config::LlmConfig;
use super::layers::{Attention, Block, Mlp, Proj, RmsNorm};
use super::model::Llm;
use super::rope::Rope;
use crate::models::linear::Linear;
use crate::weights::gguf::GgufFile;
use crate::weights::hf;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightMode {
    /// Keep GGUF tensors quantized (inference only). Norms, embeddings and
    /// activations use `DType::F32`.
    Quantized,
    /// Dense weights in this dtype (GGUF is dequantized).
    Dense(DType),
    /// Re-quantize every projection to this GGUF type (e.g. Q8_0, Q4_K) for
    /// candle's SIMD kernels, whatever the file stores.
    Requantized(GgmlDType),
}

impl WeightMode {
    /// The dtype of activations, norms and embeddings.
    pub fn dtype(self) -> DType {
        match self {
            WeightMode::Dense(d) => d,
            WeightMode::Quantized | WeightMode::Requantized(_) => DType::F32,
        }
    }
}

/// Load from a `.gguf` file or an HF directory (`config.json` + safetensors).
pub fn load_llm(path: &Path, mode: WeightMode, device: &Device) -> Result<Llm> {
    if path.is_file() {
        return load_gguf(path, mode, device);
    }
    if path.is_dir() {
        if let Some(gguf) = std::fs::read_dir(path)
            .map_err(|e| Error::model(path, format!("cannot list: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "gguf"))
        {
            if !path.join("config.json").is_file() {
                return load_gguf(&gguf, mode, device);
            }
        }
        return load_hf(path, mode.dtype(), device);
    }
    Err(Error::model(
        path,
        "not found (expected a .gguf file or an HF model directory)",
    ))
}

fn dense(
    vb: &VarBuilder,
    name: &str,
    out: usize,
    inp: usize,
    bias: bool,
) -> candle_core::Result<Proj> {
    let w = vb.get((out, inp), &format!("{name}.weight"))?;
    let b = if bias {
        Some(vb.get(out, &format!("{name}.bias"))?)
    } else {
        None
    };
    Ok(Proj::Dense(Linear::new(w, b)))
}

/// HF `LlamaForCausalLM` / `Qwen2ForCausalLM` safetensors.
pub fn load_hf(dir: &Path, dtype: DType, device: &Device) -> Result<Llm> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path)
        .map_err(|e| Error::model(&cfg_path, format!("cannot read: {e}")))?;
    let cfg = LlmConfig::from_hf_json(&text).map_err(|p| Error::model(&cfg_path, p))?;
    let tensors = hf::load_dir(dir, &Device::Cpu)?;
    let vb = VarBuilder::from_tensors(tensors, dtype, device);
    build(cfg, vb, dtype, device)
        .map_err(|e| Error::model(dir, format!("weights do not fit the config: {e}")))
}

/// An LLM with random weights in the shape of an HF `config.json` (benchmarks).
pub fn random_llm(config_json: &str, dtype: DType, device: &Device) -> Result<Llm> {
    let cfg = LlmConfig::from_hf_json(config_json).map_err(Error::Config)?;
    Ok(build(
        cfg,
        crate::weights::random::var_builder(dtype, device),
        dtype,
        device,
    )?)
}

/// The decoder from a var builder with HF Llama/Qwen2 names.
fn build(
    cfg: LlmConfig,
    vb: VarBuilder,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<Llm> {
    let (h, i, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
    let m = vb.pp("model");
    let mut layers = Vec::with_capacity(cfg.num_layers);
    for l in 0..cfg.num_layers {
        let p = m.pp(format!("layers.{l}"));
        let a = p.pp("self_attn");
        let f = p.pp("mlp");
        layers.push(Block {
            input_layernorm: RmsNorm {
                weight: p.get(h, "input_layernorm.weight")?,
                eps: cfg.rms_norm_eps,
            },
            post_attention_layernorm: RmsNorm {
                weight: p.get(h, "post_attention_layernorm.weight")?,
                eps: cfg.rms_norm_eps,
            },
            self_attn: Attention {
                q_proj: dense(&a, "q_proj", cfg.num_heads * hd, h, cfg.attention_bias)?,
                k_proj: dense(&a, "k_proj", cfg.num_kv_heads * hd, h, cfg.attention_bias)?,
                v_proj: dense(&a, "v_proj", cfg.num_kv_heads * hd, h, cfg.attention_bias)?,
                o_proj: dense(&a, "o_proj", h, cfg.num_heads * hd, false)?,
                num_heads: cfg.num_heads,
                num_kv_heads: cfg.num_kv_heads,
                head_dim: hd,
            },
            mlp: Mlp {
                gate_proj: dense(&f, "gate_proj", i, h, false)?,
                up_proj: dense(&f, "up_proj", i, h, false)?,
                down_proj: dense(&f, "down_proj", h, i, false)?,
            },
        });
    }
    let embed_tokens = m.get((cfg.vocab_size, h), "embed_tokens.weight")?;
    let lm_head = if cfg.tie_word_embeddings || !vb.contains_tensor("lm_head.weight") {
        Proj::Dense(Linear::new(embed_tokens.clone(), None))
    } else {
        dense(&vb, "lm_head", cfg.vocab_size, h, false)?
    };
    Ok(Llm {
        rope: Rope::new(&cfg, None, dtype, device)?,
        norm: RmsNorm {
            weight: m.get(h, "norm.weight")?,
            eps: cfg.rms_norm_eps,
        },
        embed_tokens,
        layers,
        lm_head,
        config: cfg,
        dtype,
        device: device.clone(),
    })
}

/// Whether candle 0.11 has a SIMD CPU kernel for this type. Q4_1, Q5_0 and
/// Q5_1 only have its scalar reference loop (measured: 20 ms for a 37×576×576
/// product, 25× slower than dense f32, and 4e-2 relative drift of SmolLM2's
/// final hidden states), so those weights are dequantized to f32 at load.
fn has_fast_kernel(t: GgmlDType) -> bool {
    use GgmlDType::*;
    matches!(t, Q4_0 | Q8_0 | Q2K | Q3K | Q4K | Q5K | Q6K | Q8K)
}

/// Whether [`load_llm`] in `mode` keeps any projection quantized (so candle's
/// quantized kernels, and their thread pool, will run). Reads only the GGUF
/// header.
pub fn keeps_quantized_weights(path: &Path, mode: WeightMode) -> Result<bool> {
    Ok(match mode {
        WeightMode::Dense(_) => false,
        WeightMode::Requantized(_) => true,
        WeightMode::Quantized if path.is_file() => GgufFile::open(path)?
            .content
            .tensor_infos
            .iter()
            .any(|(name, info)| {
                // Projections only: the embedding table is always dequantized.
                name != "token_embd.weight"
                    && name.ends_with(".weight")
                    && has_fast_kernel(info.ggml_dtype)
            }),
        // HF directories load dense.
        WeightMode::Quantized => false,
    })
}

/// A GGUF model (`general.architecture` llama or qwen2).
pub fn load_gguf(path: &Path, mode: WeightMode, device: &Device) -> Result<Llm> {
    let g = GgufFile::open(path)?;
    let cfg = LlmConfig::from_gguf(&g)?;
    let dtype = mode.dtype();
    let dequant = |name: &str| -> Result<Tensor> {
        let t = g.tensor(name, device)?;
        t.dequantize(device)
            .and_then(|t| t.to_dtype(dtype))
            .map_err(|e| Error::model(path, format!("{name}: {e}")))
    };
    let proj = |name: &str| -> Result<Proj> {
        let bias_name = format!("{name}.bias");
        let bias = if g.has_tensor(&bias_name) {
            Some(dequant(&bias_name)?)
        } else {
            None
        };
        let wname = format!("{name}.weight");
        Ok(match mode {
            WeightMode::Dense(_) => Proj::Dense(Linear::new(dequant(&wname)?, bias)),
            WeightMode::Requantized(t) => {
                let w = dequant(&wname)?;
                let row = w.dim(1)?;
                if row % t.block_size() != 0 {
                    return Err(Error::Config(format!(
                        "cannot quantize {wname} (rows of {row}) to {t:?}: it needs rows that are a multiple of {}; pick another type (e.g. Q8_0)",
                        t.block_size()
                    )));
                }
                let q = QTensor::quantize(&w, t).map_err(|e| {
                    Error::model(path, format!("{wname}: cannot quantize to {t:?}: {e}"))
                })?;
                let weight = QMatMul::from_arc(Arc::new(q))
                    .map_err(|e| Error::model(path, format!("{wname}: {e}")))?;
                Proj::Quantized { weight, bias }
            }
            WeightMode::Quantized => {
                let q = g.tensor(&wname, device)?;
                if has_fast_kernel(q.dtype()) {
                    let weight = QMatMul::from_arc(Arc::new(q))
                        .map_err(|e| Error::model(path, format!("{wname}: {e}")))?;
                    Proj::Quantized { weight, bias }
                } else {
                    let w = q
                        .dequantize(device)
                        .map_err(|e| Error::model(path, format!("{wname}: {e}")))?;
                    Proj::Dense(Linear::new(w, bias))
                }
            }
        })
    };
    let norm = |name: &str| -> Result<RmsNorm> {
        Ok(RmsNorm {
            weight: dequant(name)?,
            eps: cfg.rms_norm_eps,
        })
    };
    let mut layers = Vec::with_capacity(cfg.num_layers);
    for l in 0..cfg.num_layers {
        let p = |s: &str| format!("blk.{l}.{s}");
        layers.push(Block {
            input_layernorm: norm(&p("attn_norm.weight"))?,
            post_attention_layernorm: norm(&p("ffn_norm.weight"))?,
            self_attn: Attention {
                q_proj: proj(&p("attn_q"))?,
                k_proj: proj(&p("attn_k"))?,
                v_proj: proj(&p("attn_v"))?,
                o_proj: proj(&p("attn_output"))?,
                num_heads: cfg.num_heads,
                num_kv_heads: cfg.num_kv_heads,
                head_dim: cfg.head_dim,
            },
            mlp: Mlp {
                gate_proj: proj(&p("ffn_gate"))?,
                up_proj: proj(&p("ffn_up"))?,
                down_proj: proj(&p("ffn_down"))?,
            },
        });
    }
    let embed_tokens = dequant("token_embd.weight")?;
    // A tied head reuses the dense (dequantized) embedding table: with
    // activation-quantized Q8_0 products SmolLM2's top logits moved enough
    // (25.33 vs 25.24) to change its answer to "What is the capital of France?".
    let lm_head = if g.has_tensor("output.weight") {
        proj("output")?
    } else {
        Proj::Dense(Linear::new(embed_tokens.clone(), None))
    };
    let freq_factors = if g.has_tensor("rope_freqs.weight") {
        Some(
            dequant("rope_freqs.weight")?
                .to_dtype(DType::F32)?
                .to_vec1::<f32>()?,
        )
    } else {
        None
    };
    Ok(Llm {
        rope: Rope::new(&cfg, freq_factors, dtype, device)?,
        norm: norm("output_norm.weight")?,
        embed_tokens,
        layers,
        lm_head,
        config: cfg,
        dtype,
        device: device.clone(),
    })
}
