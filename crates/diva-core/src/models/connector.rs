//! DiVA's connector: N learned queries read the Whisper encoder states through
//! a Whisper-decoder-shaped transformer (causal self-attention, cross-attention,
//! erf-GELU MLP, final LayerNorm), then a linear projection maps each output to
//! the LLM's width. The N outputs are the "virtual tokens" spliced into the
//! LLM prompt.
//!
//! Positions follow HF's `WhisperDecoder(inputs_embeds=queries)`: the decoder
//! adds its learned `embed_positions[0..N]` to the queries itself.

use candle_core::{DType, Device, Result, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::linear::Linear;
use super::whisper::{WhisperDecoder, WhisperWeights};
use super::Exec;

#[derive(Debug, Clone)]
pub struct Connector {
    /// `[N, d_whisper]`.
    pub queries: Tensor,
    /// Whisper decoder blocks (no token table).
    pub decoder: WhisperDecoder,
    /// torch layout: weight `[d_llm, d_whisper]`, bias `[d_llm]`.
    pub projection: Linear,
    /// Attend to the first F encoder frames only (20 ms each) instead of all
    /// 1500 of the 30 s window: `encoder_frames` in config.json, `None` (the
    /// official connector) when absent. The cropping lives here so training,
    /// `diva chat` and evaluation apply the same one.
    pub encoder_frames: Option<usize>,
}

impl Connector {
    pub fn num_queries(&self) -> usize {
        self.queries.dim(0).unwrap_or(0)
    }

    /// A fresh connector: decoder blocks from `whisper`, queries ~ N(0, 0.02²),
    /// projection as torch's default `nn.Linear` init (U(±1/√d_in) for weight
    /// and bias). Seeded (candle's CPU RNG cannot be seeded, so we draw here).
    pub fn init(
        whisper: &WhisperWeights,
        num_queries: usize,
        d_llm: usize,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> crate::Result<Self> {
        let decoder = whisper.decoder(dtype, device, false)?;
        let d = whisper.config.d_model;
        if num_queries == 0 || num_queries > whisper.config.max_target_positions {
            return Err(crate::Error::Config(format!(
                "query count {num_queries} must be between 1 and the decoder's {} positions",
                whisper.config.max_target_positions
            )));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut normal = || {
            // Box–Muller.
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(f64::MIN_POSITIVE), rng.random());
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
        };
        let q: Vec<f32> = (0..num_queries * d).map(|_| 0.02 * normal()).collect();
        let queries = Tensor::from_vec(q, (num_queries, d), &Device::Cpu)?;
        let bound = 1.0 / (d as f64).sqrt();
        let mut uniform = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| (bound * (2.0 * rng.random::<f64>() - 1.0)) as f32)
                .collect()
        };
        let w = Tensor::from_vec(uniform(d_llm * d), (d_llm, d), &Device::Cpu)?;
        let b = Tensor::from_vec(uniform(d_llm), d_llm, &Device::Cpu)?;
        let to = |t: Tensor| t.to_dtype(dtype)?.to_device(device);
        Ok(Self {
            queries: to(queries)?,
            decoder,
            projection: Linear::new(to(w)?, Some(to(b)?)),
            encoder_frames: None,
        })
    }

    /// The encoder states this connector attends to: the first
    /// [`Self::encoder_frames`] frames, or all of them.
    /// (A view: `narrow` copies nothing.)
    pub fn crop(&self, encoder_states: &Tensor) -> Result<Tensor> {
        let t = encoder_states.dim(1)?;
        match self.encoder_frames {
            Some(f) if f < t => encoder_states.narrow(1, 0, f),
            _ => Ok(encoder_states.clone()),
        }
    }

    /// Encoder states `[b, T, d_whisper]` → virtual tokens `[b, N, d_llm]`.
    pub fn forward(&self, encoder_states: &Tensor, exec: Exec) -> Result<Tensor> {
        let b = encoder_states.dim(0)?;
        let n = self.num_queries();
        let pos = self.decoder.embed_positions.narrow(0, 0, n)?;
        let x = (&self.queries + pos)?
            .unsqueeze(0)?
            .broadcast_as((b, n, self.queries.dim(1)?))?
            .contiguous()?;
        let mut cache = self.decoder.new_cache(&self.crop(encoder_states)?)?;
        let h = self.decoder.forward_embeds(&x, &mut cache, exec)?;
        self.projection.forward(&h)
    }
}

impl Connector {
    /// Every trainable tensor, named by its official checkpoint key. Note
    /// `projection.weight` is held in torch's `[d_llm, d_whisper]` layout here;
    /// the checkpoint stores its transpose.
    pub fn params_mut(&mut self) -> Vec<(String, &mut Tensor)> {
        let mut out: Vec<(String, &mut Tensor)> = vec![
            ("query_tokens".into(), &mut self.queries),
            ("projection.weight".into(), &mut self.projection.weight),
        ];
        if let Some(b) = self.projection.bias.as_mut() {
            out.push(("projection.bias".into(), b));
        }
        let d = &mut self.decoder;
        out.push((
            "connector.embed_positions.weight".into(),
            &mut d.embed_positions,
        ));
        out.push((
            "connector.layer_norm.weight".into(),
            &mut d.layer_norm.weight,
        ));
        out.push(("connector.layer_norm.bias".into(), &mut d.layer_norm.bias));
        for (i, l) in d.layers.iter_mut().enumerate() {
            let p = format!("connector.layers.{i}");
            for (name, a) in [
                ("self_attn", &mut l.self_attn),
                ("encoder_attn", &mut l.encoder_attn),
            ] {
                for (proj, lin) in [
                    ("q_proj", &mut a.q_proj),
                    ("k_proj", &mut a.k_proj),
                    ("v_proj", &mut a.v_proj),
                    ("out_proj", &mut a.out_proj),
                ] {
                    out.push((format!("{p}.{name}.{proj}.weight"), &mut lin.weight));
                    if let Some(b) = lin.bias.as_mut() {
                        out.push((format!("{p}.{name}.{proj}.bias"), b));
                    }
                }
            }
            for (name, ln) in [
                ("self_attn_layer_norm", &mut l.self_attn_layer_norm),
                ("encoder_attn_layer_norm", &mut l.encoder_attn_layer_norm),
                ("final_layer_norm", &mut l.final_layer_norm),
            ] {
                out.push((format!("{p}.{name}.weight"), &mut ln.weight));
                out.push((format!("{p}.{name}.bias"), &mut ln.bias));
            }
            for (name, lin) in [("fc1", &mut l.mlp.fc1), ("fc2", &mut l.mlp.fc2)] {
                out.push((format!("{p}.{name}.weight"), &mut lin.weight));
                if let Some(b) = lin.bias.as_mut() {
                    out.push((format!("{p}.{name}.bias"), b));
                }
            }
        }
        out
    }

    /// Turn every trainable tensor into a [`Var`](candle_core::Var) that the
    /// connector now computes with (so optimizer updates are seen in place).
    pub fn make_trainable(&mut self) -> Result<Vec<(String, candle_core::Var)>> {
        self.params_mut()
            .into_iter()
            .map(|(name, t)| {
                let v = candle_core::Var::from_tensor(t)?;
                *t = v.as_tensor().clone();
                Ok((name, v))
            })
            .collect()
    }
}
