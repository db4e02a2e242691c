//! Building an [`Llm`] from a local HF directory or a GGUF file.
//!
//! GGUF tensor names (`blk.N.attn_q.weight`, …) map one-to-one onto HF's
//! (`model.layers.N.self_attn.q_proj.weight`, …); both loaders fill the same
//! structs. GGUF weights stay in their blocks in [`WeightMode::Quantized`]
//! (on `kernels::quant`, 8-bit activations) and [`WeightMode::StoredF32`]
//! (on `kernels::quant_f32`, the f32 product), and are dequantized in
//! [`WeightMode::Dense`] (training, exactness tests).

use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::config::LlmConfig;
use super::layers::{Attention, Block, BlockActs, Mlp, Proj, RmsNorm};
use super::model::Llm;
use super::rope::Rope;
use crate::models::linear::Linear;
use crate::ops::quant::{QMatrix, QType};
use crate::ops::quant_f32;
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
    /// The f32 product, with the GGUF blocks kept where `kernels::quant_f32`
    /// runs them (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0: expanded to f32 in
    /// registers, activations not quantized) and the rest dequantized
    /// (inference only). The same weights and arithmetic as
    /// `Dense(F32)` but for the order of the sums, with a fraction of the
    /// memory read per token.
    StoredF32,
    /// Re-quantize every projection to this GGUF type (e.g. Q8_0, Q4_K),
    /// whatever the file stores.
    Requantized(GgmlDType),
}

impl WeightMode {
    /// The dtype of activations, norms and embeddings.
    pub fn dtype(self) -> DType {
        match self {
            WeightMode::Dense(d) => d,
            WeightMode::Quantized | WeightMode::Requantized(_) | WeightMode::StoredF32 => {
                DType::F32
            }
        }
    }
}

/// Which weights an inference command runs on the CPU (`--llm-weights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LlmWeights {
    /// `F32` for a model whose dequantized weights fit in
    /// [`EXACT_DEFAULT_BYTES`], else `Stored`.
    #[default]
    Auto,
    /// The GGUF's blocks on the quantized kernels (8-bit activations).
    Stored,
    /// The exact product: f32 arithmetic on the stored blocks
    /// ([`WeightMode::StoredF32`]; a GGUF file) or dense f32 weights.
    F32,
}

/// The largest LLM (as f32) that [`LlmWeights::Auto`] runs exact: 2 GiB,
/// half a billion parameters. Small models are the ones 8-bit activations
/// hurt most and the ones that fit in f32: SmolLM2-135M as stored answers
/// "What is the capital of France?" with "L'Étoile, la Marsebeau, …"
/// (llama.cpp on the same file: "L'Étoile, la Marseillaise, …"), in f32
/// "The capital of France is Paris." Larger models need their quantized
/// weights to fit at all.
pub const EXACT_DEFAULT_BYTES: u64 = 2 << 30;

