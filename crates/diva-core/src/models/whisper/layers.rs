//! The building blocks Whisper's encoder and decoder share: LayerNorm,
//! multi-head attention (self or cross, optionally causal) and the erf-GELU MLP.
//! Parameter names follow HF's `WhisperEncoderLayer` / `WhisperDecoderLayer`.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::models::linear::Linear;

use crate::models::exec::{self, Exec};
use crate::ops::attention;

#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl LayerNorm {
    pub const EPS: f64 = 1e-5;

    pub fn load(vb: VarBuilder, d: usize) -> Result<Self> {
        Ok(Self {
            weight: vb.get(d, "weight")?,
            bias: vb.get(d, "bias")?,
        })
    }

    pub fn forward(&self, x: &Tensor, exec: Exec) -> Result<Tensor> {
        exec::layer_norm(x, &self.weight, &self.bias, Self::EPS, exec)
    }
}

pub fn linear(vb: VarBuilder, d_in: usize, d_out: usize, bias: bool) -> Result<Linear> {
    let w = vb.get((d_out, d_in), "weight")?;
    let b = if bias {
        Some(vb.get(d_out, "bias")?)
    } else {
        None
    };
    Ok(Linear::new(w, b))
}

/// Multi-head attention. Whisper's `k_proj` has no bias.
#[derive(Debug, Clone)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    pub n_head: usize,
}

/// Keys and values, shaped `[batch, heads, time, head_dim]`.
#[derive(Debug, Clone)]
pub struct KeyValue {
    pub k: Tensor,
    pub v: Tensor,
}

impl KeyValue {
    pub fn len(&self) -> usize {
        self.k.dim(2).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Append new keys/values along time (the self-attention KV cache).
    pub fn append(&self, new: &KeyValue) -> Result<KeyValue> {
        Ok(KeyValue {
            k: Tensor::cat(&[&self.k, &new.k], 2)?,
            v: Tensor::cat(&[&self.v, &new.v], 2)?,
        })
    }
}

impl Attention {
    pub fn load(vb: VarBuilder, d: usize, n_head: usize) -> Result<Self> {
        Ok(Self {
            q_proj: linear(vb.pp("q_proj"), d, d, true)?,
            k_proj: linear(vb.pp("k_proj"), d, d, false)?,
            v_proj: linear(vb.pp("v_proj"), d, d, true)?,
            out_proj: linear(vb.pp("out_proj"), d, d, true)?,
            n_head,
        })
    }

    /// Project a source sequence `[b, t, d]` to keys and values.
    pub fn key_value(&self, src: &Tensor) -> Result<KeyValue> {
        Ok(KeyValue {
            k: self.k_proj.forward_heads(src, self.n_head)?,
            v: self.v_proj.forward_heads(src, self.n_head)?,
        })
    }

    /// Attend from `x` `[b, tq, d]` to `kv`. With `causal_offset = Some(p)`,
    /// query `i` sits at absolute position `p + i` and sees keys `0..=p+i`.
    pub fn attend(
        &self,
        x: &Tensor,
        kv: &KeyValue,
        causal_offset: Option<usize>,
        exec: Exec,
    ) -> Result<Tensor> {
        let (b, tq, d) = x.dims3()?;
        let head_dim = d / self.n_head;
        let scale = (head_dim as f64).powf(-0.5);
        let q = self.q_proj.forward(x)?;
        if attention::supported(&q) {
            // Heads as a strided view; the kernel writes `[b, tq, d]` directly.
            let q = q.reshape((b, tq, self.n_head, head_dim))?.transpose(1, 2)?;
            let out = match exec {
                Exec::Fused => attention::attention(&q, &kv.k, &kv.v, scale as f32, causal_offset)?,
                Exec::Autograd => {
                    attention::attention_with_grad(&q, &kv.k, &kv.v, scale as f32, causal_offset)?
                }
            };
            return self.out_proj.forward(&out);
        }
        let q = (crate::models::linear::split_heads(&q, self.n_head)? * scale)?;
        let mut scores = q.matmul(&kv.k.t()?)?;
        if let Some(offset) = causal_offset {
            let tk = kv.len();
            if tq > 1 || offset + tq < tk {
                let mask = causal_mask(tq, tk, offset, x.device())?.to_dtype(scores.dtype())?;
                scores = scores.broadcast_add(&mask)?;
            }
        }
        let probs = exec::softmax_last(&scores, exec)?;
        let out = probs.matmul(&kv.v)?.transpose(1, 2)?.reshape((b, tq, d))?;
        self.out_proj.forward(&out)
    }
}

pub use crate::models::exec::causal_mask;

/// fc1 → exact (erf) GELU → fc2. Whisper uses erf GELU, not the tanh approximation.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl Mlp {
    pub fn load(vb: VarBuilder, d: usize, ffn: usize) -> Result<Self> {
        Ok(Self {
            fc1: linear(vb.pp("fc1"), d, ffn, true)?,
            fc2: linear(vb.pp("fc2"), ffn, d, true)?,
        })
    }
    pub fn forward(&self, x: &Tensor, exec: Exec) -> Result<Tensor> {
        let h = self.fc1.forward(x)?;
        let h = match exec {
            Exec::Fused => crate::ops::gelu::gelu_erf(&h)?,
            Exec::Autograd => crate::ops::activations::gelu_erf(&h)?,
        };
        self.fc2.forward(&h)
    }
}
