//! Rotary position embeddings, with Llama 3 frequency scaling.

use candle_core::{DType, Device, Result, Tensor, D};

use super::config::{Llama3Scaling, LlmConfig, RopeStyle};
use crate::models::Exec;
use crate::ops;

/// Precomputed `cos`/`sin` tables `[max_positions, head_dim / 2]`.
#[derive(Debug, Clone)]
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
    style: RopeStyle,
}

/// Llama 3: keep high frequencies, divide low ones by `factor`, blend between.
fn llama3_scale(inv_freq: f64, s: &Llama3Scaling) -> f64 {
    let old = s.original_max_position_embeddings as f64;
    let low_wavelen = old / s.low_freq_factor;
    let high_wavelen = old / s.high_freq_factor;
    let wavelen = 2.0 * std::f64::consts::PI / inv_freq;
    if wavelen < high_wavelen {
        inv_freq
    } else if wavelen > low_wavelen {
        inv_freq / s.factor
    } else {
        let smooth = (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        (1.0 - smooth) * inv_freq / s.factor + smooth * inv_freq
    }
}

impl Rope {
    /// `freq_factors`: llama.cpp's `rope_freqs.weight` (Llama 3 GGUFs store
    /// the scaling as per-frequency divisors instead of config values).
    pub fn new(
        cfg: &LlmConfig,
        freq_factors: Option<Vec<f32>>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let half = cfg.head_dim / 2;
        let inv: Vec<f32> = (0..half)
            .map(|i| {
                let mut f = 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / cfg.head_dim as f64);
                if let Some(s) = &cfg.rope_scaling {
                    f = llama3_scale(f, s);
                }
                if let Some(ff) = &freq_factors {
                    f /= ff.get(i).copied().unwrap_or(1.0) as f64;
                }
                f as f32
            })
            .collect();
        let n = cfg.max_position_embeddings.max(1);
        let inv = Tensor::from_vec(inv, (1, half), device)?;
        let pos = Tensor::arange(0u32, n as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((n, 1))?;
        let freqs = pos.broadcast_mul(&inv)?;
        Ok(Self {
            cos: freqs.cos()?.to_dtype(dtype)?,
            sin: freqs.sin()?.to_dtype(dtype)?,
            style: cfg.rope_style,
        })
    }

    pub fn max_positions(&self) -> usize {
        self.cos.dim(0).unwrap_or(0)
    }

    /// Split a projection `x` `[b, t, n_head·head_dim]` into rotated heads
    /// `[b, n_head, t, head_dim]` (contiguous), the first row at `offset`.
    /// In training on CPU this is one graph node (`ops::rope`).
    pub fn split_heads(
        &self,
        x: &Tensor,
        n_head: usize,
        offset: usize,
        exec: Exec,
    ) -> Result<Tensor> {
        let (b, t, width) = x.dims3()?;
        if exec == Exec::Autograd && ops::rope::split_supported(x) {
            let (cos, sin) = self.tables(offset, t, x.dtype())?;
            return ops::rope::split_heads_rope(x, n_head, &cos, &sin, self.pairing());
        }
        let heads = x
            .reshape((b, t, n_head, width / n_head.max(1)))?
            .transpose(1, 2)?
            .contiguous()?;
        self.apply(&heads, offset, exec)
    }

    /// [`Self::split_heads`] for one token of each of `b` sequences, `x`
    /// `[b, 1, n_head·head_dim]`, row `i` at position `positions[i]`: one
    /// rotation for the whole batch (the tables gathered per row).
    pub fn split_heads_at(&self, x: &Tensor, n_head: usize, positions: &[usize]) -> Result<Tensor> {
        let (b, t, width) = x.dims3()?;
        if t != 1 || positions.len() != b {
            candle_core::bail!(
                "split_heads_at: [b, 1, width] with b positions, got {:?}",
                x.dims()
            );
        }
        let idx: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
        let idx = Tensor::new(idx.as_slice(), x.device())?;
        let half = self.cos.dim(1)?;
        let cos = self
            .cos
            .index_select(&idx, 0)?
            .to_dtype(x.dtype())?
            .reshape((b, 1, half))?;
        let sin = self
            .sin
            .index_select(&idx, 0)?
            .to_dtype(x.dtype())?
            .reshape((b, 1, half))?;
        let heads = x
            .reshape((b, 1, n_head, width / n_head.max(1)))?
            .transpose(1, 2)?
            .contiguous()?;
        match self.style {
            RopeStyle::Half => candle_nn::rotary_emb::rope(&heads, &cos, &sin),
            RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i(&heads, &cos, &sin),
        }
    }

    fn pairing(&self) -> ops::rope::Pairing {
        match self.style {
            RopeStyle::Half => ops::rope::Pairing::Halves,
            RopeStyle::Interleaved => ops::rope::Pairing::Adjacent,
        }
    }

    /// `cos`, `sin` `[t, head_dim / 2]` for positions `offset..offset + t`.
    fn tables(&self, offset: usize, t: usize, dtype: DType) -> Result<(Tensor, Tensor)> {
        Ok((
            self.cos.narrow(0, offset, t)?.to_dtype(dtype)?,
            self.sin.narrow(0, offset, t)?.to_dtype(dtype)?,
        ))
    }

    /// Rotate `x` `[b, heads, t, head_dim]` whose first row is at position `offset`.
    pub fn apply(&self, x: &Tensor, offset: usize, exec: Exec) -> Result<Tensor> {
        let (cos, sin) = self.tables(offset, x.dim(2)?, x.dtype())?;
        match (exec, self.style) {
            (Exec::Fused, RopeStyle::Half) => {
                candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)
            }
            (Exec::Fused, RopeStyle::Interleaved) => {
                candle_nn::rotary_emb::rope_i(&x.contiguous()?, &cos, &sin)
            }
            (Exec::Autograd, _) if ops::rope::supported(x) => {
                ops::rope::rope(x, &cos, &sin, self.pairing())
            }
            (Exec::Autograd, RopeStyle::Half) => {
                let half = x.dim(D::Minus1)? / 2;
                let x1 = x.narrow(D::Minus1, 0, half)?;
                let x2 = x.narrow(D::Minus1, half, half)?;
                let a = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
                let b = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
                Tensor::cat(&[a, b], D::Minus1)
            }
            (Exec::Autograd, RopeStyle::Interleaved) => {
                let (b, h, t, d) = x.dims4()?;
                let pairs = x.reshape((b, h, t, d / 2, 2))?;
                let even = pairs.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?;
                let odd = pairs.narrow(D::Minus1, 1, 1)?.squeeze(D::Minus1)?;
                let e = (even.broadcast_mul(&cos)? - odd.broadcast_mul(&sin)?)?;
                let o = (even.broadcast_mul(&sin)? + odd.broadcast_mul(&cos)?)?;
                Tensor::stack(&[e, o], D::Minus1)?.reshape((b, h, t, d))
            }
        }
    }
}