impl LlmWeights {
    /// The load mode for `path` on `device` (GPUs always load dense in
    /// `gpu_dtype`).
    pub fn mode(self, path: &Path, device: &Device, gpu_dtype: DType) -> Result<WeightMode> {
        if !device.is_cpu() {
            return Ok(WeightMode::Dense(gpu_dtype));
        }
        // A GGUF file keeps its blocks for the f32 product; an HF
        // directory is dense anyway.
        let exact = if path.is_file() {
            WeightMode::StoredF32
        } else {
            WeightMode::Dense(DType::F32)
        };
        Ok(match self {
            LlmWeights::Stored => WeightMode::Quantized,
            LlmWeights::F32 => exact,
            LlmWeights::Auto if path.is_file() => {
                let g = GgufFile::open(path)?;
                let elements: u64 = g
                    .content
                    .tensor_infos
                    .values()
                    .map(|t| t.shape.elem_count() as u64)
                    .sum();
                if elements.saturating_mul(4) <= EXACT_DEFAULT_BYTES {
                    exact
                } else {
                    WeightMode::Quantized
                }
            }
            // HF directories load dense either way.
            LlmWeights::Auto => WeightMode::Dense(DType::F32),
        })
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

/// The block type of diva's quantized matmul (`kernels::quant`) for a GGUF
/// type, if it has one: its own integer kernels for the 32-value types,
/// candle's block dot products (driven by diva) for the K-quants.
fn diva_kernel(t: GgmlDType) -> Option<QType> {
    Some(match t {
        GgmlDType::Q4_0 => QType::Q4_0,
        GgmlDType::Q4_1 => QType::Q4_1,
        GgmlDType::Q5_0 => QType::Q5_0,
        GgmlDType::Q5_1 => QType::Q5_1,
        GgmlDType::Q8_0 => QType::Q8_0,
        GgmlDType::Q2K => QType::Q2K,
        GgmlDType::Q3K => QType::Q3K,
        GgmlDType::Q4K => QType::Q4K,
        GgmlDType::Q5K => QType::Q5K,
        GgmlDType::Q6K => QType::Q6K,
        _ => return None,
    })
}

/// Whether candle's own quantized matmul (`QMatMul`, which runs on its
/// barrier pool) serves this type: only Q8_K, a type of activations that no
/// model stores; every weight type above runs on `kernels::quant`.
fn candle_kernel(t: GgmlDType) -> bool {
    matches!(t, GgmlDType::Q8K)
}

/// Whether [`load_llm`] in `mode` runs any projection on candle's quantized
/// kernels (and so their thread pool). Reads only the GGUF header.
pub fn keeps_quantized_weights(path: &Path, mode: WeightMode) -> Result<bool> {
    Ok(match mode {
        WeightMode::Dense(_) | WeightMode::StoredF32 => false,
        WeightMode::Requantized(t) => diva_kernel(t).is_none(),
        WeightMode::Quantized if path.is_file() => GgufFile::open(path)?
            .content
            .tensor_infos
            .iter()
            .any(|(name, info)| {
                // Projections only: the embedding table is always dequantized.
                name != "token_embd.weight"
                    && name.ends_with(".weight")
                    && candle_kernel(info.ggml_dtype)
            }),
        // HF directories load dense.
        WeightMode::Quantized => false,
    })
}

/// A quantized tensor `[d_out, d_in]` as blocks for diva's kernels.
fn blocks(q: &QTensor, t: QType, acts: BlockActs, name: &str, path: &Path) -> Result<Proj> {
    let (d_out, d_in) = q
        .shape()
        .dims2()
        .map_err(|e| Error::model(path, format!("{name}: {e}")))?;
    let data = q
        .data()
        .map_err(|e| Error::model(path, format!("{name}: {e}")))?
        .into_owned();
    let m = QMatrix::from_bytes(t, d_out, d_in, data)
        .map_err(|e| Error::model(path, format!("{name}: {e}")))?;
    Ok(Proj::Blocks {
        weight: Arc::new(m),
        bias: None,
        acts,
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
    // diva's kernels where it has one for the type (on the CPU), else
    // candle's quantized matmul.
    let quantized = |q: QTensor, wname: &str| -> Result<Proj> {
        match diva_kernel(q.dtype()) {
            Some(t) if device.is_cpu() => blocks(&q, t, BlockActs::Int8, wname, path),
            _ => Ok(Proj::Quantized {
                weight: QMatMul::from_arc(Arc::new(q))
                    .map_err(|e| Error::model(path, format!("{wname}: {e}")))?,
                bias: None,
            }),
        }
    };
    let with_bias = |p: Proj, b: Option<Tensor>| match p {
        Proj::Blocks { weight, acts, .. } => Proj::Blocks {
            weight,
            bias: b,
            acts,
        },
        Proj::Quantized { weight, .. } => Proj::Quantized { weight, bias: b },
        Proj::Dense(l) => Proj::Dense(Linear::new(l.weight, b)),
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
                with_bias(quantized(q, &wname)?, bias)
            }
            WeightMode::StoredF32 => {
                let q = g.tensor(&wname, device)?;
                match diva_kernel(q.dtype()) {
                    Some(t) if quant_f32::supports(t) && device.is_cpu() => {
                        with_bias(blocks(&q, t, BlockActs::F32, &wname, path)?, bias)
                    }
                    _ => Proj::Dense(Linear::new(dequant(&wname)?, bias)),
                }
            }
            WeightMode::Quantized => {
                let q = g.tensor(&wname, device)?;
                if (diva_kernel(q.dtype()).is_some() && device.is_cpu()) || candle_kernel(q.dtype())
                {
                    with_bias(quantized(q, &wname)?, bias)
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
    // A tied head: as stored, the embedding table's own blocks (as
    // llama.cpp does; SmolLM2 stores it as Q8_0, a quarter of the f32
    // table's 113 MB read on every token); otherwise the dense table. The
    // 8-bit activations move SmolLM2's top logits by ~0.1 (25.33 vs 25.24
    // once changed its answer to "What is the capital of France?"), which
    // is why the exactness tests select f32 (docs/benchmarks.md).
    let lm_head = if g.has_tensor("output.weight") {
        proj("output")?
    } else {
        let stored = g.tensor("token_embd.weight", device)?;
        match diva_kernel(stored.dtype()) {
            Some(t) if mode == WeightMode::Quantized && device.is_cpu() => {
                blocks(&stored, t, BlockActs::Int8, "token_embd.weight", path)?
            }
            Some(t)
                if mode == WeightMode::StoredF32 && quant_f32::supports(t) && device.is_cpu() =>
            {
                blocks(&stored, t, BlockActs::F32, "token_embd.weight", path)?
            }
            _ => Proj::Dense(Linear::new(embed_tokens.clone(), None)),
        }
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
