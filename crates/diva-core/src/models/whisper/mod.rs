//! Whisper, encoder and decoder, from HF safetensors or CTranslate2 `model.bin`.

pub mod config;
pub mod ct2_names;
pub mod decoder;
pub mod encoder;
pub mod layers;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

pub use config::WhisperConfig;
pub use decoder::{DecoderCache, WhisperDecoder};
pub use encoder::WhisperEncoder;

use crate::weights::{self, TensorMap};
use crate::{Error, Result};

/// Which file layout a Whisper directory uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhisperFormat {
    /// `config.json` + `model.safetensors` (or shards), HF `WhisperModel` names.
    HfSafetensors,
    /// CTranslate2 `model.bin` (+ its own `config.json`).
    Ctranslate2,
}

/// A located Whisper checkpoint: its directory, format and dimensions, with
/// weights normalised to HF names without the `model.` prefix
/// (`encoder.layers.0.fc1.weight`, `decoder.embed_tokens.weight`, …).
pub struct WhisperWeights {
    pub dir: PathBuf,
    pub format: WhisperFormat,
    pub config: WhisperConfig,
    pub tensors: TensorMap,
}

impl WhisperWeights {
    /// Read a local directory in either layout. Weights stay in their stored
    /// dtype until a model is built from them.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::model(
                dir,
                "not a directory (expected a Whisper model directory)",
            ));
        }
        let device = Device::Cpu;
        if dir.join("model.bin").is_file() {
            let (header, raw) = weights::ct2::load(&dir.join("model.bin"), &device)?;
            if !header.spec.to_ascii_lowercase().contains("whisper") {
                return Err(Error::model(
                    dir.join("model.bin"),
                    format!("a CTranslate2 `{}` model, not Whisper", header.spec),
                ));
            }
            let (config, tensors) =
                ct2_names::to_hf(raw).map_err(|p| Error::model(dir.join("model.bin"), p))?;
            return Ok(Self {
                dir: dir.to_path_buf(),
                format: WhisperFormat::Ctranslate2,
                config,
                tensors,
            });
        }
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| {
            Error::model(
                &cfg_path,
                format!("cannot read ({e}); expected an HF Whisper config.json"),
            )
        })?;
        let mut config: WhisperConfig = serde_json::from_str(&text)
            .map_err(|e| Error::model(&cfg_path, format!("not a Whisper config: {e}")))?;
        let raw = weights::hf::load_dir(dir, &device)?;
        let tensors: TensorMap = raw
            .into_iter()
            .map(|(k, v)| (k.strip_prefix("model.").unwrap_or(&k).to_string(), v))
            .collect();
        fill_ffn_dims(&mut config, &tensors);
        Ok(Self {
            dir: dir.to_path_buf(),
            format: WhisperFormat::HfSafetensors,
            config,
            tensors,
        })
    }

    /// Random weights in the shape of `config` (benchmarks): the encoder and
    /// decoder loaders draw every tensor they ask for. They are drawn on
    /// `draw_on` (a GPU draws large-v3 in a moment) and kept on the CPU, as
    /// loaded weights are.
    pub fn random(config: WhisperConfig, draw_on: &Device) -> Result<Self> {
        let tensors = weights::random::draw(draw_on, |vb| {
            WhisperEncoder::load(vb.pp("encoder"), &config)?;
            WhisperDecoder::load(vb.pp("decoder"), &config, true)
        })?;
        Ok(Self {
            dir: PathBuf::from("<random>"),
            format: WhisperFormat::HfSafetensors,
            config,
            tensors,
        })
    }

    fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_tensors(self.tensors.clone(), dtype, device)
    }

    fn wrap(&self, e: candle_core::Error) -> Error {
        Error::model(
            &self.dir,
            format!("weights do not fit a Whisper model: {e}"),
        )
    }

    pub fn encoder(&self, dtype: DType, device: &Device) -> Result<WhisperEncoder> {
        WhisperEncoder::load(self.var_builder(dtype, device).pp("encoder"), &self.config)
            .map_err(|e| self.wrap(e))
    }

    pub fn decoder(
        &self,
        dtype: DType,
        device: &Device,
        with_token_embeddings: bool,
    ) -> Result<WhisperDecoder> {
        WhisperDecoder::load(
            self.var_builder(dtype, device).pp("decoder"),
            &self.config,
            with_token_embeddings,
        )
        .map_err(|e| self.wrap(e))
    }
}

/// Older HF configs may omit the FFN widths; read them off the weights.
fn fill_ffn_dims(cfg: &mut WhisperConfig, t: &TensorMap) {
    if cfg.encoder_ffn_dim == 0 {
        if let Some(w) = t.get("encoder.layers.0.fc1.weight") {
            cfg.encoder_ffn_dim = w.dims()[0];
        }
    }
    if cfg.decoder_ffn_dim == 0 {
        if let Some(w) = t.get("decoder.layers.0.fc1.weight") {
            cfg.decoder_ffn_dim = w.dims()[0];
        }
    }
}
